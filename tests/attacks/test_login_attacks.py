"""Attacks on authentication, against a real server over loopback sockets.

Every server here has a users file (alice: admin, olive: operate, rita: read),
listens on 127.0.0.1 with a port the OS picks, and is stopped by the
``async with`` that started it.  Each attack ends by checking that the server
is still running (and, where it matters, by asking a logged-in probe).

 1. brute force: back-off after a few failures, refusals never check the password
 2. ``kill`` pipelined after a failed login never runs
 3. ``kill`` pipelined after an operate login is denied, naming the admin level
 4. oversized lines and HTTP bodies before login; long lines after it
 5. too many lines before login
 6. the remembered-line fast lane does not skip the level check
 7. challenge/auth: replay, no challenge, unknown users look like real ones
 8. the audit trail never holds a password
 9. a user removed (or demoted) while connected loses their level
10. help shows a connection only what it may run

Several tests (parallel guesses, interrupted logins, Ctrl-C before login, a
success restarting the wait, a decoy's salt across a restart) pin down bugs
this file found and the login code has since fixed.
"""

import asyncio
import base64
import collections
import contextlib
import logging
import re
import threading
import time

import pytest
from helpers import (
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    exchange,
    http,
    running_server,
    until,
)

from smanager.auth import levels, login, users
from smanager.auth import scram as passwords

PASSWORDS = {"alice": "alice-Pa55word", "olive": "olive-Pa55word", "rita": "rita-Pa55word"}
LEVELS = {"alice": levels.Level.ADMIN, "olive": levels.Level.OPERATE, "rita": levels.Level.READ}
ITERATIONS = passwords.MIN_ITERATIONS  # the least allowed: tests stay fast
FAILED = "ERROR: login failed\n" + SEP
NEEDS_LOGIN = "ERROR: '{}' needs a login first: login USER PASSWORD\n" + SEP
BACKED_OFF = re.compile(r"ERROR: too many failed logins from 127\.0\.0\.1; "
                        r"try again in (\d+) s\n" + re.escape(SEP))
CHALLENGE = re.compile(r"pbkdf2-sha256 (\d+) (\S+) (\S+)\n" + re.escape(SEP))
AUTHED = re.compile(r"logged in as (\S+) \((\w+)\); server signature (\S+)\n" + re.escape(SEP))
IAC_IP = b"\xff\xf4"  # telnet's Ctrl-C


# -- helpers ------------------------------------------------------------------------------

def user(name, password, level, iterations=ITERATIONS):
    return users.User(name, level, passwords.Verifier.for_password(password, iterations=iterations))


def write_users(path, names=tuple(PASSWORDS)):
    users.save(path, {name: user(name, PASSWORDS[name], LEVELS[name]) for name in names})


@contextlib.asynccontextmanager
async def auth_server(tmp_path, **settings):
    """A server whose users file names alice, olive and rita; yields (server, port, file)."""
    path = tmp_path / "users"
    write_users(path)
    async with running_server(users_file=str(path), **settings) as server:
        yield server, server.address[1], path


class Client(LineClient):
    """A raw line client whose reply ends at a line that *is* the separator (help
    bodies hold lines of 51 dashes, which a plain readuntil would stop at)."""

    @classmethod
    async def connect(cls, port):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                TIMEOUT)
        client = cls(reader, writer)
        client.banner = await client.reply()
        return client

    async def reply_or_eof(self):
        """One reply, or what came before the server closed ("" if nothing)."""
        lines = []
        async with asyncio.timeout(TIMEOUT):
            for _ in range(100_000):  # bounded: a reply here is far shorter
                try:
                    line = await self.reader.readline()
                except ConnectionResetError:
                    line = b""
                if not line:
                    break
                lines.append(line)
                if line == SEP_LINE:
                    break
        return b"".join(lines).decode()

    async def reply(self):
        text = await self.reply_or_eof()
        assert text.endswith(SEP), f"the server closed mid-reply: {text[-200:]!r}"
        return text

    async def ask(self, line):
        await self.send(line)
        return await self.reply()

    async def closed(self):
        """True if the server closes the connection, sending nothing more."""
        return await self.reply_or_eof() == ""


@contextlib.asynccontextmanager
async def connected(port):
    client = await Client.connect(port)
    try:
        yield client
    finally:
        await client.close()


async def login_once(port, name, password):
    """A fresh connection tries one login: (its reply, whether the server then
    closed the connection without another word)."""
    async with connected(port) as client:
        reply = await client.ask(f"login {name} {password}")
        return reply, reply.startswith("logged in") or await client.closed()


async def challenge(client, name, password):
    """Ask for a challenge as a real client does: (the ClientLogin, the
    challenge's fields as a match, the proof that answers it)."""
    login_ = passwords.ClientLogin(name, password)
    reply = await client.ask(f"challenge {name} {login_.nonce}")
    match = CHALLENGE.fullmatch(reply)
    assert match, reply
    return login_, match, login_.proof(reply.partition("\n")[0])


