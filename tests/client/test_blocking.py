"""The blocking Client against real servers on 127.0.0.1 port 0, running on a
loop in another thread (ServerThread): calls, streams, errors, Ctrl-C, time-outs,
reconnecting, logging in, servers that misbehave, and replies whose text is
exactly what telnet shows."""

import asyncio
import os
import resource
import socket
import time

import pytest
from helpers import (
    BARE_BANNER,
    SEP_LINE,
    TIMEOUT,
    closed_port,
    resetting_listener,
    talker,
    the_testsvc,
)

from smanager.client import (
    AsyncClient,
    CannotConnect,
    Client,
    ClientError,
    CommandFailed,
    ConnectionLost,
    LoginFailed,
    TimedOut,
)
from smanager.wire.protocol import unescape_body


def test_call_returns_text_value_and_success(port):
    with Client("127.0.0.1", port) as client:
        assert client.banner_services == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"]
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
        assert client.services() == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"]
        assert client.toplevel()[:2] == ["captest", "capture_at"]
        assert client.builtins() == ["help", "kill", "restart"]
        assert client.commands("systemstatus") == \
            ["help", "disk", "echo", "load", "memory", "uptime", "hostname"]
        with pytest.raises(CommandFailed):
            client.commands("nosuch")
        server_thread.stop(port)
        assert client.services() == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"]  # from the cache
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


