"""Running under systemd: a real ``python -m smanager`` tells a datagram socket
standing in for systemd's NOTIFY_SOCKET when it is ready, reloading and
stopping, and pings the watchdog; it serves on sockets passed to it as
systemd passes them (socket activation), under the same rule as binding; and
the example units pass ``systemd-analyze verify``."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    TIMEOUT,
    LineClient,
    ServerProcess,
    closed_port,
    need,
    short_dir,
)

from smanager.server import systemd

ACTIVATE = """\
import fcntl, os, sys
# What systemd does before exec: the sockets as descriptors 3, 4, ... and
# LISTEN_PID naming the process that will run smanager (exec keeps the pid).
given = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in given]
for fd in given:
    os.close(fd)
for target, fd in enumerate(high, 3):
    os.dup2(fd, target)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(high)))
os.execv(sys.executable, [sys.executable, "-m", "smanager", *sys.argv[2:]])
"""
STATE_MESSAGES = ("READY=1", "RELOADING=1", "STOPPING=1")
O_CLOEXEC = 0o2000000  # as /proc/PID/fdinfo shows it


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: the messages, as lists of fields."""

    def __init__(self, directory):
        self.path = str(directory / "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(TIMEOUT)

    def receive(self):
        return self.socket.recv(65536).decode().splitlines()

    def next_with(self, field):
        """The next message carrying FIELD; the others before it are skipped."""
        for _ in range(1000):  # bounded: each receive waits at most TIMEOUT
            fields = self.receive()
            if field in fields:
                return fields
        raise AssertionError(f"no {field} in 1000 messages")

    def next_state(self):
        """The next READY, RELOADING or STOPPING message (not a ping or a STATUS)."""
        for _ in range(1000):
            fields = self.receive()
            if any(field in STATE_MESSAGES for field in fields):
                return fields
        raise AssertionError("no state message in 1000 messages")

    def close(self):
        self.socket.close()


@pytest.fixture
def fake_systemd():
    with short_dir() as directory:
        receiver = FakeSystemd(directory)
        yield receiver
        receiver.close()


def lines_until(process, text):
    """Lines of PROCESS's stderr up to one holding TEXT; it is killed if none
    comes within TIMEOUT."""
    timer, lines = threading.Timer(TIMEOUT, process.kill), []
    timer.start()
    try:
        for line in process.stderr:
            lines.append(line)
            if text in line:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"no {text!r} in:\n" + "".join(lines))


def value(fields, key):
    return next(field.split("=", 1)[1] for field in fields if field.startswith(key + "="))


def status_of(server, connections):
    """The STATUS field a server sends with its services running (as its log
    names them) and CONNECTIONS."""
    names = re.search(r"services running: (.*)", "".join(server.log))[1].split()
    return f"STATUS={len(names)} services running, {connections}"


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# -- notifications, from a real server -------------------------------------------------------

def test_a_server_says_ready_then_reloading_and_ready_around_sighup_then_stopping(
        fake_systemd):
    server = ServerProcess(env={"NOTIFY_SOCKET": fake_systemd.path}).start()
    try:
        status = status_of(server, "0 connections")
        assert fake_systemd.next_state() == ["READY=1", status]
        before = monotonic_usec()
        server.process.send_signal(signal.SIGHUP)
        reloading = fake_systemd.next_state()
        assert reloading[0] == "RELOADING=1"
        assert before <= int(value(reloading, "MONOTONIC_USEC")) <= monotonic_usec()
        assert fake_systemd.next_state() == ["READY=1", status]
        server.process.terminate()
        assert fake_systemd.next_state() == ["STOPPING=1", "STATUS=stopping"]
    finally:
        assert server.stop() == 0
    assert "restart: restarted: monitor proc" in "".join(server.log)


def test_ready_comes_once_the_server_accepts_and_its_services_run(fake_systemd):
    port = closed_port()
    process = subprocess.Popen(  # nothing but READY=1 is waited for
        [sys.executable, "-m", "smanager", "--port", str(port)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": fake_systemd.path},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = fake_systemd.next_with("READY=1")
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            assert b"Service Manager" in client.recv(4096)
        assert re.fullmatch(r"[1-9]\d* services running, 0 connections", value(ready, "STATUS"))
    finally:
        process.terminate()
        assert process.wait(TIMEOUT) == 0


async def test_the_watchdog_is_pinged_every_half_of_watchdog_usec_and_status_follows(
        fake_systemd):
    server = ServerProcess(env={"NOTIFY_SOCKET": fake_systemd.path,
                                "WATCHDOG_USEC": "200000"}).start()
    try:
        fake_systemd.next_with("READY=1")
        arrivals = []
        for _ in range(4):
            fake_systemd.next_with("WATCHDOG=1")
            arrivals.append(time.monotonic())
        # 0.1 s apart, not a burst: even if the first two waited for the test
        # to read them, the last two came in their own time.
        assert arrivals[-1] - arrivals[0] >= 0.1
        client = await LineClient.connect(server.port)
        fields = fake_systemd.next_with(status_of(server, "1 connection"))
        assert "WATCHDOG=1" in fields  # the change rides on a ping
        await client.close()
    finally:
        server.stop()


def test_a_watchdog_meant_for_another_process_is_not_pinged():
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}) is None
    mine = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(mine) == 0.1
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval({}) is None