async def assert_alive(server, port):
    """The server still runs: nothing asked it to stop, and a new connection
    logs in and runs a command."""
    assert not server.manager.shutdown_requested.is_set(), "kill ran"
    assert not server.shutting_down
    async with connected(port) as client:
        assert await client.ask(f"login alice {PASSWORDS['alice']}") == \
            "logged in as alice (admin)\n" + SEP
        assert await client.ask("systemstatus echo alive") == "alive\n" + SEP


def count_checks(monkeypatch, gate=None):
    """Record every password the server checks (and, with ``gate``, hold each
    check until the gate opens).  Returns the record."""
    record = {"checked": [], "active": 0, "peak": 0}
    lock = threading.Lock()
    original = passwords.Verifier.check_password

    def check_password(self, password):
        with lock:
            record["checked"].append(password)
            record["active"] += 1
            record["peak"] = max(record["peak"], record["active"])
        try:
            if gate is not None:
                gate.wait(TIMEOUT)
            return original(self, password)
        finally:
            with lock:
                record["active"] -= 1

    monkeypatch.setattr(passwords.Verifier, "check_password", check_password)
    return record


# -- 1. brute force ------------------------------------------------------------------------

async def test_brute_force_is_refused_unchecked_and_the_right_password_works_after_the_wait(
        tmp_path, monkeypatch):
    """Wrong passwords from one address, a new connection each (a failed login
    closes it).  After FREE_FAILURES, attempts are refused until the back-off
    (login_backoff_max 0.5 s) has passed, and a refused one never reaches the
    password check; once it has passed, the right password works."""
    record = count_checks(monkeypatch)
    async with auth_server(tmp_path, login_backoff_max=0.5) as (server, port, _):
        outcomes = []
        last_failure = None
        deadline = time.monotonic() + TIMEOUT
        for attempt in range(60):
            if time.monotonic() > deadline:
                break
            reply, closed = await login_once(port, "alice", f"guess-{attempt}")
            assert closed, f"attempt {attempt}: the connection stayed open after {reply!r}"
            if reply == FAILED:
                outcomes.append("checked")
                last_failure = time.monotonic()
            else:
                match = BACKED_OFF.fullmatch(reply)
                assert match, f"attempt {attempt}: {reply!r}"
                assert match.group(1) == "1"  # ceil of a wait of at most 0.5 s
                outcomes.append("refused")
        counts = collections.Counter(outcomes)
        print(f"\n[brute force] {len(outcomes)} wrong passwords: {counts['checked']} checked, "
              f"{counts['refused']} refused unchecked")
        assert outcomes[:login.FREE_FAILURES] == ["checked"] * login.FREE_FAILURES
        assert outcomes[login.FREE_FAILURES] == "refused"  # sent within ms of the 3rd failure
        assert counts["refused"] > counts["checked"]
        # A refused attempt never reached PBKDF2: exactly the failures were checked.
        assert len(record["checked"]) == counts["checked"]
        assert all(password.startswith("guess-") for password in record["checked"])

        # The right password, polled with a bounded deadline: it works once the wait is over.
        right = PASSWORDS["alice"]
        refused_right, waited = 0, None
        for _ in range(400):
            async with connected(port) as client:
                reply = await client.ask(f"login alice {right}")
                if reply == "logged in as alice (admin)\n" + SEP:
                    waited = time.monotonic() - last_failure
                    # Logged in for real: it runs what an admin may, and kill did not run.
                    assert await client.ask("systemstatus echo alive") == "alive\n" + SEP
                    break
                assert BACKED_OFF.fullmatch(reply) and await client.closed(), reply
            refused_right += 1
            assert time.monotonic() - last_failure < 5.0, "still refused long after the wait"
            await asyncio.sleep(0.02)  # the wait is time passing: nothing to read
        else:
            pytest.fail("the right password never worked")
        print(f"[brute force] the right password worked {waited:.2f} s after the last failure "
              f"({refused_right} tries refused before)")
        assert waited >= 0.3  # the server's 0.5 s, less our read of its last failure (a margin)
        assert len(record["checked"]) == counts["checked"] + 1  # the right one, once
        assert not server.manager.shutdown_requested.is_set() and not server.shutting_down


