"""Review 3: JSON mode, the client libraries, fleet, the shell, tshell and demo_script.

Tests in the first part prove bugs the review found (they fail on the code as
reviewed); the rest pin behaviour that is right and was not tested yet.
Servers listen on 127.0.0.1 port 0 and are stopped by the helper that started
them; fake peers (a listener that never speaks, one that resets, a full
backlog) are plain sockets closed by the test.
"""

import asyncio
import contextlib
import io
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, SEP_LINE, TIMEOUT, LineClient, running_server
from test_client_library import BANNER, closed_port, talker
from test_json_mode import json_lines
from test_tshell import tshell, tshell_on_terminal

from smanager.client import AsyncClient, Client, ClientError, TimedOut, fleet
from smanager.client.common import parse_address
from smanager.tshell.main import main as tshell_main
from smanager.tshell.shell import Completer, Shell, route
from smanager.wire.protocol import unescape_body

MEETING = str(Path(__file__).resolve().parent / "fixture_fleet")

WEIRD_SERVICE = '''
from smanager import SService


class Unshowable:
    """Neither str() nor repr() works."""

    def __str__(self):
        raise RuntimeError("cannot be shown")

    __repr__ = __str__


class Weird(SService):
    """Values that are hard to show"""

    name = "weird"

    async def cmd_badlist(self):
        """A list holding something that cannot be shown"""
        return [Unshowable()]

    async def cmd_ping(self):
        """Answers at once"""
        return "pong"
'''


# -- helpers ----------------------------------------------------------------------------

def run_main(*argv, stdin=None):
    """tshell's main() in this process; (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = tshell_main(list(argv), stdin=stdin or io.StringIO(""), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


class TTYInput(io.StringIO):
    """A stdin that says it is a terminal, so tshell starts its interactive shell."""

    def isatty(self):
        return True


def resetting_listener(connections=1):
    """A listener that accepts and at once resets (RST) each connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            listener.settimeout(TIMEOUT)
            for _ in range(connections):
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@contextlib.contextmanager
def silent_listener():
    """A listener that accepts one connection and never says anything.
    Yields (port, accepted event)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted, done = threading.Event(), threading.Event()

    def serve():
        with listener:
            listener.settimeout(TIMEOUT)
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                accepted.set()
                done.wait(TIMEOUT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(TIMEOUT)


@contextlib.contextmanager
def blackhole():
    """A port whose listen queue is full: a connect to it hangs (SYNs are dropped)."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def server_of(server_thread, port):
    return next(s for s in server_thread.servers if s.address[1] == port)


def the_testsvc(server):
    return server.manager.catalog.services["testsvc"].instance


async def read_until_closed(terminal):
    """All a pty's output until the program on it has gone (bounded in time)."""
    deadline = terminal.loop.time() + TIMEOUT
    for _ in range(100_000):
        left = deadline - terminal.loop.time()
        if terminal.closed or left <= 0:
            break
        terminal.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(terminal.changed.wait(), left)
    return bytes(terminal.output)


@pytest.fixture
def port(server_thread):
    return server_thread.start()


# ===================================================================================
# Part 1: bugs.  Each of these fails on the code as reviewed.
# ===================================================================================

# -- the blocking client: one request at a time, or a desync -------------------------

