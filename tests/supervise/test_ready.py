"""Readiness checks against real sockets on 127.0.0.1 and real programs."""

import asyncio
import contextlib
import os
import signal
import socket
from types import SimpleNamespace

import pytest
from helpers import QUICK, TIMEOUT, until

from smanager.supervise.orphans import process_start_time
from smanager.supervise.ready import check, wait_ready


@pytest.fixture
def closed_port():
    """A port nothing listens on: bound, so nobody else takes it, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def web():
    """A tiny HTTP server on 127.0.0.1: /health says 200, /moved 302, /mute never
    answers, anything else 503; /dying first clears ``alive``, as if the program
    being checked exited while it answered.  ``heads`` holds the requests' heads."""
    web = SimpleNamespace(heads=[], alive=asyncio.Event())
    web.alive.set()

    async def answer(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        web.heads.append(head)
        path = head.split()[1]
        if path == b"/dying":
            web.alive.clear()
        if path != b"/mute":
            status = {b"/health": b"200 OK", b"/moved": b"302 Found"}.get(path, b"503 Busy")
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    web.port = server.sockets[0].getsockname()[1]
    yield web
    server.close()
    await server.wait_closed()


# -- tcp -----------------------------------------------------------------------------------

async def test_tcp_is_ready_when_a_port_accepts():
    server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await check("tcp", str(port), timeout=TIMEOUT) is None
        assert await check("tcp", f"127.0.0.1:{port}", timeout=TIMEOUT) is None


async def test_tcp_reports_a_refused_connection_naming_the_address(closed_port):
    assert await check("tcp", str(closed_port), timeout=TIMEOUT) == (
        f"tcp 127.0.0.1:{closed_port}: connection refused")


async def test_tcp_takes_an_ipv6_host_in_brackets():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "::1", 0)
    except OSError:
        pytest.skip("no ::1 here")
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await check("tcp", f"[::1]:{port}", timeout=TIMEOUT) is None


@pytest.mark.parametrize("target", ["", "http", "127.0.0.1:", "127.0.0.1:70000", ":80"])
async def test_tcp_explains_an_address_it_cannot_use(target):
    assert await check("tcp", target, timeout=TIMEOUT) == (
        f"tcp {target}: bad address (want PORT or HOST:PORT)")


async def test_an_unknown_kind_of_check_is_a_reason_not_an_exception():
    assert await check("udp", "53", timeout=TIMEOUT) == (
        "udp 53: unknown readiness check (want tcp, http or cmd)")


# -- http ----------------------------------------------------------------------------------

async def test_http_is_ready_on_2xx_and_3xx_and_sends_a_plain_get(web):
    assert await check("http", f"http://127.0.0.1:{web.port}/health", timeout=TIMEOUT) is None
    assert await check("http", f"http://127.0.0.1:{web.port}/moved", timeout=TIMEOUT) is None
    assert web.heads[0] == (f"GET /health HTTP/1.0\r\nHost: 127.0.0.1:{web.port}\r\n"
                        "Connection: close\r\nUser-Agent: smanager\r\n\r\n").encode()


async def test_http_reports_an_error_status(web):
    url = f"http://127.0.0.1:{web.port}/sick?verbose=1"
    assert await check("http", url, timeout=TIMEOUT) == f"{url}: status 503"
    assert web.heads[0].startswith(b"GET /sick?verbose=1 HTTP/1.0\r\n")


async def test_http_gives_up_on_a_server_that_never_answers(web):
    url = f"http://127.0.0.1:{web.port}/mute"
    assert await check("http", url, timeout=0.2) == f"{url}: timed out after 0.2 s"


async def test_http_reports_a_refused_connection(closed_port):
    url = f"http://127.0.0.1:{closed_port}/"
    assert await check("http", url, timeout=TIMEOUT) == f"{url}: connection refused"


async def test_http_says_when_the_answer_is_not_http():
    async def babble(reader, writer):
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    async with server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        assert await check("http", url, timeout=TIMEOUT) == f"{url}: not an HTTP response"


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "http:///health", "http://h:99999/"])
async def test_http_explains_a_url_it_cannot_use(url):
    reason = await check("http", url, timeout=TIMEOUT)
    assert reason.startswith(f"http {url}: ")


# -- cmd -----------------------------------------------------------------------------------