async def test_back_off_doubles_refuses_the_right_password_and_a_success_buys_nothing(
        tmp_path, monkeypatch):
    """The same with the back-off's clock held still, so every step is exact:
    after 3 failures the wait is 1 s, after 4 it is 2 s; while it lasts even the
    right password (and a challenge, and another user) is refused unchecked.  A
    success does not wipe the slate: the next wrong guess is the last free one."""
    record = count_checks(monkeypatch)
    async with auth_server(tmp_path, login_backoff_max=60.0) as (server, port, _):
        now = [1000.0]
        server.manager.logins.backoff.clock = lambda: now[0]
        right = PASSWORDS["alice"]
        for attempt in range(login.FREE_FAILURES):
            assert await login_once(port, "alice", f"wrong-{attempt}") == (FAILED, True)
        assert len(record["checked"]) == 3

        refusal = ("ERROR: too many failed logins from 127.0.0.1; try again in {} s\n" + SEP)
        assert await login_once(port, "alice", right) == (refusal.format(1), True)
        assert await login_once(port, "rita", PASSWORDS["rita"]) == (refusal.format(1), True)
        async with connected(port) as client:
            assert await client.ask("challenge alice") == refusal.format(1)
            assert await client.closed()
        assert len(record["checked"]) == 3, "a refused login reached the password check"

        now[0] += 1.0
        assert await login_once(port, "alice", "wrong-again") == (FAILED, True)
        assert await login_once(port, "alice", right) == (refusal.format(2), True)
        now[0] += 1.5
        assert await login_once(port, "alice", right) == (refusal.format(1), True)
        assert len(record["checked"]) == 4
        now[0] += 0.5
        assert await login_once(port, "alice", right) == \
            ("logged in as alice (admin)\n" + SEP, True)
        assert len(record["checked"]) == 5

        # Knowing one password buys no guesses: past any wait, one more wrong
        # guess is checked, and the one after it waits 4 s (a 6th failure).
        now[0] += 60.0
        assert await login_once(port, "rita", "wrong-later") == (FAILED, True)
        assert await login_once(port, "rita", "wrong-later") == (refusal.format(4), True)
        assert len(record["checked"]) == 6
        assert not server.shutting_down


async def test_a_successful_login_does_not_restart_the_wait(tmp_path):
    async with auth_server(tmp_path, login_backoff_max=60.0) as (server, port, _):
        now = [1000.0]
        server.manager.logins.backoff.clock = lambda: now[0]
        for attempt in range(login.FREE_FAILURES):
            assert await login_once(port, "alice", f"wrong-{attempt}") == (FAILED, True)
        now[0] += 1.0  # the 1 s wait is over
        assert await login_once(port, "alice", PASSWORDS["alice"]) == \
            ("logged in as alice (admin)\n" + SEP, True)
        # The same admin's second terminal, a moment later (no failure in between):
        assert await login_once(port, "alice", PASSWORDS["alice"]) == \
            ("logged in as alice (admin)\n" + SEP, True)


async def test_parallel_guesses_are_held_to_the_back_off(tmp_path, monkeypatch):
    """Found by this file (fixed since): the back-off was checked before the
    hash and the failure recorded after it, so 20 guesses sent at once on 20
    connections were all checked.  An attempt now counts from its start."""
    record = count_checks(monkeypatch)
    async with auth_server(tmp_path) as (server, port, _):
        clients = [await Client.connect(port) for _ in range(20)]
        try:
            for n, client in enumerate(clients):  # all sent before any is answered
                client.writer.write(f"login alice parallel-{n}\n".encode())
            replies = await asyncio.gather(*(client.reply_or_eof() for client in clients))
        finally:
            for client in clients:
                await client.close()
        assert all(reply == FAILED or BACKED_OFF.fullmatch(reply) for reply in replies)
        print(f"\n[parallel] 20 simultaneous guesses: {len(record['checked'])} checked")
        assert len(record["checked"]) <= login.FREE_FAILURES, \
            f"{len(record['checked'])} of 20 parallel guesses were checked"
        assert replies.count(FAILED) == len(record["checked"])


async def test_interrupted_logins_hold_their_hashing_turn_and_count_as_failures(
        tmp_path, monkeypatch):
    """Found by this file (fixed since): Ctrl-C on a login left its hashing turn
    while PBKDF2 went on in the thread, so more than HASHING_AT_ONCE hashes ran
    at once, and the interrupted guess was never counted as a failure."""
    gate = threading.Event()
    record = count_checks(monkeypatch, gate)
    try:
        async with auth_server(tmp_path) as (server, port, _):
            server.manager.logins.backoff.clock = lambda: 1000.0  # time stands still
            first = [await Client.connect(port) for _ in range(login.HASHING_AT_ONCE)]
            second = await Client.connect(port)
            try:
                for n, client in enumerate(first):
                    await client.send(f"login alice first-{n}")
                assert await until(lambda: len(record["checked"]) == login.HASHING_AT_ONCE)
                for client in first:  # Ctrl-C while the hash runs
                    await client.send(IAC_IP)
                    assert await client.reply() == "ERROR: interrupted\n" + SEP
                await second.send("login alice second")
                # Its turn comes when a thread ends (the gate), not when a client gave up.
                await until(lambda: len(record["checked"]) > login.HASHING_AT_ONCE, 1.0)
                peak = record["peak"]
                gate.set()
                assert await second.reply() == FAILED
            finally:
                gate.set()
                for client in [*first, second]:
                    await client.close()
            print(f"\n[interrupt] {peak} password hashes ran at once "
                  f"(HASHING_AT_ONCE is {login.HASHING_AT_ONCE})")
            assert peak <= login.HASHING_AT_ONCE
            # The two interrupted guesses counted: with the third, the address must wait.
            reply, closed = await login_once(port, "alice", PASSWORDS["alice"])
            assert BACKED_OFF.fullmatch(reply) and closed, reply
    finally:
        gate.set()


