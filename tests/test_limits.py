"""Limits and safe defaults: connection caps, idle/line/send time-outs,
refusing to listen beyond loopback, the Unix socket."""

import asyncio
import contextlib
import logging
import os
import socket
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, SEP_LINE, TIMEOUT, LineClient, need, running_server
from conftest import config as server_config

from smanager.config import ConfigError
from smanager.server import limits
from smanager.server.server import Server

SEP = SEP_LINE.decode()


# -- pure ---------------------------------------------------------------------------

def test_admission_counts_overall_and_per_address():
    admission = limits.Admission(total=3, per_address=2)
    assert admission.admit("10.0.0.1") is None
    assert admission.admit("10.0.0.1") is None
    assert admission.admit("10.0.0.1") == \
        "too many connections from 10.0.0.1 (limit 2); try again later"
    assert admission.admit("10.0.0.2") is None
    assert admission.admit("10.0.0.3") == "too many connections (limit 3); try again later"
    admission.release("10.0.0.1")
    assert admission.admit("10.0.0.3") is None
    assert admission.by_address == {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1}


@pytest.mark.parametrize(("host", "is_exposed"), [
    ("127.0.0.1", False), ("127.1.2.3", False), ("::1", False), ("localhost", False),
    ("0.0.0.0", True), ("", True), ("::", True), ("192.0.2.10", True),
])
def test_which_addresses_reach_other_machines(host, is_exposed):
    assert limits.exposed(host) is is_exposed


# -- safe by default ------------------------------------------------------------------