@pytest.mark.parametrize(("script", "problem", "kind"), [
    ([(0, b"SSH-2.0-OpenSSH_9.2\r\n")], "is not an smanager (it said 'SSH-2.0-OpenSSH_9.2\\r')",
     CannotConnect),
    ([(0, BARE_BANNER), (1, b"unknown command\n" + b"-" * 50 + b"\n")],
     "does not speak JSON mode", CannotConnect),
    ([(0, BARE_BANNER), (1, b'{"ok": true, "result": "json"}\n'), (1, b'{"ok": tr')],
     "closed the connection", ConnectionLost),
    ([(0, BARE_BANNER), (1, b'{"ok": true, "result": "json"}\n'), (1, b"<html>\n")],
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


def test_a_call_while_a_stream_is_still_open_gets_its_own_answer(port):
    """Guards a fault since fixed, which was:
    client/blocking.py _exchange/_stale: a stream generator left open (not
    exhausted, not closed) keeps its reply on the wire; the next call() is sent on
    the same connection (the stale check sees no bytes yet) and reads the rest of
    the *stream* as its own reply: chunk 2, then the stream's end, as the answer
    to 'testsvc add 5'."""
    def not_mine(chunk):
        raise AssertionError(f"'testsvc add 5' got a chunk of another command: {chunk!r}")

    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        stream = client.stream("testsvc count 2 2")  # 1, a 2 s pause, 2, a pause, end
        assert next(stream) == 1
        reply = client.call("testsvc add 5", on_chunk=not_mine)
        assert (reply.ok, reply.value) == (True, 6)
        stream.close()


def test_closing_an_old_stream_leaves_a_newer_connection_alone(server_thread):
    """Guards a fault since fixed, which was:
    client/blocking.py _abandon: a stream generator closed after the client
    reconnected sends Ctrl-C on the *new* connection and waits DRAIN_TIMEOUT (5 s)
    for a reply that never comes, then drops the healthy connection."""
    port = server_thread.start(shutdown_timeout=0.5)  # the stream is cut off soon
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        stream = client.stream("testsvc forever")
        assert next(stream) == "tick 1"
        server_thread.stop(port)  # the old connection is gone...
        server_thread.start(port=port)
        assert client.call("testsvc whoami").value.endswith("asked 1")  # ...a new one
        started = time.monotonic()
        stream.close()
        took = time.monotonic() - started
        assert client.connected, "closing the old stream dropped the new connection"
        assert client.call("testsvc whoami").value.endswith("asked 2")  # still the same one
        assert took < 2.0, f"closing an old stream took {took:.1f} s"


def test_the_blocking_client_keeps_its_connection_when_many_files_are_open(port):
    """Guards a fault since fixed, which was:
    client/blocking.py _stale: select.select() raises ValueError for a file
    descriptor >= FD_SETSIZE (1024); that is taken as 'stale', so in a process with
    many open files every call reconnects and per-connection session state is lost."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip("cannot open more than 1024 files here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    null = os.open(os.devnull, os.O_RDONLY)
    spare = [null]
    try:
        for _ in range(1100):  # bounded; pushes the client's socket past 1024
            spare.append(os.dup(null))
        with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
            assert client._sock.fileno() >= 1024
            first = client.call("testsvc whoami").value
            second = client.call("testsvc whoami").value
        assert first.endswith("asked 1")
        assert second == first.replace("asked 1", "asked 2"), (first, second)
    finally:
        for fd in spare:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_a_blank_request_is_refused_at_once_not_timed_out(port, line):
    """Guards a fault since fixed, which was:
    client/common.py request_bytes: a blank line is sent, the server answers a
    blank line with nothing (protocol rule 1), and the client waits for the whole
    time-out (30 s by default; `tshell -c ''` hangs that long, then says 'no reply')."""
    with Client("127.0.0.1", port, timeout=1.0) as client:
        with pytest.raises(ValueError):
            client.call(line)
        assert client.call("testsvc add 1").value == 2


@pytest.mark.parametrize("line", ["'mode' text", '"mode" text', "mo'de' text", "\\mode text"])
def test_a_quoted_mode_command_cannot_take_the_connection_out_of_json(port, line):
    """Guards a fault since fixed, which was:
    client/common.py request_bytes guards 'mode' with str.split(); the server
    splits like a shell, so a quoted 'mode' switches the connection to text and the
    client fails with '... sent something that is not a reply: 'text''."""
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        with pytest.raises(ValueError):
            client.call(line)
        assert client.call("testsvc add 1").value == 2


def test_a_reset_during_the_greeting_is_a_client_error():
    """Guards a fault since fixed, which was:
    client/blocking.py connect(): an OSError from recv/sendall while reading the
    banner escapes raw (ConnectionResetError), not as ConnectionLost/CannotConnect."""
    port, thread = resetting_listener()
    with pytest.raises(ClientError):
        Client("127.0.0.1", port, timeout=TIMEOUT).call("help")
    thread.join(TIMEOUT)


def text_mode_body(port, line):
    """A line's reply as netcat shows it, without the separator, dash-stuffing undone."""
    with socket.create_connection(("127.0.0.1", port), TIMEOUT) as sock, \
            sock.makefile("rb") as replies:
        for _ in range(1000):  # the banner
            if replies.readline() in (SEP_LINE, b""):
                break
        sock.sendall(line.encode() + b"\n")
        body = b""
        for _ in range(100_000):
            row = replies.readline()
            if row in (SEP_LINE, b""):
                break
            body += row
        return unescape_body(body.decode())


@pytest.mark.parametrize("line", [
    "help", "help -s", "help testsvc", "help testsvc add", "help mode", "testsvc dashes",
    "testsvc data", "testsvc count 3", "testsvc fail", "testsvc refuse 'x y'", "nosuch",
    "testsvc add x", "systemstatus echo", "systemstatus echo '   '", "testsvc",
    "'unbalanced", "testsvc big 2", "systemstatus echo 'é ✓' \\\\",
])
def test_a_clients_reply_text_is_what_telnet_shows(port, line):
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        assert str(client.call(line)) == text_mode_body(port, line)


def test_repeated_ctrl_c_never_desyncs_the_blocking_client(port):
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        first = client.call("testsvc whoami").value
        for stop_at in range(1, 12):
            def impatient(chunk, stop_at=stop_at):
                if chunk == stop_at:
                    raise KeyboardInterrupt
            with pytest.raises(KeyboardInterrupt):
                client.call("testsvc count 100000", on_chunk=impatient)
            assert client.call(f"testsvc add {stop_at}").value == stop_at + 1
        assert client.call("testsvc whoami").value == first.replace("asked 1", "asked 2")


def test_leaving_a_stream_stops_the_command_on_the_server(server_thread):
    port = server_thread.start()
    service = the_testsvc(server_thread.server_on(port))
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        for chunk in client.stream("testsvc forever"):
            break
        server_thread.run(asyncio.wait_for(service.stream_closed.wait(), TIMEOUT))
        assert client.call("testsvc add 1").value == 2


def test_a_server_stopping_mid_stream_ends_the_reply_then_the_client_reconnects(server_thread):
    port = server_thread.start(shutdown_timeout=0.5)  # the stream is cut off soon
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        def stop_the_server(chunk):
            if chunk == "tick 3":
                server_thread.stop(port)
        reply = client.call("testsvc forever", on_chunk=stop_the_server)
        assert (reply.ok, reply.error) == (False, "server is shutting down")
        with pytest.raises(ClientError):
            client.call("testsvc add 1")
        server_thread.start(port=port)
        assert client.call("testsvc add 1").value == 2


def test_big_replies_arrive_whole_in_both_clients(port):
    expected = ("x" * 1023 + "\n") * 8192  # 8 MiB
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        assert client.call("testsvc big 8192").value == expected.removesuffix("\n")
        assert client.call("testsvc add 1").value == 2

    async def asynchronous():
        async with AsyncClient("127.0.0.1", port, timeout=TIMEOUT) as client:
            assert (await client.call("testsvc big 8192")).text == expected
            assert (await client.call("testsvc add 1")).value == 2
    asyncio.run(asynchronous())


def test_a_timed_out_client_reconnects_and_is_not_left_half_read(port):
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        with pytest.raises(TimedOut):
            client.call("testsvc count 3 5", timeout=0.3)
        assert not client.connected
        assert client.call("testsvc count 3").chunks == [1, 2, 3]


def test_the_blocking_client_logs_in_and_again_after_a_restart(server_thread, users_file):
    port = server_thread.start(users_file=users_file)
    with Client("127.0.0.1", port, timeout=TIMEOUT, user="bob", password="bob-pw") as client:
        assert client.run("systemstatus", "echo", "hi") == "hi"
        assert client.commands("systemstatus")  # help as bob sees it
        assert client.call("kill").error == "'kill' needs the admin level; bob has operate"
        client.close()
        assert client.run("systemstatus", "echo", "again") == "again"  # logged in again
    with pytest.raises(LoginFailed, match="cannot log in as bob: login failed"):
        Client("127.0.0.1", port, timeout=TIMEOUT, user="bob", password="nope").connect()


def test_every_login_gets_in_whatever_its_proof_looks_like(server_thread, users_file):
    """A fifth of the proofs are base64 with no '+' or '/', which the server
    would read as NAME=VALUE if sent bare; twenty logins would meet one."""
    port = server_thread.start(users_file=users_file)
    for _ in range(20):
        with Client("127.0.0.1", port, timeout=TIMEOUT, user="bob", password="bob-pw") as client:
            assert client.run("systemstatus", "echo", "in") == "in"