async def test_a_connection_not_logged_in_is_closed_after_an_interrupted_command(
        tmp_path, monkeypatch):
    """Found by this file (fixed since): 'ERROR: interrupted' did not close a
    connection that had not logged in, though its first error must."""
    gate = threading.Event()
    record = count_checks(monkeypatch, gate)
    try:
        async with auth_server(tmp_path) as (server, port, _):
            async with connected(port) as client:
                await client.send("login alice held")
                assert await until(lambda: len(record["checked"]) == 1)
                await client.send(IAC_IP)
                assert await client.reply() == "ERROR: interrupted\n" + SEP
                gate.set()
                with contextlib.suppress(ConnectionError):
                    await client.send("help -s")
                after = await client.reply_or_eof()
                assert after == "", f"still open after its error; it answered {after!r}"
    finally:
        gate.set()


# -- 2. kill after a failed login ---------------------------------------------------------

@pytest.mark.parametrize("attack", [
    "same packet", "own write before the reply", "after the error reply",
    "unknown user, same packet", "missing password, same packet", "auth without challenge",
    "challenge then a bad proof", "one-shot without newline"])
async def test_kill_pipelined_after_a_failed_login_never_runs(tmp_path, attack):
    async with auth_server(tmp_path) as (server, port, _):
        async with connected(port) as client:
            first = {
                "unknown user, same packet": "login mallory secret",
                "missing password, same packet": "login alice",
                "auth without challenge": "auth AAAA",
                "challenge then a bad proof": "challenge alice\nauth AAAA",
                "one-shot without newline": "login alice wrong",
            }.get(attack, "login alice wrong")
            expected = {
                "missing password, same packet":
                    "ERROR: missing PASSWORD; usage: login USER PASSWORD\n" + SEP,
                "auth without challenge":
                    "ERROR: no challenge to answer: send 'challenge USER' first\n" + SEP,
            }.get(attack, FAILED)
            with contextlib.suppress(ConnectionError):  # the server may close first
                if attack == "own write before the reply":
                    await client.send(first)
                    await client.send("kill")
                elif attack == "after the error reply":
                    await client.send(first)
                    assert await client.reply() == expected
                    await client.send("kill")
                elif attack == "one-shot without newline":
                    await client.send((first + "\nkill").encode())
                    client.writer.write_eof()  # the last line has no newline
                else:
                    await client.send(f"{first}\nkill")
            got = await client.reply_or_eof()
            if attack == "challenge then a bad proof":
                assert CHALLENGE.fullmatch(got), got
                got = await client.reply_or_eof()
            if attack != "after the error reply":
                assert got == expected
            assert await client.closed(), "the connection stayed open after a failed login"
        await assert_alive(server, port)


# -- 3. kill after an operate login -------------------------------------------------------

@pytest.mark.parametrize("pipelined", [True, False])
async def test_kill_after_an_operate_login_is_denied_naming_the_admin_level(
        tmp_path, pipelined):
    async with auth_server(tmp_path) as (server, port, _):
        async with connected(port) as client:
            logged_in = "logged in as olive (operate)\n" + SEP
            if pipelined:
                await client.send(f"login olive {PASSWORDS['olive']}\nkill\nrestart\n"
                                  "systemstatus echo still here")
                assert await client.reply() == logged_in
            else:
                assert await client.ask(f"login olive {PASSWORDS['olive']}") == logged_in
                await client.send("kill")
                await client.send("restart")
                await client.send("systemstatus echo still here")
            assert await client.reply() == \
                "ERROR: 'kill' needs the admin level; olive has operate\n" + SEP
            assert await client.reply() == \
                "ERROR: 'restart' needs the admin level; olive has operate\n" + SEP
            # A denial is not the end for a logged-in connection.
            assert await client.reply() == "still here\n" + SEP
        async with connected(port) as client:  # read level too
            assert await client.ask(f"login rita {PASSWORDS['rita']}") == \
                "logged in as rita (read)\n" + SEP
            assert await client.ask("kill") == \
                "ERROR: 'kill' needs the admin level; rita has read\n" + SEP
        await assert_alive(server, port)


# -- 4. oversized lines and HTTP ------------------------------------------------------------