def test_a_call_while_a_stream_is_still_open_gets_its_own_answer(port):
    """client/blocking.py _exchange/_stale: a stream generator left open (not
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
    """client/blocking.py _abandon: a stream generator closed after the client
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
    """client/blocking.py _stale: select.select() raises ValueError for a file
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
    """client/common.py request_bytes: a blank line is sent, the server answers a
    blank line with nothing (protocol rule 1), and the client waits for the whole
    time-out (30 s by default; `tshell -c ''` hangs that long, then says 'no reply')."""
    with Client("127.0.0.1", port, timeout=1.0) as client:
        with pytest.raises(ValueError):
            client.call(line)
        assert client.call("testsvc add 1").value == 2


@pytest.mark.parametrize("line", ["'mode' text", '"mode" text', "mo'de' text", "\\mode text"])
def test_a_quoted_mode_command_cannot_take_the_connection_out_of_json(port, line):
    """client/common.py request_bytes guards 'mode' with str.split(); the server
    splits like a shell, so a quoted 'mode' switches the connection to text and the
    client fails with '... sent something that is not a reply: 'text''."""
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        with pytest.raises(ValueError):
            client.call(line)
        assert client.call("testsvc add 1").value == 2


async def test_the_async_client_refuses_a_quoted_mode_command_too():
    async with running_server() as server, \
            AsyncClient("127.0.0.1", server.address[1], timeout=TIMEOUT) as client:
        with pytest.raises(ValueError):
            await client.call("'mode' text")
        assert (await client.call("testsvc add 1")).value == 2


# -- the async client -----------------------------------------------------------------

async def test_an_async_stream_left_early_does_not_block_the_next_call():
    """client/asynchronous.py _exchange holds self._turn across its yields; a
    stream left with `break` while the caller still holds it keeps the lock until
    it is garbage-collected, so the next call() waits forever (no time-out covers
    the lock)."""
    async with running_server() as server, \
            AsyncClient("127.0.0.1", server.address[1], timeout=TIMEOUT) as client:
        stream = client.stream("testsvc forever")
        try:
            async for chunk in stream:
                assert chunk == "tick 1"
                break
            reply = await asyncio.wait_for(client.call("testsvc add 1"), 3)
            assert reply.value == 2
        finally:
            await stream.aclose()


# -- not getting an answer must be a ClientError ---------------------------------------

def test_a_reset_during_the_greeting_is_a_client_error():
    """client/blocking.py connect(): an OSError from recv/sendall while reading the
    banner escapes raw (ConnectionResetError), not as ConnectionLost/CannotConnect."""
    port, thread = resetting_listener()
    with pytest.raises(ClientError):
        Client("127.0.0.1", port, timeout=TIMEOUT).call("help")
    thread.join(TIMEOUT)


async def test_a_reset_during_the_greeting_is_a_client_error_for_the_async_client():
    port, thread = resetting_listener()
    client = AsyncClient("127.0.0.1", port, timeout=TIMEOUT)
    try:
        with pytest.raises(ClientError):
            await client.call("help")
    finally:
        await client.close()
        await asyncio.to_thread(thread.join, TIMEOUT)


@pytest.mark.parametrize("mode", [["-c", "help"], ["--hosts", None, "-c", "help"],
                                  ["--hosts", None, "--ping"], ["interactive"]])
def test_tshell_reports_a_reset_server_in_one_line(mode):
    """The same raw ConnectionResetError is a traceback from tshell -c, --hosts,
    --ping (fleet.py _everywhere only catches TimeoutError and ClientError) and the
    interactive start (tshell.py main only catches ClientError around connect)."""
    port, thread = resetting_listener()
    address = f"127.0.0.1:{port}"
    if mode == ["interactive"]:
        status, out, err = run_main(address, stdin=TTYInput(""))
    elif mode[0] == "-c":
        status, out, err = run_main(address, *mode)
    else:
        status, out, err = run_main(*[address if arg is None else arg for arg in mode])
    thread.join(TIMEOUT)
    assert status == 2
    assert "reset" in (out + err).lower()


@pytest.mark.parametrize("argv", [
    ["--hosts", "a..b", "-c", "help"],  # an empty DNS label: UnicodeError from idna
    ["--hosts", "x" * 64 + ".example", "--ping"],  # a label over 63 characters
    ["a..b"],  # interactive
])
def test_a_host_name_idna_cannot_encode_is_one_line_not_a_traceback(argv):
    """getaddrinfo raises UnicodeError (a ValueError, not an OSError) for a name
    with an empty or too long label; AsyncClient.connect / Client.connect let it
    through, so tshell --hosts/--ping and the interactive start print a traceback."""
    stdin = TTYInput("") if len(argv) == 1 else None
    status, _out, err = run_main(*argv, stdin=stdin)
    assert status == 2
    assert err.count("\n") >= 1 and err.startswith("tshell: ")


def test_a_fleet_command_the_client_refuses_is_one_line_not_a_traceback(port):
    """fleet.py visit(): request_bytes' ValueError ('mode text') escapes gather()."""
    status, _out, err = run_main("--hosts", f"127.0.0.1:{port}", "-c", "mode text")
    assert status == 2
    assert "JSON mode" in err


