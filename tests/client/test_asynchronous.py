"""The asyncio client against servers on the test's own loop: calls, streams,
indexes, time-outs, cancellation, logging in, and what it refuses to send."""

import asyncio

import pytest
from helpers import (
    TIMEOUT,
    closed_port,
    resetting_listener,
    running_server,
    the_testsvc,
)

from smanager.client import (
    AsyncClient,
    CannotConnect,
    ClientError,
    CommandFailed,
    LoginFailed,
    TimedOut,
)


async def test_async_client_calls_streams_and_indexes():
    async with running_server() as server, AsyncClient("127.0.0.1", server.address[1]) as client:
        assert (await client.call("testsvc add 2 3")).value == 5
        assert [chunk async for chunk in client.stream("testsvc count 3")] == [1, 2, 3]
        assert await client.services() == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"]
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


async def test_the_async_client_refuses_a_quoted_mode_command_too():
    async with running_server() as server, \
            AsyncClient("127.0.0.1", server.address[1], timeout=TIMEOUT) as client:
        with pytest.raises(ValueError):
            await client.call("'mode' text")
        assert (await client.call("testsvc add 1")).value == 2


async def test_an_async_stream_left_early_does_not_block_the_next_call():
    """Guards a fault since fixed, which was:
    client/asynchronous.py _exchange holds self._turn across its yields; a
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


async def test_a_reset_during_the_greeting_is_a_client_error_for_the_async_client():
    port, thread = resetting_listener()
    client = AsyncClient("127.0.0.1", port, timeout=TIMEOUT)
    try:
        with pytest.raises(ClientError):
            await client.call("help")
    finally:
        await client.close()
        await asyncio.to_thread(thread.join, TIMEOUT)


async def test_a_cancelled_async_call_stops_the_command_and_the_client_recovers():
    async with running_server() as server, \
            AsyncClient("127.0.0.1", server.address[1], timeout=TIMEOUT) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.call("testsvc forever"), 0.2)
        await asyncio.wait_for(the_testsvc(server).stream_closed.wait(), TIMEOUT)
        assert not client.connected
        assert (await client.call("testsvc add 1")).value == 2


async def test_the_async_client_logs_in(server_thread, users_file):
    port = server_thread.start(users_file=users_file)
    async with AsyncClient("127.0.0.1", port, timeout=TIMEOUT, user="alice",
                           password="alice-pw") as client:
        assert await client.builtins() == ["help", "kill", "login", "restart"]
    with pytest.raises(LoginFailed, match="login failed"):
        await AsyncClient("127.0.0.1", port, timeout=TIMEOUT, user="nobody",
                          password="x").connect()
