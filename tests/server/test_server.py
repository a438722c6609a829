"""The wire rules over real sockets, against an in-process server on port 0:
pipelining, blank and undecodable lines, oversized lines, HTTP, half-close and
one-shot clients, streams, Ctrl-C, time limits, restart, and names that are
never commands."""

import asyncio
import time
import unicodedata

import pytest
from helpers import (
    BANNER,
    FIXTURES,
    QUICK,
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    fixture_source,
    running_server,
    the_connection,
    the_testsvc,
    unexpected_errors,
    until,
)

from smanager.service import State

IAC, IP, DO, WILL, TM = 255, 244, 253, 251, 6


async def test_banner(client):
    assert client.banner == BANNER


async def test_pipelined_lines_are_answered_in_order(client):
    await client.send(b"".join(b"systemstatus echo %d\n" % i for i in range(50)))
    for i in range(50):
        assert (await client.reply()).decode() == f"{i}\n" + SEP


async def test_blank_lines_get_no_reply(client):
    await client.send(b"\n\r\n   \nsystemstatus echo after\n")
    assert (await client.reply()).decode() == "after\n" + SEP


async def test_not_utf8_is_an_error_and_the_connection_goes_on(client):
    await client.send(b"systemstatus echo \xc3\x28 \xfe\x80\n")  # (0xFF would be telnet IAC)
    assert (await client.reply()).decode() == "ERROR: line is not valid UTF-8\n" + SEP
    assert await client.ask("systemstatus echo ok") == "ok\n" + SEP


async def test_garbage_bytes_get_one_line_errors(client):
    await client.send(b"\x00\x01\x02\x1b[A\x7f\n")
    reply = (await client.reply()).decode()
    assert reply.startswith("ERROR: unknown command") and reply.count("\n") == 2
    assert await client.ask("systemstatus echo ok") == "ok\n" + SEP


async def test_an_oversized_line_closes_the_connection_and_its_tail_never_runs(server):
    client = await LineClient.connect(server.address[1])
    await client.send(b"x" * 70_000 + b"kill\n")
    assert (await client.read_all()).decode() == (
        "ERROR: line longer than 65536 bytes; closing the connection\n" + SEP)
    assert not server.manager.shutdown_requested.is_set()
    other = await LineClient.connect(server.address[1])
    assert await other.ask("systemstatus echo alive") == "alive\n" + SEP
    await other.close()


@pytest.mark.parametrize("request_bytes", [
    b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nkill\n",
    b"GET /kill HTTP/1.1\r\n\r\n",
    b"Host: localhost:10000\r\nkill\n",
])
async def test_http_is_closed_without_running_anything(server, request_bytes):
    client = await LineClient.connect(server.address[1])
    await client.send(request_bytes)
    assert await client.read_all() == b""
    assert not server.manager.shutdown_requested.is_set()