def test_an_infinite_timeout_is_not_a_traceback(port):
    """tshell.py _addresses accepts --timeout inf; socket.settimeout(inf) raises
    OverflowError, which Output.run does not catch."""
    status, out, err = run_main(f"127.0.0.1:{port}", "--timeout", "inf", "-c", "testsvc add 1")
    if status == 0:  # inf taken as "no limit"
        assert (out, err) == ("2\n", "")
    else:  # or refused as a wrong argument
        assert status == 2 and err.startswith("tshell: ") and err.count("\n") == 1


def test_a_nan_timeout_is_a_usage_error(port):
    """'--timeout nan' passes the `<= 0` check; the fleet then reports a host that
    answers at once as 'no answer within nan s'."""
    status, out, err = run_main("--hosts", f"127.0.0.1:{port}", "--timeout", "nan",
                                "-c", "testsvc add 1")
    assert (status, out) == (2, "")
    assert "timeout" in err


def test_a_closed_stdout_is_not_a_traceback(port):
    """tshell.py Output.write: BrokenPipeError (`tshell -c ... | head -0`) is a
    traceback, in one-shot and in fleet mode."""
    for args in ([f"127.0.0.1:{port}", "-c", "systemstatus echo hi"],
                 ["--hosts", f"127.0.0.1:{port}", "-c", "systemstatus echo hi"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # whatever tshell writes now is EPIPE
        try:
            done = subprocess.run([sys.executable, "tshell.py", *args], cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=TIMEOUT * 3)
        finally:
            os.close(write_end)
        assert "Traceback" not in done.stderr, done.stderr
        assert "BrokenPipeError" not in done.stderr, done.stderr


def test_ctrl_c_during_a_fleet_command_is_not_a_traceback():
    """tshell.py main: asyncio.run(_fleet(...)) lets KeyboardInterrupt through;
    the one-shot path answers Ctrl-C with 'tshell: interrupted' and status 130."""
    with silent_listener() as (port, accepted):
        process = subprocess.Popen(
            [sys.executable, "tshell.py", "--hosts", f"127.0.0.1:{port}", "-c", "help"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert accepted.wait(TIMEOUT)  # tshell is waiting for the banner
            process.send_signal(signal.SIGINT)
            _out, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert "Traceback" not in err, err
    assert process.returncode == 130


async def test_ctrl_c_while_the_interactive_shell_connects_is_not_a_traceback(tmp_path):
    """tshell.py main: `client.connect()` before the shell starts catches only
    ClientError; Ctrl-C while a slow server has not sent its banner is a traceback."""
    with silent_listener() as (port, accepted):
        async with tshell_on_terminal(port, tmp_path / "history") as (process, terminal):
            assert await asyncio.to_thread(accepted.wait, TIMEOUT)
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), TIMEOUT)
            output = await read_until_closed(terminal)
    assert b"Traceback" not in output, output.decode(errors="replace")


def test_stdin_that_is_not_utf8_is_not_a_traceback(port, tmp_path):
    """tshell.py run_lines iterates stdin; with strict decoding (PYTHONIOENCODING=utf-8,
    or a UTF-8 locale Python does not coerce) a non-UTF-8 byte is a traceback."""
    commands = tmp_path / "commands.txt"
    commands.write_bytes(b"testsvc add 1\nsystemstatus echo \xff\ntestsvc add 2\n")
    with commands.open("rb") as stdin:
        _status, out, err = tshell(f"127.0.0.1:{port}", stdin=stdin,
                                  env={"PYTHONIOENCODING": "utf-8"})
    assert "Traceback" not in err, err
    assert out.startswith("2\n")


def test_stdin_mode_goes_on_after_a_line_the_client_refuses(port, tmp_path):
    """tshell.py run_lines stops at any status other than 0/1, so a line refused
    locally (Output.run returns 2 for a ValueError) ends the run although the
    server is reachable; the docstring says it stops only at quit or an
    unreachable server."""
    commands = tmp_path / "commands.txt"
    commands.write_text("testsvc add 1\nmode text\ntestsvc add 2\n")
    with commands.open() as stdin:
        status, out, err = tshell(f"127.0.0.1:{port}", stdin=stdin)
    assert out == "2\n3\n"
    assert status != 0 and "JSON mode" in err


# -- the shell ------------------------------------------------------------------------

def test_the_shell_still_sends_commands_when_the_used_service_has_gone(server_thread):
    """shell.py handle(): _commands_of_use() asks `help -s SERVICE` before every
    line; once the service is gone (the server restarted without it) that raises
    CommandFailed, so *no* line can be sent, and each says '(the next command
    reconnects)', which is not what is wrong."""
    port = server_thread.start()
    out = io.StringIO()
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        shell = Shell(client, out=out)
        assert shell.handle("use testsvc")
        server_thread.stop(port)
        server_thread.start(port=port, services=[MEETING])  # testsvc is not there now
        assert shell.handle("systemstatus echo still here")
    assert "still here\n" in out.getvalue(), out.getvalue()
    assert "reconnects" not in out.getvalue()


# -- the server: a value whose text fails ----------------------------------------------

@pytest.mark.parametrize("mode", ["json", "text"])
async def test_a_list_holding_an_unshowable_value_gets_a_reply(tmp_path, mode):
    """formats.py _line's fallback (and protocol.to_text) call json.dumps(default=str),
    which lets a RuntimeError from __str__ through (only TypeError/ValueError are
    caught): the reply is never sent and the connection is closed (in the eager
    path asyncio logs 'protocol.buffer_updated() call failed')."""
    (tmp_path / "weird.py").write_text(WEIRD_SERVICE)
    async with running_server(services=[str(tmp_path)]) as server:
        client = await LineClient.connect(server.address[1])
        try:
            if mode == "json":
                await client.send("mode json")
                await json_lines(client, 1)
                await client.send("weird badlist")
                line = await asyncio.wait_for(client.reader.readline(), TIMEOUT)
                assert line.endswith(b"\n"), "the connection closed instead of replying"
                assert "ok" in json.loads(line)
                await client.send("weird ping")
                assert await json_lines(client, 1) == [{"ok": True, "result": "pong"}]
            else:
                await client.send("weird badlist")
                assert (await client.reply()).endswith(SEP_LINE)
                assert await client.ask("weird ping") == "pong\n" + SEP_LINE.decode()
        finally:
            await client.close()


# -- demo_script ------------------------------------------------------------------------

def run_demo(*args):
    done = subprocess.run([sys.executable, "demo_script.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT * 3)
    return done.returncode, done.stdout, done.stderr


def test_demo_script_survives_a_server_lost_between_its_two_calls(tmp_path):
    """demo_script.py log_scrapman_heartbeat: only the first smanager_cmd is in the
    try; if the server goes away before 'scrapman get_heartbeat' the ClientError
    is a traceback (status 1, not the documented 2)."""
    terse = {"ok": True, "result": "TOP: \nSERVICES: scrapman\nCOMMANDS: help kill restart"}
    port, thread = talker([(0, BANNER), (1, b'{"ok": true, "result": "json"}\n'),
                           (1, json.dumps(terse).encode() + b"\n")])  # then it is gone
    status, _out, err = run_demo(f"127.0.0.1:{port}", str(tmp_path / "log"))
    thread.join(TIMEOUT)
    assert "Traceback" not in err, err
    assert status == 2


@pytest.mark.parametrize("args", [["a..b"], ["127.0.0.1:1", "{missing}/useful.log"]])
def test_demo_script_fails_in_one_line(tmp_path, args):
    """demo_script.py: a host name idna refuses (UnicodeError is not a ClientError),
    and a log file that cannot be opened, are tracebacks."""
    args = [arg.format(missing=tmp_path / "missing") for arg in args]
    status, _out, err = run_demo(*args)
    assert "Traceback" not in err, err
    assert status == 2


# -- hosts files with junk ----------------------------------------------------------------

@pytest.mark.parametrize("junk", ["web1 web2", "web1,web2", "http://web1:10000", "web1:10000:1"])
def test_junk_in_a_hosts_file_is_refused_as_an_argument(junk):
    """client/common.py parse_address takes any text with 2+ colons as a bare IPv6
    address and any text at all as a host name, so a junk line is looked up in DNS
    and reported as a host that did not answer, instead of as a bad argument."""
    with pytest.raises(ValueError):
        fleet.parse_hosts(fleet.read_hosts_file(f"good1\n{junk}\n"))


# ===================================================================================
# Part 2: behaviour that is right, pinned.
# ===================================================================================

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
    service = the_testsvc(server_of(server_thread, port))
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


async def test_a_cancelled_async_call_stops_the_command_and_the_client_recovers():
    async with running_server() as server, \
            AsyncClient("127.0.0.1", server.address[1], timeout=TIMEOUT) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.call("testsvc forever"), 0.2)
        await asyncio.wait_for(the_testsvc(server).stream_closed.wait(), TIMEOUT)
        assert not client.connected
        assert (await client.call("testsvc add 1")).value == 2


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


# -- the server in JSON mode -------------------------------------------------------------

async def test_a_line_that_is_not_utf8_gets_a_json_error(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send(b"mode json\nsystemstatus echo \xe9t\xe9\ntestsvc add 1\n")  # Latin-1
        assert await json_lines(client, 3) == [
            {"ok": True, "result": "json"},
            {"ok": False, "error": "line is not valid UTF-8"},
            {"ok": True, "result": 2}]
    finally:
        await client.close()


async def test_mode_switches_pipelined_behind_a_slow_command_apply_in_order(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send("testsvc sleep 0.01\nmode json\ntestsvc add 1\nmode text\n"
                          "mode json\ntestsvc count 1\nmode text\ntestsvc add 2")
        assert await client.reply() == b"slept 0.01\n" + SEP_LINE
        assert await json_lines(client, 2) == [{"ok": True, "result": "json"},
                                               {"ok": True, "result": 2}]
        assert await client.reply() == b"text\n" + SEP_LINE
        assert await json_lines(client, 3) == [{"ok": True, "result": "json"}, {"chunk": 1},
                                               {"ok": True, "result": None}]
        assert await client.reply() == b"text\n" + SEP_LINE
        assert await client.reply() == b"3\n" + SEP_LINE
    finally:
        await client.close()


async def test_a_one_shot_mode_json_like_echo_n_into_nc():
    async with running_server(oneshot_delay=0.05) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send(b"mode json")  # no newline, no half-close
            assert await client.read_all() == b'{"ok": true, "result": "json"}\n'
        finally:
            await client.close()


async def test_json_mode_with_telnet_editing_and_a_half_close(server):
    client = await LineClient.connect(server.address[1])
    try:
        # IAC EC erases the '1', IAC NOP is ignored; the last line has no newline.
        await client.send(b"mode json\r\ntestsvc add 1\xff\xf7 2\xff\xf1\r\ntestsvc data")
        client.writer.write_eof()
        assert [json.loads(row) for row in (await client.read_all()).splitlines()] == [
            {"ok": True, "result": "json"}, {"ok": True, "result": 3},
            {"ok": True, "result": {"b": [1, 2], "a": None}}]
    finally:
        await client.close()


# -- fleet ----------------------------------------------------------------------------------

def test_duplicate_hosts_are_asked_once(port):
    hosts = f"127.0.0.1:{port},127.0.0.1:{port}, 127.0.0.1:{port} "
    status, out, err = tshell("--hosts", hosts, "-c", "systemstatus echo once")
    assert (status, out, err) == (0, f"127.0.0.1:{port}: once\n", "")


async def test_an_ipv6_host_is_shown_in_brackets():
    port = closed_port()
    results = await fleet.run_everywhere([parse_address(f"[::1]:{port}")], "help", timeout=2)
    assert results[0].host == f"[::1]:{port}"
    assert not results[0].reached
    assert fleet.as_text(results[0]).startswith(f"[::1]:{port}: cannot connect to [::1]:{port}: ")


async def test_a_blackholed_host_costs_one_timeout_and_the_others_answer(server_thread):
    good = server_thread.start()
    with blackhole() as dark:
        started = time.monotonic()
        results = await fleet.run_everywhere([("127.0.0.1", dark), ("127.0.0.1", good)],
                                             "testsvc add 1", timeout=0.5)
        took = time.monotonic() - started
    assert results[0].problem in (f"127.0.0.1:{dark}: no connection within 0.5 s",
                                  "no answer within 0.5 s")
    assert results[1].reply.value == 2
    assert took < 5


def test_a_blackholed_host_in_one_shot_is_status_2_in_one_line():
    with blackhole() as dark:
        assert run_main(f"127.0.0.1:{dark}", "--timeout", "0.5", "-c", "help") == \
            (2, "", f"tshell: 127.0.0.1:{dark}: no connection within 0.5 s\n")


def test_a_stream_on_many_hosts_keeps_its_chunks_per_host(server_thread):
    ports = [server_thread.start() for _ in range(2)]
    status, out, err = tshell("--hosts", ",".join(f"127.0.0.1:{p}" for p in ports), "--json",
                              "-c", "testsvc count 3")
    rows = [json.loads(row) for row in out.splitlines()]
    assert (status, err) == (0, "")
    assert [(row["host"], row["result"]) for row in rows] == \
        [(f"127.0.0.1:{p}", [1, 2, 3]) for p in ports]


# -- completion and routing -----------------------------------------------------------------

def test_completion_without_a_server_offers_nothing_and_does_not_raise():
    client = Client("127.0.0.1", closed_port(), timeout=TIMEOUT)
    try:
        assert Completer(client).candidates("sys") == []
        assert Completer(client).candidates("use ", "testsvc") == []
    finally:
        client.close()


def test_completion_against_a_real_server(port):
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        completer = Completer(client)
        assert completer.candidates("testsvc co") == ["count"]
        assert completer.candidates("help -s te") == ["testsvc"]
        assert completer.candidates("help nosuch ") == []
        assert completer.candidates("f", "testsvc") == ["fail", "forever"]


@pytest.mark.parametrize(("line", "use", "sent"), [
    ("HELP", "systemstatus", "help systemstatus"),
    ("Uptime now", "systemstatus", "systemstatus Uptime now"),
    ("SCRAPMAN get_heartbeat", "systemstatus", "SCRAPMAN get_heartbeat"),
    ("'quoted' x", "systemstatus", "systemstatus 'quoted' x"),
    ("anything at all", None, "anything at all"),
])
def test_route_edge_cases(line, use, sent):
    known = {"scrapman", "systemstatus", "help", "kill", "restart", "use"}
    assert route(line, use, ["help", "uptime"] if use else (), known) == sent


# -- tshell exit statuses ----------------------------------------------------------------------

def test_one_shot_statuses_and_json(port):
    assert run_main(f"127.0.0.1:{port}", "-c", "nosuch") == \
        (1, "", "ERROR: unknown command 'nosuch' (try 'help')\n")
    assert run_main(f"127.0.0.1:{port}", "--json", "-c", "testsvc count 2") == \
        (0, '{"chunk": 1}\n{"chunk": 2}\n{"ok": true, "result": null}\n', "")


def test_a_timeout_in_one_shot_is_status_2_after_the_chunks_so_far(port):
    status, out, err = run_main(f"127.0.0.1:{port}", "--timeout", "1", "-c",
                                "testsvc count 2 5")
    assert (status, out) == (2, "1\n")
    assert err == f"tshell: 127.0.0.1:{port}: no reply within 1 s\n"


def test_a_timed_out_client_reconnects_and_is_not_left_half_read(port):
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        with pytest.raises(TimedOut):
            client.call("testsvc count 3 5", timeout=0.3)
        assert not client.connected
        assert client.call("testsvc count 3").chunks == [1, 2, 3]