async def test_listening_beyond_loopback_needs_insecure():
    server = Server(server_config(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0: anyone who can"):
        await server.start()
    assert not server.connections


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0"),
    (["--no-tcp"], "nothing to listen on"),
    (["--unix-socket-mode", "999", "--unix-socket", "x"], "unix_socket_mode must be octal"),
    (["--max-connections", "0"], "max_connections must be at least 1"),
])
def test_the_cli_says_how_to_fix_an_unsafe_or_empty_setup(args, message):
    done = subprocess.run([sys.executable, "-m", "smanager", "--port", "0", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT * 3, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("smanager: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1


# -- connection caps ---------------------------------------------------------------------

async def test_connections_past_the_limit_get_one_line_and_are_closed():
    async with running_server(max_connections=3, max_connections_per_address=10) as server:
        port = server.address[1]
        held = [await LineClient.connect(port) for _ in range(3)]
        try:
            for _ in range(5):  # a small flood: every one is refused the same way
                extra = await LineClient.connect(port, read_banner=False)
                assert await extra.read_all() == \
                    b"ERROR: too many connections (limit 3); try again later\n" + SEP_LINE
                await extra.close()
            assert await held[0].ask("testsvc add 1 1") == "2\n" + SEP  # service goes on
            await held.pop().close()
            await asyncio.wait_for(_until(lambda: server.admission.count == 2), TIMEOUT)
            again = await LineClient.connect(port)
            held.append(again)
            assert await again.ask("testsvc add 2 2") == "4\n" + SEP
        finally:
            for client in held:
                await client.close()


async def test_connections_per_address_are_capped():
    async with running_server(max_connections_per_address=2) as server:
        port = server.address[1]
        held = [await LineClient.connect(port) for _ in range(2)]
        extra = await LineClient.connect(port, read_banner=False)
        try:
            assert await extra.read_all() == (b"ERROR: too many connections from 127.0.0.1 "
                                              b"(limit 2); try again later\n" + SEP_LINE)
        finally:
            for client in [*held, extra]:
                await client.close()


async def _until(condition):
    """Wait for a condition the server reaches by itself (bounded by the caller)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


# -- time-outs ------------------------------------------------------------------------------

async def test_an_idle_connection_is_told_and_closed():
    async with running_server(idle_timeout=0.5) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert await client.ask("testsvc sleep 0.8") == "slept 0.8\n" + SEP  # busy: not idle
            assert await client.read_all() == \
                b"ERROR: idle for 0.5 s; closing the connection\n" + SEP_LINE
        finally:
            await client.close()


async def test_a_line_must_be_finished_in_time_even_a_byte_at_a_time():
    async with running_server(line_timeout=0.4, idle_timeout=60) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert await client.ask("testsvc add 1") == "2\n" + SEP  # not a one-shot client
            # readuntil, not read(): bytes dripped after the close make the server's
            # kernel answer RST, and read() would then report that instead.
            told = asyncio.ensure_future(client.reply())
            for byte in b"testsvc add 1 2" * 10:  # bounded: the line is cut off long before
                if told.done():
                    break
                with contextlib.suppress(ConnectionError):
                    await client.send(bytes([byte]))
                await asyncio.sleep(0.05)  # the attack itself: a slow drip of bytes
            assert await told == \
                b"ERROR: line not finished within 0.4 s; closing the connection\n" + SEP_LINE
        finally:
            await client.close()


class Seen(logging.Handler):
    """Sets an event when a log message contains some text."""

    def __init__(self, text):
        super().__init__()
        self.text, self.event = text, asyncio.Event()

    def emit(self, record):
        if self.text in record.getMessage():
            self.event.set()


async def test_a_client_that_stops_reading_is_dropped_and_its_output_freed():
    seen = Seen("output unread for 0.3 s; dropping the client")
    logging.getLogger("smanager.limits").addHandler(seen)
    try:
        async with running_server(send_timeout=0.3) as server:
            client = await LineClient.connect(server.address[1])
            try:
                await client.send("testsvc big 20000\ntestsvc big 20000")  # 40 MB, never read
                await asyncio.wait_for(seen.event.wait(), TIMEOUT)
                await asyncio.wait_for(_until(lambda: not server.connections), TIMEOUT)
                with contextlib.suppress(ConnectionError):
                    await client.read_all()  # what the kernel held, then the end
            finally:
                await client.close()
    finally:
        logging.getLogger("smanager.limits").removeHandler(seen)


# -- the Unix socket -----------------------------------------------------------------------

async def test_a_unix_socket_alone_is_private_and_answers(tmp_path):
    path = tmp_path / "smanager.sock"
    async with running_server(unix_socket=str(path), tcp=False):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        reader, writer = await asyncio.open_unix_connection(str(path))
        client = LineClient(reader, writer)
        try:
            assert (await client.reply()).startswith(b"*" * 50)
            assert await client.ask("testsvc add 2 2") == "4\n" + SEP
        finally:
            await client.close()
    assert not path.exists()  # removed on the way out


async def test_a_unix_socket_beside_tcp_with_its_own_mode(tmp_path):
    path = tmp_path / "s.sock"
    async with running_server(unix_socket=str(path), unix_socket_mode="660") as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert await (await LineClient.connect(server.address[1])).ask("testsvc add 1") == \
            "2\n" + SEP


async def test_a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(tmp_path):
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed server leaves
    async with running_server(unix_socket=str(path), tcp=False):
        with pytest.raises(FileExistsError, match="another server is listening"):
            async with running_server(unix_socket=str(path), tcp=False):
                pass
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a socket"):
        async with running_server(unix_socket=str(other), tcp=False):
            pass
    assert other.read_text() == "keep me"


@pytest.mark.parametrize("tool", ["nc", "socat"])
async def test_real_clients_reach_the_unix_socket(tmp_path, tool):
    need(tool)
    path = tmp_path / "s.sock"
    command = {"nc": ["nc", "-U", str(path)], "socat": ["socat", "-t", "5", "-", f"UNIX-CONNECT:{path}"]}
    async with running_server(unix_socket=str(path), tcp=False):
        process = await asyncio.create_subprocess_exec(
            *command[tool], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(process.communicate(b"systemstatus echo hi"), TIMEOUT)
    assert out.endswith(SEP_LINE + b"hi\n" + SEP_LINE)