async def test_huge_lines_and_http_bodies_holding_kill_before_login_are_closed(tmp_path):
    async with auth_server(tmp_path) as (server, port, _):
        too_long = b"ERROR: line longer than 1024 bytes; closing the connection\n" + SEP_LINE
        attacks = {
            "100 KiB, then kill": ([b"x" * 100 * 1024 + b"\nkill\n"], too_long),
            "100 KiB of spaces ending in kill": ([b" " * (100 * 1024 - 5) + b"kill\n"], too_long),
            "1 KiB + 1, then kill": ([b"y" * 1025 + b"\nkill\n"], too_long),
            "login, then a long line, then kill": (
                # One packet: the framer met the long line before the login had
                # finished, so the limit was still 1024; the login's reply comes first.
                [f"login alice {PASSWORDS['alice']}\n".encode() + b"z" * 2000 + b"\nkill\n"],
                b"logged in as alice (admin)\n" + SEP_LINE + too_long),
            "HTTP POST, body kill": ([http(port, b"POST / HTTP/1.1", b"kill\n")], b""),
            "HTTP POST, 100 KiB body ending in kill": (
                [http(port, b"POST /kill HTTP/1.1", b"a" * 100 * 1024 + b"\nkill\n")], b""),
        }
        for name, (chunks, expected) in attacks.items():
            got, ending = await asyncio.to_thread(exchange, port, chunks)
            assert got == expected, (name, ending, got[:200])
            await assert_alive(server, port)


async def test_line_limit_is_login_max_line_before_login_and_max_line_after(tmp_path):
    async with auth_server(tmp_path) as (server, port, _):
        terse = "TOP: \nSERVICES: \nCOMMANDS: help login\n" + SEP
        async with connected(port) as client:  # exactly at the limit: fine
            assert await client.ask("help -s".ljust(1024)) == terse
        async with connected(port) as client:  # one byte over: the error, then closed
            assert await client.ask("help -s".ljust(1025)) == \
                "ERROR: line longer than 1024 bytes; closing the connection\n" + SEP
            assert await client.closed()
        async with connected(port) as client:
            assert await client.ask(f"login alice {PASSWORDS['alice']}") == \
                "logged in as alice (admin)\n" + SEP
            word = "w" * 5000
            assert await client.ask(f"systemstatus echo {word}") == word + "\n" + SEP
            word = "v" * 60_000  # up to the usual max_line
            assert await client.ask(f"systemstatus echo {word}") == word + "\n" + SEP
        await assert_alive(server, port)


# -- 5. too many lines before login -----------------------------------------------------------

async def test_more_than_login_max_commands_lines_before_login_are_refused(tmp_path):
    async with auth_server(tmp_path) as (server, port, _):
        terse = "TOP: \nSERVICES: \nCOMMANDS: help login\n" + SEP
        too_many = "ERROR: too many commands before logging in (limit 10)\n" + SEP
        async with connected(port) as client:  # in one packet
            await client.send(b"help -s\n" * 11 + b"kill\n")
            for _ in range(10):
                assert await client.reply() == terse
            assert await client.reply() == too_many
            assert await client.closed()
        async with connected(port) as client:  # one at a time
            for _ in range(10):
                assert await client.ask("help -s") == terse
            assert await client.ask(f"login alice {PASSWORDS['alice']}") == too_many
            assert await client.closed()
        async with connected(port) as client:  # blank lines count too
            await client.send(b"\n" * 11)
            assert await client.reply() == too_many
            assert await client.closed()
        async with connected(port) as client:  # once logged in, there is no such limit
            assert await client.ask(f"login alice {PASSWORDS['alice']}") == \
                "logged in as alice (admin)\n" + SEP
            await client.send(b"systemstatus echo again\n" * 30)
            for _ in range(30):
                assert await client.reply() == "again\n" + SEP
        await assert_alive(server, port)


# -- 6. the remembered-line fast lane --------------------------------------------------------

async def test_the_remembered_line_lane_does_not_bypass_levels(tmp_path):
    line = "systemstatus echo hi"
    async with auth_server(tmp_path) as (server, port, _):
        async with connected(port) as admin:
            assert await admin.ask(f"login alice {PASSWORDS['alice']}") == \
                "logged in as alice (admin)\n" + SEP
            for _ in range(5):
                assert await admin.ask(line) == "hi\n" + SEP
        assert line.encode() in server.manager.catalog.calls, "the line was not remembered"

        async with connected(port) as anonymous:  # as a first line
            assert await anonymous.ask(line) == NEEDS_LOGIN.format("systemstatus echo")
            assert await anonymous.closed()
        async with connected(port) as anonymous:  # as a later line: the fast lane's case
            assert await anonymous.ask("help -s") == \
                "TOP: \nSERVICES: \nCOMMANDS: help login\n" + SEP
            assert await anonymous.ask(line) == NEEDS_LOGIN.format("systemstatus echo")
            assert await anonymous.closed()
        async with connected(port) as reader:
            assert await reader.ask(f"login rita {PASSWORDS['rita']}") == \
                "logged in as rita (read)\n" + SEP
            for _ in range(5):  # one line per write, each after the last reply
                assert await reader.ask(line) == \
                    "ERROR: 'systemstatus echo' needs the operate level; rita has read\n" + SEP
        async with connected(port) as operator:  # the line itself is fine for operate
            assert await operator.ask(f"login olive {PASSWORDS['olive']}") == \
                "logged in as olive (operate)\n" + SEP
            assert await operator.ask(line) == "hi\n" + SEP
        await assert_alive(server, port)


