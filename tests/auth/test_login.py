"""Logging in: the back-off after failed logins (pure, on a held clock), and a
login interrupted while its password is checked."""

import asyncio
import threading

from helpers import SEP, TIMEOUT, LineClient, running_server

from smanager.auth import scram as passwords
from smanager.auth.login import Backoff


def test_backoff_lets_a_few_failures_through_then_doubles_up_to_its_cap():
    now = [1000.0]
    backoff = Backoff(max_delay=5.0, clock=lambda: now[0])
    waits = []
    for _ in range(7):
        waits.append(backoff.wait("10.0.0.1"))
        backoff.failed("10.0.0.1")
    assert waits == [0, 0, 0, 1.0, 2.0, 4.0, 5.0]
    assert backoff.wait("10.0.0.2") == 0
    now[0] += 2.0
    assert backoff.wait("10.0.0.1") == 3.0


def test_a_success_takes_back_only_its_own_failure():
    now = [1000.0]
    backoff = Backoff(max_delay=5.0, clock=lambda: now[0])
    for _ in range(3):
        backoff.failed("10.0.0.1")
    now[0] += 1.0
    counted = backoff.failed("10.0.0.1")  # an attempt begins: a failure until it is not
    backoff.succeeded("10.0.0.1", counted)
    assert backoff.failures["10.0.0.1"] == (3, 1000.0)  # as before: the wait not restarted
    assert backoff.wait("10.0.0.1") == 0
    counted = backoff.failed("10.0.0.1")
    now[0] += 0.5
    backoff.failed("10.0.0.1")  # another guess failed meanwhile
    backoff.succeeded("10.0.0.1", counted)
    assert backoff.failures["10.0.0.1"] == (4, 1001.5)


def test_backoff_counts_an_ipv6_64_as_one_address_and_never_overflows():
    now = [0.0]
    backoff = Backoff(max_delay=60.0, clock=lambda: now[0])
    for number in range(2000):
        backoff.failed(f"2001:db8::{number:x}")
    assert list(backoff.failures) == ["2001:db8::/64"]
    assert backoff.wait("2001:db8::ffff") == 60.0
    assert backoff.wait("2001:db8:0:1::1") == 0


def test_backoff_forgets_quiet_addresses_and_stays_bounded(monkeypatch):
    monkeypatch.setattr("smanager.auth.login.MAX_ADDRESSES", 100)
    now = [0.0]
    backoff = Backoff(max_delay=60.0, clock=lambda: now[0])
    for number in range(500):
        backoff.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(backoff.failures) == 100
    for _ in range(4):
        backoff.failed("192.0.2.1")
    now[0] += 901
    assert backoff.wait("192.0.2.1") == 0


async def test_ctrl_c_during_a_login_still_counts_and_closes_the_connection(
        users_file, monkeypatch):
    checking, release = threading.Event(), threading.Event()

    def held_check(self, password):  # the PBKDF2 thread, held until the test lets it go
        checking.set()
        release.wait(TIMEOUT)
        return False
    monkeypatch.setattr(passwords.Verifier, "check_password", held_check)
    async with running_server(users_file=users_file) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send(b"login alice wrong\r\n")
            assert await asyncio.to_thread(checking.wait, TIMEOUT)
            await client.send(b"\xff\xf4")  # Ctrl-C while the password is checked
            answer = await client.read_all()  # closed: a strict connection's first error
            assert answer == (b"ERROR: interrupted\n" + SEP.encode())
            assert server.manager.logins.backoff.failures["127.0.0.1"][0] == 1
            assert len(server.manager.logins._hashes) == 1  # its turn is held till it ends
        finally:
            release.set()
            await client.close()