async def test_half_close_runs_the_last_unterminated_line(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
    writer.write(b"systemstatus echo one\nsystemstatus echo two")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert data.decode() == BANNER.decode() + "one\n" + SEP + "two\n" + SEP
    writer.close()


async def test_an_unterminated_first_line_runs_after_a_pause_then_closes(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
    writer.write(b"systemstatus echo alone")  # no newline, no half-close: netcat-openbsd
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert data.decode() == BANNER.decode() + "alone\n" + SEP
    writer.close()


async def test_a_first_line_finished_in_a_later_read_makes_a_session_not_a_one_shot(server):
    client = await LineClient.connect(server.address[1])
    await client.send(b"systemstatus echo fir")  # a one-shot, unless more comes
    assert await until(lambda: the_connection(server)._oneshot_timer is not None, QUICK)
    await client.send(b"st\n")  # more came: a session, whose first line is whole now
    assert (await client.reply()).decode() == "first\n" + SEP
    assert the_connection(server)._oneshot_timer is None  # no close is waiting for it
    assert (await client.ask("systemstatus echo second", QUICK)) == "second\n" + SEP
    await client.close()


async def test_an_unterminated_later_line_waits(client):
    await client.send(b"systemstatus echo first\nsystemstatus echo sec")
    assert (await client.reply()).decode() == "first\n" + SEP
    await client.send(b"ond\n")  # the server kept the connection and the partial line
    assert (await client.reply()).decode() == "second\n" + SEP


async def test_quit_closes(client):
    await client.send(b"quit\nsystemstatus echo never\n")
    assert (await client.read_all()).decode() == "bye\n" + SEP


async def test_a_stream_arrives_chunk_by_chunk_and_stops_when_the_client_leaves(server):
    client = await LineClient.connect(server.address[1])
    await client.send(b"testsvc forever\n")
    for i in range(1, 4):
        line = await asyncio.wait_for(client.reader.readline(), TIMEOUT)
        assert line == b"tick %d\n" % i
    await client.close()
    testsvc = the_testsvc(server)
    await asyncio.wait_for(testsvc.stream_closed.wait(), TIMEOUT)


async def test_a_finite_stream_ends_with_the_separator(client):
    assert await client.ask("testsvc count 3") == "1\n2\n3\n" + SEP


async def test_telnet_ctrl_c_stops_the_command_and_keeps_the_session(server, client):
    await client.send(b"testsvc forever\n")
    assert await asyncio.wait_for(client.reader.readline(), TIMEOUT) == b"tick 1\n"
    await client.send(bytes([IAC, IP, IAC, DO, TM]))
    rest = await client.reply()
    assert bytes([IAC, WILL, TM]) in rest
    assert rest.endswith(b"ERROR: interrupted\n" + SEP_LINE)
    testsvc = the_testsvc(server)
    await asyncio.wait_for(testsvc.stream_closed.wait(), TIMEOUT)
    assert await client.ask("systemstatus echo still here") == "still here\n" + SEP


async def test_ctrl_c_discards_the_partial_line(client):
    await client.send(b"kil" + bytes([IAC, IP]) + b"systemstatus echo clean\n")
    assert (await client.reply()).decode() == "clean\n" + SEP


async def test_a_slow_blocking_command_delays_no_other_client(server, client):
    other = await LineClient.connect(server.address[1])
    await client.send(b"testsvc block 1\n")
    assert await asyncio.wait_for(other.ask("systemstatus echo fast"), 0.8) == "fast\n" + SEP
    assert (await client.reply()).decode() == "blocked 1\n" + SEP
    await other.close()


async def test_a_command_over_its_time_limit_is_an_error():
    async with running_server(command_timeout=0.1) as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("testsvc sleep 10") == (
            "ERROR: testsvc sleep timed out after 0.1 s\n" + SEP)
        await client.close()


async def test_restart_keeps_connections_open(server):
    idle = await LineClient.connect(server.address[1])
    admin = await LineClient.connect(server.address[1])
    assert await admin.ask("restart") == "restarted: monitor proc scrapman scripts systemstatus testsvc\n" + SEP
    assert await idle.ask("systemstatus echo still") == "still\n" + SEP
    await idle.close()
    await admin.close()


@pytest.mark.parametrize("first", [b"h", bytes([IAC, DO, 1]) + b"help"])
async def test_a_person_typing_never_gets_the_one_shot_treatment(server, first):
    client = await LineClient.connect(server.address[1])
    await client.send(first)  # a key at a time, or a client that speaks telnet
    (conn,) = server.connections
    assert await until(lambda: conn.framer.has_partial)
    assert conn.keystrokes and conn._oneshot_timer is None
    await client.send(b"help -s\n"[len(first.split(bytes([IAC, DO, 1]))[-1]):])
    assert b"COMMANDS: help kill restart" in await client.reply()
    await client.close()


async def test_a_repeated_line_runs_new_code_after_restart(tmp_path):
    source = fixture_source("deploy")  # answers "v1"
    (tmp_path / "deploy.py").write_text(source)
    async with running_server(services=[str(tmp_path)], no_default_services=True) as server:
        client = await LineClient.connect(server.address[1])
        for _ in range(2):  # the second time from the catalog's memo
            assert await client.ask("deploy version") == "v1\n" + SEP
        (tmp_path / "deploy.py").write_text(source.replace("v1", "v2"))
        assert await client.ask("restart") == "restarted: deploy\n" + SEP
        assert await client.ask("deploy version") == "v2\n" + SEP
        await client.close()


async def test_lines_that_depend_on_the_client_are_never_shared(server):
    alice = await LineClient.connect(server.address[1])
    bob = await LineClient.connect(server.address[1])
    first = await alice.ask("testsvc whoami")
    second = await bob.ask("testsvc whoami")
    assert first != second and first.endswith(" asked 1\n" + SEP)
    # testsvc is told about every client that leaves, even after an identical line.
    assert await alice.ask("testsvc add 1") == await bob.ask("testsvc add 1") == "2\n" + SEP
    testsvc = the_testsvc(server)
    await alice.close()
    await bob.close()
    assert await until(lambda: len(testsvc.left) == 2)
    assert "testsvc whoami" not in {raw.decode() for raw in server.manager.catalog.calls}


PRIVATE = ["__class__", "_cmd_x", "cmd_echo", "__init__", "__dict__", "_background", "_change_state",
           "start", "stop", "cleanup", "client_disconnected", "run_in_background", "options", "state",
           "left", "cmd_add", "toplevel_cmd_hostname", "echo.__globals__"]


@pytest.mark.parametrize("name", PRIVATE)
async def test_hooks_and_private_names_are_not_commands(server, client, caplog, name):
    assert await client.ask(name) == f"ERROR: unknown command {name!r} (try 'help')\n" + SEP
    for line in (f"testsvc {name}", f"SYSTEMSTATUS {name}", f"help testsvc {name}"):
        svc = line.split()[-2].lower()
        assert await client.ask(line) == (
            f"ERROR: unknown command {name!r} for {svc} (try '{svc} help')\n" + SEP)
    instance = the_testsvc(server)
    assert instance.state is State.RUNNING and instance.left == []
    assert unexpected_errors(caplog) == []


@pytest.mark.parametrize("line", ["testsvc refuse '\x1b]0;owned\x07'", "systemstatus disk '/no\x1b[2J'"])
async def test_errors_carry_no_control_characters(client, line):
    reply = await client.ask(line)
    assert reply.startswith("ERROR: ")
    assert [c for c in reply if c != "\n" and unicodedata.category(c) == "Cc"] == []


async def test_the_server_listens_while_a_slow_service_is_still_starting():
    gate = asyncio.Event()
    settings = {"services": [str(FIXTURES / "slow_start")], "shutdown_timeout": 20,
                "service": {"slow": {"gate": gate}}}
    began = time.monotonic()
    async with running_server(**settings) as server:
        # After the start-up grace (1 s), not the 20 s start() may take.
        assert time.monotonic() - began < 10
        client = await LineClient.connect(server.address[1])
        assert await client.ask("slow ping", QUICK) == (
            "ERROR: slow is still starting; try again in a moment\n" + SEP)
        assert await client.ask("systemstatus echo hi", QUICK) == "hi\n" + SEP
        gate.set()
        slow = server.manager.catalog.services["slow"].instance
        assert await until(lambda: slow.state is State.RUNNING)
        assert await client.ask("slow ping", QUICK) == "pong\n" + SEP
        await client.close()


async def test_a_start_that_fails_late_says_so_at_once_while_others_still_start():
    fail_gate, slow_gate = asyncio.Event(), asyncio.Event()
    settings = {"services": [str(FIXTURES / "start_trouble")], "no_default_services": True,
                "service": {"failslow": {"gate": fail_gate}, "slowpoke": {"gate": slow_gate}}}
    async with running_server(**settings) as server:
        client = await LineClient.connect(server.address[1])
        # A start() that raises a CancelledError of its own is its failure, not a hang.
        assert await client.ask("cancelled x", QUICK) == (
            "ERROR: cancelled failed to start: start() was cancelled\n" + SEP)
        fail_gate.set()
        assert await until(lambda: "failslow" in server.manager.catalog.failures)
        assert await client.ask("failslow x", QUICK) == (
            "ERROR: failslow failed to start: RuntimeError: the disk is full\n" + SEP)
        assert await client.ask("slowpoke ping", QUICK) == (
            "ERROR: slowpoke is still starting; try again in a moment\n" + SEP)
        slow_gate.set()
        assert await until(lambda: server.manager.catalog.services["slowpoke"].instance.state
                           is State.RUNNING)
        assert await client.ask("slowpoke ping", QUICK) == "pong\n" + SEP
        await client.close()