# -- 7. challenge and auth ---------------------------------------------------------------------

async def test_a_captured_proof_cannot_be_replayed(tmp_path):
    no_challenge = "ERROR: no challenge to answer: send 'challenge USER' first\n" + SEP
    async with auth_server(tmp_path) as (server, port, _):
        async with connected(port) as client:
            alice, first, proof = await challenge(client, "alice", PASSWORDS["alice"])
            reply = await client.ask(f"auth {proof}")
            authed = AUTHED.fullmatch(reply)
            assert authed and authed.group(1, 2) == ("alice", "admin"), reply
            assert alice.server_is_real(reply.partition("\n")[0])
            # The nonce is spent: the same proof again on the same connection fails.
            assert await client.ask(f"auth {proof}") == no_challenge

        async with connected(port) as client:  # replayed after a new challenge
            _, second, _ = await challenge(client, "alice", PASSWORDS["alice"])
            assert second.group(2) == first.group(2)  # the same salt...
            assert second.group(3) != first.group(3)  # ...a new nonce
            assert await client.ask(f"auth {proof}") == FAILED
            assert await client.closed()

        async with connected(port) as client:  # the captured client nonce, sent again
            client_nonce = alice.nonce
            reply = await client.ask(f"challenge alice {client_nonce}")
            again = CHALLENGE.fullmatch(reply)
            assert again and again.group(3).startswith(client_nonce), reply
            assert again.group(3) != first.group(3)  # the server's half is new
            assert await client.ask(f"auth {proof}") == FAILED
            assert await client.closed()

        async with connected(port) as client:  # replayed with no challenge at all
            assert await client.ask(f"auth {proof}") == no_challenge
            assert await client.closed()

        async with connected(port) as client:  # the right user, the wrong password
            _, _, bad = await challenge(client, "alice", "not-her-password")
            assert await client.ask(f"auth {bad}") == FAILED
            assert await client.closed()
        # Three failures (the replays and the wrong password): now the address waits.
        reply, closed = await login_once(port, "alice", PASSWORDS["alice"])
        assert BACKED_OFF.fullmatch(reply) and closed, reply
        assert not server.shutting_down


async def test_an_unknown_user_looks_like_a_real_one(tmp_path):
    async with auth_server(tmp_path) as (server, port, _):
        answers = {}
        for name in ("alice", "nosuchuser", "alice", "nosuchuser"):
            async with connected(port) as client:
                _, match, _ = await challenge(client, name, "whatever")
                answers.setdefault(name, []).append(match)
                async with connected(port) as bare:  # without a client nonce too
                    assert CHALLENGE.fullmatch(await bare.ask(f"challenge {name}"))
        for name, (one, two) in answers.items():
            assert one.group(1) == str(ITERATIONS), name
            assert len(base64.b64decode(one.group(2), validate=True)) == passwords.SALT_BYTES
            assert one.group(2) == two.group(2), f"{name}: the salt changed between challenges"
            assert one.group(3) != two.group(3), f"{name}: a nonce was reused"
        real, unknown = answers["alice"][0], answers["nosuchuser"][0]
        assert len(real.group(3)) == len(unknown.group(3))
        assert real.group(2) != unknown.group(2)

        # Logging in: an unknown user and a wrong password get the same bytes, and both close.
        async with connected(port) as client:
            _, _, proof = await challenge(client, "nosuchuser", "guess")
            assert await client.ask(f"auth {proof}") == FAILED
            assert await client.closed()
        unknown = await login_once(port, "nosuchuser", "guess")
        wrong = await login_once(port, "alice", "guess")
        assert unknown == wrong == (FAILED, True)
        # The unknown user's failures counted like wrong passwords: three, so now a wait.
        reply, closed = await login_once(port, "alice", PASSWORDS["alice"])
        assert BACKED_OFF.fullmatch(reply) and closed, reply
        assert not server.shutting_down


async def test_an_unknown_users_salt_does_not_change_across_a_restart(tmp_path):
    path = tmp_path / "users"
    write_users(path)
    salts = collections.defaultdict(set)
    for _ in range(2):  # the same users file, the server started twice
        async with running_server(users_file=str(path)) as server:
            for name in ("alice", "nosuchuser"):
                async with connected(server.address[1]) as client:
                    salts[name].add(CHALLENGE.fullmatch(
                        await client.ask(f"challenge {name}")).group(2))
    assert len(salts["alice"]) == 1
    assert len(salts["nosuchuser"]) == 1, "the decoy salt changed: nosuchuser does not exist"