async def test_cmd_is_ready_on_exit_status_zero_and_not_otherwise():
    assert await check("cmd", "true", timeout=TIMEOUT) is None
    assert await check("cmd", "false", timeout=TIMEOUT) == "cmd false: exit status 1"
    assert await check("cmd", "sh -c 'kill -TERM $$'", timeout=TIMEOUT) == (
        "cmd sh -c 'kill -TERM $$': killed by SIGTERM")


async def test_cmd_reports_a_program_that_cannot_run(tmp_path):
    missing = tmp_path / "no-such-check"
    assert await check("cmd", str(missing), timeout=TIMEOUT) == (
        f"cmd {missing}: no such file or directory")
    assert await check("cmd", "'unbalanced", timeout=TIMEOUT) == (
        "cmd 'unbalanced: no closing quotation")


async def test_cmd_still_running_at_the_timeout_is_killed_with_its_whole_group(tmp_path):
    member_file = tmp_path / "member"
    target = f"sh -c 'sleep 1000 & echo $! > {member_file}; exec sleep 1000'"
    try:
        assert await check("cmd", target, timeout=1.0) == f"cmd {target}: timed out after 1 s"
        member = int(member_file.read_text())
        assert await until(lambda: process_start_time(member) is None)
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            kill_if_running(int(member_file.read_text()))


async def test_a_cancelled_cmd_check_kills_its_group(tmp_path):
    member_file = tmp_path / "member"
    target = f"sh -c 'sleep 1000 & echo $! > {member_file}; exec sleep 1000'"
    checking = asyncio.create_task(check("cmd", target, timeout=TIMEOUT))
    try:
        assert await until(lambda: member_file.exists() and member_file.read_text().strip())
        member = int(member_file.read_text())
        checking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await checking
        assert await until(lambda: process_start_time(member) is None)
    finally:
        checking.cancel()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            kill_if_running(int(member_file.read_text()))


def kill_if_running(pid):
    """SIGKILL PID if it is still a sleep this test started (read /proc, not a guess)."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        if cmdline.read() == b"sleep\x001000\x00":
            os.kill(pid, signal.SIGKILL)


# -- wait_ready ----------------------------------------------------------------------------

async def test_wait_ready_returns_once_the_port_starts_listening():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        asyncio.get_running_loop().call_later(0.2, sock.listen)
        assert await wait_ready("tcp", str(port), interval=0.05, timeout=TIMEOUT,
                                alive=lambda: True) is None


async def test_wait_ready_gives_up_after_the_timeout_with_the_last_reason(closed_port):
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await wait_ready("tcp", str(closed_port), interval=0.05, timeout=0.3,
                            alive=lambda: True) == (
        f"not ready after 0.3 s: tcp 127.0.0.1:{closed_port}: connection refused")
    assert 0.3 <= loop.time() - began < 0.3 + 0.5


async def test_wait_ready_stops_when_the_program_exits(closed_port):
    alive = asyncio.Event()
    alive.set()
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, alive.clear)
    began = loop.time()
    assert await wait_ready("tcp", str(closed_port), interval=0.05, timeout=TIMEOUT,
                            alive=alive) == "exited"
    assert loop.time() - began < 1.0


async def test_wait_ready_checks_nothing_for_a_program_already_gone(web):
    assert await wait_ready("http", f"http://127.0.0.1:{web.port}/health", interval=0.05,
                            timeout=TIMEOUT, alive=lambda: False) == "exited"
    assert web.heads == []


async def test_a_check_slower_than_the_interval_is_cut_only_at_the_timeout(tmp_path):
    attempts = tmp_path / "attempts"
    target = f"sh -c 'echo >> {attempts}; exec sleep 1000'"
    reason = await wait_ready("cmd", target, interval=0.1, timeout=0.5, alive=lambda: True)
    assert reason.startswith(f"not ready after 0.5 s: cmd {target}: timed out after ")
    assert len(attempts.read_text()) == 1


async def test_a_health_command_slower_than_the_interval_still_passes(tmp_path):
    assert await wait_ready("cmd", "sleep 0.3", interval=0.05, timeout=TIMEOUT,
                            alive=lambda: True) is None


async def test_wait_ready_stops_at_once_when_the_program_exits_during_a_check(web):
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await wait_ready("http", f"http://127.0.0.1:{web.port}/dying", interval=TIMEOUT,
                            timeout=2 * TIMEOUT, alive=web.alive) == "exited"
    assert loop.time() - began < QUICK