def test_a_notify_socket_nobody_listens_on_is_logged_once_and_the_server_runs():
    with short_dir() as directory:
        server = ServerProcess(env={"NOTIFY_SOCKET": str(directory / "gone"),
                                    "WATCHDOG_USEC": "100000"}).start()
        try:
            server.process.send_signal(signal.SIGHUP)  # RELOADING, READY: more failures
            server.log += lines_until(server.process, "restart: restarted")
        finally:
            assert server.stop() == 0
    log = "".join(server.log)
    assert log.count("cannot notify systemd") == 1
    assert f"cannot notify systemd ({directory / 'gone'}): No such file or directory" in log


def test_only_status_changes_are_sent_again():
    with short_dir() as directory:
        receiver = FakeSystemd(directory)
        notifier = systemd.Notifier({"NOTIFY_SOCKET": receiver.path})
        try:
            notifier.ready("1 service running, 0 connections")
            notifier.tick("1 service running, 0 connections")
            notifier.tick("1 service running, 1 connection")
            assert receiver.receive() == ["READY=1", "STATUS=1 service running, 0 connections"]
            assert receiver.receive() == ["STATUS=1 service running, 1 connection"]
        finally:
            notifier.close()
            receiver.close()


def test_an_abstract_notify_socket_is_reached():
    name = f"smanager-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(TIMEOUT)
        notifier = systemd.Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.stopping()
        notifier.close()
        assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=stopping\n"


@pytest.mark.parametrize("given", ["", "vsock:2:1234", "relative/path"])
def test_without_a_usable_notify_socket_nothing_is_sent(given, caplog):
    notifier = systemd.Notifier({"NOTIFY_SOCKET": given} if given else {})
    assert not notifier.enabled and not notifier.send("READY=1")
    assert ("not a socket path" in caplog.text) == bool(given)


# -- socket activation ----------------------------------------------------------------------

@contextlib.contextmanager
def activated(sockets, *args, names=""):
    """``python -m smanager ARGS`` handed SOCKETS as systemd hands them."""
    fds = [sock.fileno() for sock in sockets]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LISTEN_FDNAMES": names}
    process = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, ",".join(map(str, fds)),
         "--host", "127.0.0.1", "--port", "0", *args],
        cwd=ROOT, env=env, pass_fds=fds, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


async def test_a_server_serves_on_the_tcp_and_unix_sockets_systemd_passes():
    with short_dir() as directory, \
            socket.create_server(("127.0.0.1", 0)) as tcp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        unix.bind(str(directory / "sm.sock"))
        unix.listen()
        port = tcp.getsockname()[1]
        with activated([tcp, unix], names="web:local") as server:
            log = "".join(lines_until(server, "listening on")  # one line each
                          + lines_until(server, "listening on"))
            assert f"listening on 127.0.0.1:{port} (plain TCP, from systemd: web)" in log
            assert f"listening on {directory / 'sm.sock'} (Unix socket, from systemd: local)" \
                in log
            for client in (await LineClient.connect(port),
                           await LineClient.connect_unix(directory / "sm.sock")):
                assert b"Service Manager" in client.banner
                await client.close()
            info = Path(f"/proc/{server.pid}/fdinfo/3").read_text()
            flags = int(info.split("flags:")[1].split()[0], 8)
            assert flags & O_CLOEXEC  # no program proc starts inherits it
            server.terminate()
            assert server.wait(TIMEOUT) == 0
        assert (directory / "sm.sock").exists()  # systemd's file: not ours to remove


def test_a_passed_tcp_socket_beyond_loopback_is_refused_like_binding_there():
    with socket.create_server(("0.0.0.0", 0)) as exposed:
        port = exposed.getsockname()[1]
        with activated([exposed]) as server:
            error = server.communicate(timeout=TIMEOUT)[1]
            assert server.returncode == 2
    assert error.startswith(f"smanager: error: refusing to listen on 0.0.0.0:{port} (a socket "
                            "systemd passed): anyone who can reach it could run every command")
    assert error.count("\n") == 1


def test_a_passed_socket_that_does_not_listen_stops_the_start():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        datagram.bind(("127.0.0.1", 0))
        with activated([datagram]) as server:
            error = server.communicate(timeout=TIMEOUT)[1]
            assert server.returncode == 2
    assert error == ("smanager: error: systemd passed descriptor 3, which is not a listening "
                     "TCP or Unix stream socket (the socket unit needs ListenStream= and "
                     "Accept=no)\n")


def test_sockets_passed_to_another_process_are_not_taken():
    assert systemd.inherited_sockets({"LISTEN_PID": "1", "LISTEN_FDS": "2"}) == []
    assert systemd.inherited_sockets({"LISTEN_FDS": "2"}) == []


# -- the example units -----------------------------------------------------------------------

def test_the_example_units_pass_systemd_analyze_verify(tmp_path):
    need("systemd-analyze")
    stub = tmp_path / "smanager"  # verify wants ExecStart's program to exist
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    for unit in ("smanager.service", "smanager.socket"):
        text = (ROOT / "examples" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/usr/local/bin/smanager", str(stub)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "smanager.service"),
         str(tmp_path / "smanager.socket")],
        capture_output=True, text=True, timeout=TIMEOUT * 3, check=False)
    # It also reports on units of the host's; only ours count.
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if str(tmp_path) in line]
    assert (result.returncode, ours) == (0, [])


def test_the_example_service_is_what_smanager_speaks():
    unit = dict(line.split("=", 1) for line in
                (ROOT / "examples" / "smanager.service").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    assert unit["Type"] == "notify" and unit["KillMode"] == "mixed"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["StateDirectory"] == "smanager"  # read back as $STATE_DIRECTORY