# -- 8. the audit trail ------------------------------------------------------------------------

async def test_the_audit_trail_never_holds_a_password(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    trail = tmp_path / "audit.log"
    secrets = {
        "right": PASSWORDS["alice"], "wrong": "Wrong-Secret-2", "named": "Wrong-Secret-3",
        "extra": "Wrong-Secret-4", "unbalanced": "Wrong-Secret-5", "upper": "Wrong-Secret-6",
    }
    async with auth_server(tmp_path, audit_log=str(trail)) as (server, port, _):
        async with connected(port) as client:
            assert await client.ask(f"login alice {secrets['right']}") == \
                "logged in as alice (admin)\n" + SEP
            assert await client.ask("systemstatus echo visible") == "visible\n" + SEP
        async with connected(port) as client:
            _, _, proof = await challenge(client, "alice", PASSWORDS["alice"])
            assert AUTHED.fullmatch(await client.ask(f"auth {proof}"))
        # Three failed logins: the most before the back-off (the others fail to bind or parse).
        assert await login_once(port, "alice", secrets["wrong"]) == (FAILED, True)
        assert await login_once(port, "user=alice", f"password={secrets['named']}") == \
            (FAILED, True)
        for line, error in [
                (f"login alice {secrets['extra']} extra", "too many arguments"),
                (f"login alice 'x {secrets['unbalanced']}", "unbalanced quotes"),
                (f"  LOGIN alice {secrets['upper']}", "login failed")]:
            async with connected(port) as client:
                reply = await client.ask(line)
                assert reply.startswith("ERROR: ") and error in reply, (line, reply)
                assert await client.closed()
    text = trail.read_text(encoding="utf-8")  # the server has stopped: all of it is written
    lines = text.splitlines()
    print(f"\n[audit] {len(lines)} lines:\n" + text)
    for name, secret in [*secrets.items(), ("proof", proof)]:
        assert secret not in text, f"the {name} secret is in the audit trail"
        assert secret not in caplog.text, f"the {name} secret is in the server's log"
    logins = [line for line in lines if "login" in line.lower()]
    assert len(logins) == 6
    assert sum('ok' in line.split() and '"login alice FILTERED"' in line for line in logins) == 1
    assert sum('error="login failed"' in line and '"login alice FILTERED"' in line
               for line in logins) == 1
    assert any('"login user=alice password=FILTERED"' in line for line in logins)
    assert any('"auth FILTERED"' in line and " ok " in line for line in lines)
    assert any('"systemstatus echo visible"' in line for line in lines)  # the trail works


# -- 9. a user removed while connected ------------------------------------------------------------

async def test_a_removed_user_loses_their_level_while_connected(tmp_path):
    # login_max_commands is raised so the poll below cannot end on the line count:
    # the denial must come from the level.
    async with auth_server(tmp_path, login_max_commands=10_000) as (server, port, path):
        async with connected(port) as victim, connected(port) as rita_:
            assert await victim.ask(f"login olive {PASSWORDS['olive']}") == \
                "logged in as olive (operate)\n" + SEP
            assert await rita_.ask(f"login rita {PASSWORDS['rita']}") == \
                "logged in as rita (read)\n" + SEP
            for _ in range(3):  # remembered, so later asks take the fast lane
                assert await victim.ask("systemstatus echo still") == "still\n" + SEP
            # olive is removed, and rita raised to operate (lowered again below).
            users.save(path, {"alice": user("alice", PASSWORDS["alice"], levels.Level.ADMIN),
                              "rita": user("rita", PASSWORDS["rita"], levels.Level.OPERATE)})
            removed_at = time.monotonic()
            reply, polls = None, 0
            while time.monotonic() - removed_at < 5.0 and polls < 1000:
                polls += 1
                reply = await victim.ask("systemstatus echo still")
                if reply != "still\n" + SEP:
                    break
                await asyncio.sleep(0.02)  # the sweep runs on its own clock
            took = time.monotonic() - removed_at
            print(f"\n[removed] olive denied {took:.2f} s after removal ({polls} polls)")
            assert reply == NEEDS_LOGIN.format("systemstatus echo"), reply
            assert await victim.closed()  # no level: strict again, closed on the error
            # rita's new level is hers at once, on the same connection.
            assert await rita_.ask("systemstatus echo raised") == "raised\n" + SEP
            users.save(path, {"alice": user("alice", PASSWORDS["alice"], levels.Level.ADMIN),
                              "rita": user("rita", PASSWORDS["rita"], levels.Level.READ)})
            denied = "ERROR: 'systemstatus echo' needs the operate level; rita has read\n" + SEP
            lowered_at = time.monotonic()
            for _ in range(250):
                reply = await rita_.ask("systemstatus echo raised")
                if reply == denied or time.monotonic() - lowered_at > 5.0:
                    break
                assert reply == "raised\n" + SEP
                await asyncio.sleep(0.02)  # the sweep runs on its own clock
            assert reply == denied
            assert await rita_.ask("help -s")  # a level lowered, not taken: still open
        assert await login_once(port, "olive", PASSWORDS["olive"]) == (FAILED, True)
        await assert_alive(server, port)


async def test_removing_every_user_does_not_open_the_server(tmp_path):
    async with auth_server(tmp_path) as (server, port, path):
        path.unlink()
        await until(lambda: not server.manager.access.users, 5.0)
        assert not server.manager.access.users
        async with connected(port) as client:
            assert await client.ask("systemstatus echo open?") == \
                NEEDS_LOGIN.format("systemstatus echo")
            assert await client.closed()
        async with connected(port) as client:
            assert await client.ask("kill") == NEEDS_LOGIN.format("kill")
        assert not server.manager.shutdown_requested.is_set()


# -- 10. help shows only what may run ------------------------------------------------------------

def terse_fields(text):
    """``help -s`` -> {"TOP": [...], "SERVICES": [...], "COMMANDS": [...]}."""
    assert text.endswith(SEP), text
    fields = {}
    for line in text[:-len(SEP)].splitlines():
        key, _, names = line.partition(":")
        fields[key] = names.split()
    return fields


async def test_help_shows_only_what_the_connection_may_run(tmp_path):
    async with auth_server(tmp_path) as (server, port, _):
        catalog = server.manager.catalog
        read = levels.Level.READ
        async with connected(port) as admin:
            assert await admin.ask(f"login alice {PASSWORDS['alice']}") == \
                "logged in as alice (admin)\n" + SEP
            everything = terse_fields(await admin.ask("help -s"))
        assert everything["COMMANDS"] == ["help", "kill", "login", "restart"]
        # What a read-level user must not be shown: every operate or admin command.
        above_read = {name for name in everything["TOP"] if catalog.toplevel[name][1].level > read}
        above_read |= {"kill", "restart"}
        above_read |= {f"{service} {name}" for service in everything["SERVICES"]
                       for name, command in catalog.services[service].commands.items()
                       if command.level > read}
        quiet = [name for name in everything["SERVICES"]  # services with nothing at read
                 if all(c.level > read for c in catalog.services[name].commands.values())]
        assert {"kill", "restart", "systemstatus echo", "captest"} <= above_read and quiet

        async with connected(port) as reader:
            assert await reader.ask(f"login rita {PASSWORDS['rita']}") == \
                "logged in as rita (read)\n" + SEP
            shown = terse_fields(await reader.ask("help -s"))
            assert shown["COMMANDS"] == ["help", "login"]
            assert set(shown["TOP"]) == {name for name in everything["TOP"]
                                         if catalog.toplevel[name][1].level <= read}
            assert set(shown["SERVICES"]) == set(everything["SERVICES"]) - set(quiet)
            listed = set(shown["TOP"])
            for service in shown["SERVICES"]:
                own = terse_fields(await reader.ask(f"help -s {service}"))
                assert own["COMMANDS"][0] == "help"
                listed |= {f"{service} {name}" for name in own["COMMANDS"][1:]}
                assert all(catalog.services[service].commands[name].level <= read
                           for name in own["COMMANDS"][1:]), own
            assert not listed & above_read
            text = await reader.ask("help")
            names = set(re.findall(r"^    (\S+):", text, re.MULTILINE))
            assert names == set(shown["TOP"]) | set(shown["SERVICES"]) | {"help", "login"}
            assert not names & ({"kill", "restart", *quiet} | set(everything["TOP"]) - listed)
            for topic in ("kill", "restart", *quiet, "captest", "systemstatus echo"):
                reply = await reader.ask(f"help {topic}")  # no detail either
                assert reply.startswith("ERROR: ") and reply.count("\n") == 2, reply

        only_help = ("-" * 51 + "\nSManager\n" + "-" * 51 + "\nToplevel exposed commands:\n"
                     + "-" * 51 + "\nServices:\nCommands:\n    help: display help message\n"
                     "    login: log in as a user\n\n" + SEP)
        async with connected(port) as anonymous:
            assert anonymous.banner.endswith("Available Services:\n" + SEP)
            assert await anonymous.ask("help -s") == \
                "TOP: \nSERVICES: \nCOMMANDS: help login\n" + SEP
            assert await anonymous.ask("help") == only_help
            assert await anonymous.ask("help kill") == \
                "ERROR: no help for 'kill' (try 'help')\n" + SEP
            assert await anonymous.closed()  # its first error
        await assert_alive(server, port)
