"""smanager.client against real servers on 127.0.0.1 port 0.

The blocking Client talks to servers running on a loop in another thread
(ServerThread); the AsyncClient to servers on the test's own loop.
"""

import asyncio
import socket
import threading

import pytest
from conftest import TIMEOUT, running_server

from smanager.client import (
    AsyncClient,
    CannotConnect,
    Client,
    ClientError,
    CommandFailed,
    ConnectionLost,
    TimedOut,
    parse_address,
)
from smanager.client.common import request_bytes


@pytest.fixture
def port(server_thread):
    return server_thread.start()


def closed_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- addresses and request lines, pure ---------------------------------------------------

@pytest.mark.parametrize(("text", "address"), [
    ("web1", ("web1", 10000)),
    ("web1:10001", ("web1", 10001)),
    (" 10.0.0.7:22 ", ("10.0.0.7", 22)),
    ("[::1]:10002", ("::1", 10002)),
    ("[::1]", ("::1", 10000)),
    ("::1", ("::1", 10000)),
])
def test_addresses_parse(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "web1:", "web1:x", "web1:0", "web1:70000", "[::1", ":80"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize("line", ["a\nb", "a\rb", "mode text", "MODE  Text", "mode"])
def test_lines_that_would_break_the_session_are_refused(line):
    with pytest.raises(ValueError):
        request_bytes(line)


# -- the blocking client -------------------------------------------------------------------

def test_call_returns_text_value_and_success(port):
    with Client("127.0.0.1", port) as client:
        assert client.banner_services == ["scrapman", "systemstatus", "testsvc"]
        reply = client.call("systemstatus echo hello   world")
        assert (reply.ok, reply.value, reply.text, reply.error) == \
            (True, "hello world", "hello world\n", None)
        data = client.call("testsvc data")
        assert data.value == {"b": [1, 2], "a": None}  # structured, not prose
        assert data.text == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": null\n}\n'  # as telnet shows
        dashes = client.call("testsvc dashes")
        assert dashes.text == "a\n" + "-" * 50 + "\n  " + "-" * 60 + " \nb\n"  # no stuffing


def test_an_error_reply_is_a_reply_and_run_raises_for_it(port):
    with Client("127.0.0.1", port) as client:
        reply = client.call("testsvc refuse 'not today'")
        assert (reply.ok, reply.error, str(reply)) == \
            (False, "refused: not today", "ERROR: refused: not today\n")
        with pytest.raises(CommandFailed) as failure:
            client.run("testsvc", "refuse", "it's late")  # quoted for the server
        assert failure.value.reply.error == "refused: it's late"
        assert client.run("testsvc", "add", 2, 40) == 42


def test_a_stream_arrives_chunk_by_chunk(port):
    with Client("127.0.0.1", port) as client:
        assert client.call("testsvc count 3").chunks == [1, 2, 3]
        assert client.call("testsvc count 3").text == "1\n2\n3\n"
        seen = []
        for chunk in client.stream("testsvc forever"):  # endless: only live delivery ends it
            seen.append(chunk)
            if len(seen) == 3:
                break
        assert seen == ["tick 1", "tick 2", "tick 3"]
        assert client.call("testsvc add 1").value == 2  # the stream was stopped and drained


def test_a_stream_that_fails_raises_after_its_chunks(port):
    with Client("127.0.0.1", port, timeout=5) as client:
        client.call("testsvc refuse")  # warm up
        chunks = []
        with pytest.raises(CommandFailed):
            for chunk in client.stream("nosuch command"):
                chunks.append(chunk)
        assert chunks == []


def test_ctrl_c_stops_the_command_and_keeps_the_connection(port):
    with Client("127.0.0.1", port) as client:
        def impatient(chunk):
            if chunk == "tick 3":
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            client.call("testsvc forever", on_chunk=impatient)
        assert client.connected
        assert client.call("systemstatus echo still here").value == "still here"


def test_the_help_index_is_cached_until_refresh(server_thread):
    port = server_thread.start()
    client = Client("127.0.0.1", port)
    try:
        assert client.services() == ["scrapman", "systemstatus", "testsvc"]
        assert client.toplevel()[:2] == ["captest", "capture_at"]
        assert client.builtins() == ["help", "kill", "restart"]
        assert client.commands("systemstatus") == \
            ["help", "disk", "echo", "load", "memory", "uptime", "hostname"]
        with pytest.raises(CommandFailed):
            client.commands("nosuch")
        server_thread.stop(port)
        assert client.services() == ["scrapman", "systemstatus", "testsvc"]  # from the cache
        client.refresh()
        with pytest.raises(CannotConnect):
            client.services()
    finally:
        client.close()


def test_a_slow_reply_times_out_and_the_next_call_reconnects(port):
    with Client("127.0.0.1", port) as client:
        with pytest.raises(TimedOut) as timed_out:
            client.call("testsvc sleep 5", timeout=0.2)
        assert isinstance(timed_out.value, TimeoutError)
        assert not client.connected  # its state was unknown: dropped
        assert client.call("testsvc add 1 1").value == 2


def test_a_restarted_server_is_reconnected_to(server_thread):
    port = server_thread.start()
    with Client("127.0.0.1", port) as client:
        assert client.call("testsvc add 1 1").value == 2
        server_thread.stop(port)
        server_thread.start(port=port)
        assert client.call("testsvc add 2 2").value == 4


def test_no_server_is_cannot_connect():
    port = closed_port()
    with pytest.raises(CannotConnect) as failure:
        Client("127.0.0.1", port).connect()
    assert str(failure.value) == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert isinstance(failure.value, ConnectionError)


def talker(script):
    """A one-connection TCP server that sends the SCRIPT of (bytes to send, lines
    to read first) steps, then closes.  Returns its port and its thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            listener.settimeout(TIMEOUT)
            connection, _ = listener.accept()
            with connection, connection.makefile("rb") as lines:
                for wait_for_lines, data in script:
                    for _ in range(wait_for_lines):
                        lines.readline()
                    connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


BANNER = b"*" * 50 + b"\nService Manager\n" + b"*" * 50 + b"\nAvailable Services:\n" + \
    b"-" * 50 + b"\n"


@pytest.mark.parametrize(("script", "problem", "kind"), [
    ([(0, b"SSH-2.0-OpenSSH_9.2\r\n")], "is not an smanager (it said 'SSH-2.0-OpenSSH_9.2\\r')",
     CannotConnect),
    ([(0, BANNER), (1, b"unknown command\n" + b"-" * 50 + b"\n")],
     "does not speak JSON mode", CannotConnect),
    ([(0, BANNER), (1, b'{"ok": true, "result": "json"}\n'), (1, b'{"ok": tr')],
     "closed the connection", ConnectionLost),
    ([(0, BANNER), (1, b'{"ok": true, "result": "json"}\n'), (1, b"<html>\n")],
     "sent something that is not a reply", ClientError),
])
def test_a_server_that_misbehaves_gets_a_clear_error(script, problem, kind):
    port, thread = talker(script)
    with pytest.raises(kind) as failure, Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.call("systemstatus uptime")
    assert problem in str(failure.value)
    thread.join(TIMEOUT)


class Status(Client):
    """The README's example of a class that wraps one deployment's commands."""

    def uptime(self):
        return self.run("systemstatus", "uptime").strip()

    def echo(self, *words):
        return self.run("systemstatus", "echo", *words)


def test_a_subclass_wraps_commands_as_methods(port):
    with Status("127.0.0.1", port) as status:
        assert " up " in status.uptime()
        assert status.echo("a b", "c") == "a b c"


# -- the asyncio client ----------------------------------------------------------------------

async def test_async_client_calls_streams_and_indexes():
    async with running_server() as server, AsyncClient("127.0.0.1", server.address[1]) as client:
        assert (await client.call("testsvc add 2 3")).value == 5
        assert [chunk async for chunk in client.stream("testsvc count 3")] == [1, 2, 3]
        assert await client.services() == ["scrapman", "systemstatus", "testsvc"]
        assert "uptime" in await client.commands("systemstatus")
        reply = await client.call("nosuch")
        assert not reply.ok and reply.error == "unknown command 'nosuch' (try 'help')"
        with pytest.raises(CommandFailed):
            await client.run("testsvc", "fail")
        # Concurrent callers share the connection in turn, each getting its own answer.
        answers = await asyncio.gather(*(client.run("testsvc", "add", n, n) for n in range(20)))
        assert answers == [2 * n for n in range(20)]


async def test_async_client_times_out_then_reconnects():
    async with running_server() as server, AsyncClient("127.0.0.1", server.address[1]) as client:
        with pytest.raises(TimedOut):
            await client.call("testsvc sleep 5", timeout=0.2)
        assert not client.connected
        assert (await client.call("testsvc add 1")).value == 2


async def test_async_client_cannot_connect():
    with pytest.raises(CannotConnect, match="Connection refused"):
        await AsyncClient("127.0.0.1", closed_port()).connect()
