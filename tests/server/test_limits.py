"""Limits and safe defaults: connection caps, idle/line/send time-outs, and
refusing to listen beyond loopback."""

import asyncio
import contextlib
import logging
import time

import pytest
from helpers import (
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    Records,
    make_users,
    read_steadily,
    reset,
    running_server,
    until,
    with_fixtures,
)
from helpers import config as server_config

from smanager.client import AsyncClient, CannotConnect, Client
from smanager.config import ConfigError
from smanager.server import limits
from smanager.server.server import Server


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


@pytest.mark.parametrize(("host", "is_exposed"), [
    ("0:0:0:0:0:0:0:1", False), ("127.1", False), ("localhost", False),
    ("0", True), ("::0", True), ("0.0.0.0", True), ("::", True),
])
def test_exposure_of_other_spellings(host, is_exposed):
    """Pin: other spellings of loopback and of every interface."""
    assert limits.exposed(host) is is_exposed


async def test_listening_beyond_loopback_needs_insecure():
    server = Server(server_config(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0: anyone who can"):
        await server.start()
    assert not server.connections


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
            assert await until(lambda: server.admission.count == 2)
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


async def test_the_clients_say_a_refusal_in_the_servers_words(server_thread):
    port = server_thread.start(max_connections_per_address=1)
    with Client("127.0.0.1", port, timeout=TIMEOUT):
        with pytest.raises(CannotConnect) as refused:
            Client("127.0.0.1", port, timeout=TIMEOUT).connect()
        assert str(refused.value) == (f"127.0.0.1:{port}: too many connections from 127.0.0.1 "
                                      "(limit 1); try again later")
        with pytest.raises(CannotConnect, match=r": too many connections from 127\.0\.0\.1"):
            await AsyncClient("127.0.0.1", port, timeout=TIMEOUT).connect()


async def test_admission_counts_come_back_to_zero():
    """Pin: refused, closed and reset connections all give their slot back."""
    async with running_server(max_connections=3, max_connections_per_address=2) as server:
        port = server.address[1]
        held = [await LineClient.connect(port) for _ in range(2)]
        extra = await LineClient.connect(port, read_banner=False)
        assert (await extra.read_all()).startswith(b"ERROR: too many connections from 127.0.0.1")
        await extra.close()
        for client in held:
            await client.close()
        for _ in range(5):
            client = await LineClient.connect(port)
            assert await client.ask("testsvc add 1 1") == "2\n" + SEP
            reset(client)
        assert await until(lambda: server.admission.count == 0 and not server.connections)
        assert server.admission.by_address == {}


async def test_an_idle_connection_is_told_and_closed():
    async with running_server(idle_timeout=0.5) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert await client.ask("testsvc sleep 0.8") == "slept 0.8\n" + SEP  # busy: not idle
            assert await client.read_all() == \
                b"ERROR: idle for 0.5 s; closing the connection\n" + SEP_LINE
        finally:
            await client.close()


async def test_a_client_that_never_logs_in_is_told_and_closed(tmp_path):
    async with running_server(users_file=make_users(tmp_path / "users", carol="read"),
                              login_timeout=0.4) as server:
        client = await LineClient.connect(server.address[1])
        try:
            began = time.monotonic()
            assert await client.read_all() == \
                b"ERROR: not logged in within 0.4 s; closing the connection\n" + SEP_LINE
            assert time.monotonic() - began >= 0.4
        finally:
            await client.close()


async def test_the_login_time_out_runs_from_the_connection_not_the_sweeps_first_look(tmp_path):
    # Other connections get their Watch at the sweep's first look, up to a
    # second after they began (an idle server sweeps slowly); one that must
    # log in gets it as it begins, so its time-out is not that much later.
    async with running_server(users_file=make_users(tmp_path / "users", carol="read"),
                              login_timeout=5) as server:
        loop = asyncio.get_running_loop()
        began = loop.time()
        client = await LineClient.connect(server.address[1])  # (it has read the banner)
        try:
            (connection,) = server.connections
            assert connection.watch is not None and began <= connection.watch.opened <= loop.time()
            assert connection.watch.opened - began < 0.05  # not a sweep's later look
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
                assert await until(lambda: not server.connections)
                with contextlib.suppress(ConnectionError):
                    await client.read_all()  # what the kernel held, then the end
            finally:
                await client.close()
    finally:
        logging.getLogger("smanager.limits").removeHandler(seen)


async def test_an_idle_refusal_happens_once_then_the_send_timeout_applies():
    """Guards a fault since fixed, which was:
    limits.py sweep()/check(): a refused connection stays in server.connections
    until its transport has flushed, and the sweep checks it again every
    interval.  Its idle rule fires again each time (a warning 20 times a second)
    and returns before the send rule is reached, so a client that asked for a
    big reply and reads nothing is never dropped: it keeps its connection slot
    and the server keeps its 20 MB for good.  A connection already refused should
    be refused once, and then only need to flush within send_timeout or be
    aborted."""
    settings = {"services": with_fixtures("blob"),
                "idle_timeout": 0.2, "send_timeout": 1.0, "shutdown_timeout": 1.0}
    with Records("smanager.limits") as seen:
        async with running_server(**settings) as server:
            client = await LineClient.connect(server.address[1])
            try:
                await client.send("blob blob 20000")  # 20 MB at once, never read
                gone = await until(lambda: not server.connections, seconds=4.0,
                                   give_up=lambda: seen.count("idle for") > 1)
                idle_refusals = seen.count("idle for")
            finally:
                client.writer.transport.abort()
    assert idle_refusals == 1, f"refused {idle_refusals} times: {seen.messages[:3]}"
    assert gone, "a client that reads nothing was never dropped"


async def test_the_line_timeout_does_not_run_while_the_server_has_stopped_reading():
    """Guards a fault since fixed, which was:
    limits.py check(): the line clock runs while the server itself has stopped
    reading (256 lines queued, see pipeline.QUEUE_HIGH).  The rest of a line the
    client sent at once sits unread in the server's socket, and the client is
    cut off with "line not finished within ..." though it finished the line long
    ago.  The clock should only run while the server is reading."""
    async with running_server(line_timeout=0.2) as server:
        client = await LineClient.connect(server.address[1])
        try:
            # 300 quick commands, then the start of one more line, in one write:
            # the server reads it all, queues 300 lines and stops reading.
            await client.send(b"testsvc sleep 0.002\n" * 300 + b"testsvc add 1")
            assert (await client.reply()).startswith(b"slept")
            await client.send(b" 2\n")  # the rest of the line, at once
            replies = []
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                for _ in range(300):
                    replies.append(await client.reply())
        finally:
            await client.close()
    assert len(replies) == 300 and replies[-1] == b"3\n" + SEP_LINE, replies[-1:]
    assert not any(reply.startswith(b"ERROR") for reply in replies)


async def test_the_send_timeout_spares_a_client_that_reads_steadily():
    """Guards a fault since fixed, which was:
    limits.py check(): progress is "the buffer is smaller than when the sweep
    last looked", but the pipeline refills the buffer whenever the client has
    read enough (resume_writing, then the next chunk).  A client reading a stream
    of big chunks steadily at 10 MB/s is seen with a larger buffer at every
    sweep and dropped as "output unread".  Progress should be counted as bytes
    that left the buffer (or resume_writing calls) since the last sweep."""
    settings = {"services": with_fixtures("blob"), "send_timeout": 0.5}
    n, kib, rate = 40, 512, 10e6  # 20 MiB at 10 MB/s: about 2 s, four send time-outs
    want = n * kib * 1024 + len(SEP_LINE)
    async with running_server(**settings) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send(f"blob chunks {n} {kib}")
            total = await read_steadily(client.reader, rate, want)
        finally:
            await client.close()
    assert total >= want, f"dropped after {total} of {want} bytes, read at {rate / 1e6:g} MB/s"


async def test_idle_time_does_not_run_during_a_stream_or_queued_lines():
    """Pin: a stream longer than idle_timeout, and lines waiting behind a slow
    one, keep a connection that sends nothing alive."""
    async with running_server(idle_timeout=0.5) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert await client.ask("testsvc count 6 0.15") == "1\n2\n3\n4\n5\n6\n" + SEP
            await client.send("testsvc sleep 0.35\ntestsvc sleep 0.35\ntestsvc add 1 1")
            assert [await client.reply() for _ in range(3)] == \
                [b"slept 0.35\n" + SEP_LINE] * 2 + [b"2\n" + SEP_LINE]
        finally:
            await client.close()
