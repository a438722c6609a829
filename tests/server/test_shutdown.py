"""Shutdown (kill, or the server's own shutdown()): commands in flight finish or
are cut off at shutdown_timeout, idle connections close at once, and clients
that do not read are dropped rather than waited for."""

import asyncio
import logging
import socket
import time

import pytest
from helpers import (
    QUICK,
    SEP,
    TIMEOUT,
    LineClient,
    rev_server,
    running_server,
    small_buffer_client,
    until,
)


async def test_kill_finishes_commands_in_flight_then_closes_everything():
    async with running_server() as server:
        serving = asyncio.create_task(server.serve_until_shutdown())
        port = server.address[1]
        busy = await LineClient.connect(port)
        idle = await LineClient.connect(port)
        admin = await LineClient.connect(port)
        await busy.send(b"testsvc sleep 0.3\nsystemstatus echo never\n")
        await admin.send(b"kill\n")
        assert (await admin.read_all()).decode() == "shutting down\n" + SEP
        assert (await busy.read_all()).decode() == "slept 0.3\n" + SEP
        assert await idle.read_all() == b""
        await asyncio.wait_for(serving, TIMEOUT)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert server.manager.catalog.services == {}  # every service stopped


async def test_a_command_that_will_not_finish_is_cut_off_at_shutdown():
    async with running_server(shutdown_timeout=0.2) as server:
        serving = asyncio.create_task(server.serve_until_shutdown())
        stuck = await LineClient.connect(server.address[1])
        await stuck.send(b"testsvc forever\n")
        await asyncio.wait_for(stuck.reader.readline(), TIMEOUT)
        server.manager.request_shutdown()
        tail = (await stuck.read_all()).decode()
        assert tail.endswith("ERROR: server is shutting down\n" + SEP)
        await asyncio.wait_for(serving, TIMEOUT)


async def test_shutdown_does_not_wait_for_idle_workers_of_clients_that_read():
    async with rev_server(shutdown_timeout=5.0) as server:
        clients = [await LineClient.connect(server.address[1]) for _ in range(5)]
        for client in clients:
            assert await client.ask("rev later x", QUICK) == "x\n" + SEP  # each has an idle worker
        started = time.monotonic()
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        assert time.monotonic() - started < 2.0
        for client in clients:
            assert await client.read_all() == b""


async def test_shutdown_does_not_wait_for_an_idle_connection_that_is_not_reading(caplog):
    caplog.set_level(logging.WARNING, "smanager.server")
    async with rev_server(shutdown_timeout=0.5) as server:
        client, conn = await small_buffer_client(server)
        await client.send("rev blob 4096")  # 4 MiB, answered at once: nothing runs after
        assert await until(lambda: conn.pipeline.write_paused, QUICK)
        assert conn.pipeline.job is None  # idle
        started = time.monotonic()
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        took = time.monotonic() - started
        client.writer.transport.abort()
    assert "still running" not in caplog.text, took
    assert took < 1.2, took  # one shutdown_timeout for the unread output, not 2 x 0.5 + 1


async def test_shutdown_closes_the_connection_of_a_client_that_does_not_read():
    async with running_server(shutdown_timeout=0.2) as server:
        client, conn = await small_buffer_client(server)  # it never reads
        client.writer.write(b"testsvc big 4096\n")  # a 4 MiB reply it will never read
        assert await until(lambda: conn.transport.get_write_buffer_size() > 1024 * 1024, QUICK)
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        assert server.connections == set()
        client.writer.transport.abort()


async def test_a_restart_ends_the_services_streams_with_a_notice():
    async with running_server() as server:
        watcher = await LineClient.connect(server.address[1])
        admin = await LineClient.connect(server.address[1])
        await watcher.send(b"testsvc count 100000 0.05\n")
        assert await watcher.reader.readline() == b"1\n"  # streaming from the old instance
        assert await admin.ask("restart testsvc", QUICK) == "restarted: testsvc\n" + SEP
        rest = (await watcher.reply_text(QUICK)).split("\n")
        assert rest[-3:] == ["ERROR: testsvc count ended: testsvc is restarting",
                             SEP.strip(), ""]
        assert all(line.isdigit() for line in rest[:-3])  # nothing but its chunks before
        assert await watcher.ask("testsvc add 1 2", QUICK) == "3\n" + SEP  # the new one
        await watcher.close()
        await admin.close()


async def test_kill_ends_open_streams_at_once():
    async with running_server(shutdown_timeout=30) as server:
        serving = asyncio.create_task(server.serve_until_shutdown())
        watcher = await LineClient.connect(server.address[1])
        admin = await LineClient.connect(server.address[1])
        await watcher.send(b"testsvc count 100000 10\n")  # a chunk every 10 s
        assert await watcher.reader.readline() == b"1\n"
        started = time.monotonic()
        await admin.send(b"kill\n")
        assert await watcher.read_all() == ("ERROR: server is shutting down\n" + SEP).encode()
        await asyncio.wait_for(serving, QUICK)  # not the 30 s of shutdown_timeout
        assert time.monotonic() - started < QUICK
        await watcher.close()
        await admin.close()
