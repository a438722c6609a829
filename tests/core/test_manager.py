"""Running requests through the manager, without sockets: replies, limits, sessions."""

import asyncio
import logging
import re
import socket
import sys

import pytest
from helpers import FIXTURE_SERVICES, SEP, ask_core, run_line, started_manager, until

from smanager.auth.peer import Peer
from smanager.config import bundled_services_dir
from smanager.core.manager import Manager


@pytest.fixture
async def manager():
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES,
                               command_timeout=2.0) as manager:
        yield manager


@pytest.mark.parametrize("line, text", [
    ("systemstatus echo hi there", "hi there\n"),
    ("SYSTEMSTATUS ECHO Hi", "Hi\n"),
    ("systemstatus echo", ""),
    ("testsvc add 2 3", "5\n"),
    ("testsvc add 2", "3\n"),
    ("testsvc add b=10 a=1", "11\n"),
    ("testsvc data", '{\n  "b": [\n    1,\n    2\n  ],\n  "a": null\n}\n'),
    ("hostname", socket.gethostname() + "\n"),
    ("systemstatus hostname", socket.gethostname() + "\n"),
    ("testsvc hostname", "not me\n"),  # its toplevel name is taken, but reachable here
])
async def test_replies(manager, line, text):
    assert await ask_core(manager, line) == text + SEP


@pytest.mark.parametrize("line, error", [
    ("nosuch", "unknown command 'nosuch' (try 'help')"),
    ("nosuch\x1b[2J arg", "unknown command 'nosuch?[2J' (try 'help')"),
    ("testsvc nosuch", "unknown command 'nosuch' for testsvc (try 'testsvc help')"),
    ("testsvc add", "missing A; usage: testsvc add A [B]"),
    ("testsvc add one", "A must be a whole number, not 'one'; usage: testsvc add A [B]"),
    ("testsvc add 1 2 3", "too many arguments (3 given); usage: testsvc add A [B]"),
    ("scrapman capture_at", "missing SECONDS; usage: capture_at SECONDS"),
    ("testsvc refuse because", "refused: because"),
    ("testsvc fail", "testsvc fail failed: RuntimeError: kaput second line"),
    ("restart nosuch", "no service named 'nosuch' (try 'help')"),
])
async def test_errors_are_one_line(manager, line, error):
    assert await ask_core(manager, line) == "ERROR: " + error + "\n" + SEP


async def test_a_crash_is_logged_not_sent(manager, caplog):
    with caplog.at_level(logging.ERROR):
        text = await ask_core(manager, "testsvc fail")
    assert "Traceback" not in text
    assert "testsvc fail raised" in caplog.text and "RuntimeError: kaput" in caplog.text


async def test_a_command_error_is_not_logged_as_a_crash(manager, caplog):
    with caplog.at_level(logging.ERROR):
        await ask_core(manager, "testsvc refuse")
    assert caplog.text == ""


async def test_async_time_limit(manager):
    manager.runner.default_timeout = 0.05
    assert await ask_core(manager, "testsvc sleep 5") == (
        "ERROR: testsvc sleep timed out after 0.05 s\n" + SEP)


async def test_blocking_commands_do_not_block_the_loop(manager):
    slow = asyncio.create_task(ask_core(manager, "testsvc block 0.5"))
    # While the thread sleeps, the loop still answers.
    assert await asyncio.wait_for(ask_core(manager, "systemstatus echo quick"), 0.4) == "quick\n" + SEP
    assert await slow == "blocked 0.5\n" + SEP


async def test_one_service_runs_its_blocking_commands_one_at_a_time(manager):
    replies = await asyncio.gather(*(ask_core(manager, "testsvc block 0.05") for _ in range(4)))
    assert replies == ["blocked 0.05\n" + SEP] * 4
    assert await ask_core(manager, "testsvc peak") == "1\n" + SEP


async def test_a_concurrent_service_may_overlap(manager):
    testsvc = manager.catalog.services["testsvc"]
    testsvc.turn = None  # what concurrent = True gives
    await asyncio.gather(*(ask_core(manager, "testsvc block 0.2") for _ in range(3)))
    assert int((await ask_core(manager, "testsvc peak")).split("\n")[0]) >= 2


async def test_an_overrunning_thread_keeps_its_services_turn(manager):
    instance = manager.catalog.services["testsvc"].instance
    RELEASE = sys.modules[type(instance).__module__].RELEASE
    manager.runner.default_timeout = 0.1
    RELEASE.clear()
    try:
        assert await ask_core(manager, "testsvc hang") == (
            "ERROR: testsvc hang timed out after 0.1 s\n" + SEP)
        # Told at once, not after waiting out its own time limit.
        assert re.match(r"ERROR: testsvc is still running 'testsvc hang' \(timed out, "
                        r"running for \d+ s\); try again when it ends\n",
                        await ask_core(manager, "testsvc block 0"))
    finally:
        RELEASE.set()
    manager.runner.default_timeout = 2.0
    turn = manager.catalog.services["testsvc"].turn
    assert await until(lambda: turn.holder is None)  # the thread has ended
    assert await ask_core(manager, "testsvc block 0") == "blocked 0\n" + SEP


async def test_a_stream_yields_chunks_then_ends(manager):
    reply = await run_line(manager, "testsvc count 3")
    assert [chunk async for chunk in reply.stream] == [1, 2, 3]
    assert reply.stream.error is None


async def test_a_stream_that_stalls_ends_with_an_error(manager):
    manager.runner.default_timeout = 0.05
    reply = await run_line(manager, "testsvc count 3 1")
    assert [chunk async for chunk in reply.stream] == [1]
    assert reply.stream.error == "testsvc count timed out after 0.05 s"


async def test_sessions_are_per_client(manager):
    alice, bob = Peer("10.0.0.1:1"), Peer("10.0.0.2:2")
    assert await ask_core(manager, "testsvc whoami", alice) == "10.0.0.1:1 asked 1\n" + SEP
    assert await ask_core(manager, "testsvc whoami", alice) == "10.0.0.1:1 asked 2\n" + SEP
    assert await ask_core(manager, "testsvc whoami", bob) == "10.0.0.2:2 asked 1\n" + SEP


async def test_a_leaving_client_is_reported_to_the_services_it_used(manager):
    peer = Peer("10.0.0.3:3")
    await ask_core(manager, "testsvc add 1", peer)
    await manager.client_left(peer)
    await manager.client_left(Peer("never:used"))
    assert manager.catalog.services["testsvc"].instance.left == ["10.0.0.3:3"]


async def test_toplevel_collision_is_warned_and_help_lists_one(caplog):
    with caplog.at_level(logging.WARNING):
        manager = Manager([bundled_services_dir(), FIXTURE_SERVICES])
        await manager.start()
    try:
        assert "toplevel command 'hostname' of testsvc is hidden by systemstatus" in caplog.text
        terse = await ask_core(manager, "help -s")
        assert terse.split("\n")[0].split().count("hostname") == 1
        assert "TOP: \n" in await ask_core(manager, "help -s testsvc")
    finally:
        await manager.stop()


async def test_mode_is_a_command_with_help_and_a_clear_error():
    async with started_manager() as manager:
        assert await ask_core(manager, "mode JSON") == "json\n" + SEP
        assert await ask_core(manager, "mode xml") == \
            "ERROR: no mode 'xml'; use 'mode json' or 'mode text'\n" + SEP
        assert await ask_core(manager, "mode") == \
            "ERROR: missing MODE; usage: mode MODE\n" + SEP
        assert (await ask_core(manager, "help mode")).startswith(
            "mode MODE\n    switch this connection's replies between text and JSON\n")
        assert "mode" not in await ask_core(manager, "help -s")  # the seed's layout stays


async def test_a_stream_is_held_by_its_service_only_while_it_runs(manager):
    streams = manager.catalog.services["testsvc"].streams
    outcome = await run_line(manager, "testsvc count 2")
    assert streams == set()  # dropped before its first chunk (Ctrl-C, a lost client): no trace
    chunks = outcome.stream.__aiter__()
    assert await anext(chunks) == 1 and streams == {outcome.stream}
    assert [chunk async for chunk in chunks] == [2] and streams == set()
