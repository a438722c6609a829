"""Review 2: the eager pipeline, the per-catalog memo, the framer's fast path and
the shared receive buffer.

Each test documents a property the review checked; several began as proofs of
bugs it found (a worker killed by a cancellation not meant for it, a line lost
to a Ctrl-C in the same read, a telnet command acted on after an overflow,
shutdown waiting on idle clients, the memo freezing a time limit, a CRLF line at
the limit overflowing depending on where a read ended).
"""

import asyncio
import contextlib
import gc
import logging
import random
import re
import socket
import time
import types

import pytest
from conftest import (
    FIXTURE_SERVICES,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    run_line,
    running_server,
    started_manager,
)

from smanager.auth.peer import Peer
from smanager.config import Config, bundled_services_dir
from smanager.core.lifecycle import stop_service
from smanager.core.runner import Outcome
from smanager.server.connection import Connection
from smanager.server.pipeline import Pipeline
from smanager.wire import errors
from smanager.wire.framing import OVERFLOW, LineFramer
from smanager.wire.protocol import SEPARATOR, render_reply

SEP = SEPARATOR + "\n"
IAC, IP, DO, WILL, TM = 255, 244, 253, 251, 6
CTRL_C = bytes([IAC, IP])
QUICK = 2.0  # seconds: the bound on any reply a test expects "now"

REVIEW_SERVICE = '''
import asyncio
from smanager import SService
from smanager.core.runner import Outcome


class Rev(SService):
    """Probes for the eager pipeline"""

    name = "rev"

    def __init__(self):
        super().__init__()
        self.marks = 0
        self.seen = []
        self.parked = None

    async def start(self):
        self.entered = asyncio.Event()
        self.parked_event = asyncio.Event()
        self.cleaned = asyncio.Event()
        self.guarding = asyncio.Event()

    async def cmd_ping(self):
        """Answers at once"""
        return "pong"

    async def cmd_say(self, *words):
        """Answers its words at once"""
        return " ".join(words)

    async def cmd_mark(self):
        """Counts how often it ran"""
        self.marks += 1
        return f"mark {self.marks}"

    async def cmd_later(self, text="later"):
        """Answers TEXT after one real wait"""
        await asyncio.sleep(0.001)
        return text

    async def cmd_yielding(self):
        """Suspends on a bare yield (sleep(0)) in its first step"""
        await asyncio.sleep(0)
        return "yielded"

    async def cmd_done_future(self):
        """Awaits a future that is already done, then one that is not yet"""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.set_result("a")
        pending = loop.create_future()
        loop.call_soon(pending.set_result, "b")
        return (await done) + (await pending)

    async def cmd_whose(self):
        """Whether the task running it is the same before and after a wait"""
        before = asyncio.current_task()
        self.seen.append(before)
        async with asyncio.timeout(5):
            await asyncio.sleep(0.001)
        return "same task" if asyncio.current_task() is before else "other task"

    async def cmd_group(self, fail: bool = False):
        """A TaskGroup entered in the first step"""
        async def child(n):
            await asyncio.sleep(0)
            if fail:
                raise ValueError("child failed")
            return n
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(child(n)) for n in range(4)]
        return sum(task.result() for task in tasks)

    async def cmd_deadline(self, seconds: float = 0.0):
        """asyncio.timeout(SECONDS) around a long wait, entered in the first step"""
        try:
            async with asyncio.timeout(seconds):
                await asyncio.sleep(5)
        except TimeoutError:
            return "deadline passed"
        return "slept"

    async def cmd_firstfail(self):
        """Raises in its first step"""
        raise LookupError("at once")

    async def cmd_quitlater(self):
        """Asks to close the connection, after a wait"""
        await asyncio.sleep(0.001)
        return Outcome("leaving", close=True)

    async def cmd_blob(self, kib: int):
        """KIB kibibytes of text, at once"""
        return ("y" * 1023 + "\\n") * kib

    async def cmd_guarded(self):
        """Waits long; records that its cleanup ran"""
        self.guarding.set()
        try:
            await asyncio.sleep(30)
        finally:
            self.cleaned.set()

    async def cmd_park(self):
        """Waits until 'rev unpark' cancels the task it runs in"""
        self.parked = asyncio.current_task()
        self.parked_event.set()
        await asyncio.sleep(30)
        return "woke up"

    async def cmd_unpark(self):
        """Cancels the task 'rev park' runs in"""
        self.parked.cancel()
        return "unparked"

    async def cmd_stubborn(self):
        """Swallows a cancellation (Ctrl-C) and answers anyway"""
        await asyncio.sleep(0)
        self.entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "swallowed"
        return "not interrupted"

    async def cmd_cancelled(self):
        """Fails with a CancelledError of its own (awaits a task it cancelled)"""
        task = asyncio.ensure_future(asyncio.sleep(1))
        await asyncio.sleep(0)
        task.cancel()
        await task

    async def cmd_slow(self, seconds: float = 0.3):
        """Answers after SECONDS"""
        await asyncio.sleep(seconds)
        return "slow done"

    async def cmd_limit(self, seconds: float):
        """Changes this service's command time limit"""
        self.command_timeout = seconds
        return f"limit {seconds:g}"
'''


@pytest.fixture
def rev_dir(tmp_path):
    (tmp_path / "rev.py").write_text(REVIEW_SERVICE)
    return tmp_path


def rev_server(rev_dir, **settings):
    settings.setdefault("services", [str(FIXTURE_SERVICES), str(rev_dir)])
    return running_server(**settings)


def rev_of(server_or_manager):
    manager = getattr(server_or_manager, "manager", server_or_manager)
    return manager.catalog.services["rev"].instance


async def reply(client, seconds=QUICK):
    """One reply, bounded in time."""
    return (await asyncio.wait_for(client.reader.readuntil(SEP_LINE), seconds)).decode()


async def replies(client, count, seconds=QUICK):
    return [await reply(client, seconds) for _ in range(count)]


async def ask(client, line, seconds=QUICK):
    await client.send(line)
    return await reply(client, seconds)


async def until(predicate, seconds=QUICK):
    """Wait, bounded, for a state the server reaches on its own (nothing to read)."""
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.002)


def the_connection(server):
    (conn,) = server.connections
    return conn


# == 1. The eager pipeline ==========================================================


async def test_pipelined_eager_and_waiting_lines_are_answered_strictly_in_order(rev_dir):
    lines = [
        ("rev say one", "one\n"),
        ("testsvc sleep 0.02", "slept 0.02\n"),       # async, waits
        ("rev say two", "two\n"),
        ("", None),                                    # blank: no reply
        ("testsvc block 0.01", "blocked 0.01\n"),     # a thread
        ("rev say three", "three\n"),
        ("testsvc count 2", "1\n2\n"),                 # a stream
        ("rev firstfail", "ERROR: rev firstfail failed: LookupError: at once\n"),
        ("'unbalanced", "ERROR: unbalanced quotes\n"),
        ("rev later four", "four\n"),
        ("rev yielding", "yielded\n"),
        ("rev done_future", "ab\n"),
        ("nosuch", "ERROR: unknown command 'nosuch' (try 'help')\n"),
        ("rev say five", "five\n"),
    ]
    expected = [text + SEP for _, text in lines if text is not None]
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        for round_ in range(3):  # the 2nd and 3rd rounds run from the memo
            await client.send("\n".join(line for line, _ in lines) + "\n")
            assert await replies(client, len(expected)) == expected, round_
        await client.close()


async def test_lines_arriving_while_a_job_waits_queue_behind_it(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev ping") == "pong\n" + SEP  # the worker exists now
        await client.send("rev slow 0.1")
        for i in range(20):  # each its own write, so mostly a read of one line: the fast path
            await client.send(f"rev say {i}")
        await client.send("rev later end")
        got = await replies(client, 22)
        assert got == ["slow done\n" + SEP] + [f"{i}\n" + SEP for i in range(20)] + ["end\n" + SEP]
        await client.close()


async def test_a_first_step_acts_as_the_connection_worker(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev whose") == "same task\n" + SEP  # first line: advance()
        assert await ask(client, "rev whose") == "same task\n" + SEP  # a later line
        await client.send("rev whose\nrev whose\n")                   # pipelined
        assert await replies(client, 2) == ["same task\n" + SEP] * 2
        worker = the_connection(server).worker
        assert rev_of(server).seen == [worker] * 4
        await client.close()


async def test_task_groups_entered_in_the_first_step(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev group") == "6\n" + SEP
        assert await ask(client, "rev group") == "6\n" + SEP
        assert (await ask(client, "rev group fail=yes")).startswith("ERROR: rev group failed: ")
        assert await ask(client, "rev group") == "6\n" + SEP
        await client.close()


async def test_a_reply_that_closes_ends_the_pipeline(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        await client.send("rev mark\nrev quitlater\nrev mark\nrev mark\n")
        assert await client.read_all() == ("mark 1\n" + SEP + "leaving\n" + SEP).encode()
        await client.close()
        client = await LineClient.connect(server.address[1])
        await client.send("rev ping\nrev mark\nquit\nrev mark\n")  # eager close mid-pipeline
        assert await client.read_all() == ("pong\n" + SEP + "mark 2\n" + SEP + "bye\n" + SEP).encode()
        await client.close()
        assert rev_of(server).marks == 2


async def test_half_close_answers_every_line_then_closes(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev later a\nrev ping\ntestsvc count 2\nrev say last")
        client.writer.write_eof()
        assert await client.read_all() == ("a\n" + SEP + "pong\n" + SEP + "1\n2\n" + SEP
                                           + "last\n" + SEP).encode()
        await client.close()


async def test_a_one_shot_first_line_that_waits_is_answered_then_closed(rev_dir):
    async with rev_server(rev_dir, oneshot_delay=0.05) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev later one-shot")
        assert await client.read_all() == ("one-shot\n" + SEP).encode()
        await client.close()


async def test_a_first_line_cut_short_by_eof_runs_exactly_once(rev_dir):
    """The one-shot timer is armed by the unterminated first line; the EOF that follows
    must run the line once, not once per path."""
    async with rev_server(rev_dir, oneshot_delay=0.05) as server:
        for expected in ("mark 1", "mark 2"):
            client = await LineClient.connect(server.address[1])
            await client.send(b"rev mark")
            client.writer.write_eof()
            assert await client.read_all() == (expected + "\n" + SEP).encode()
            await client.close()
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev mark")  # the timer fires first; the EOF finds nothing left
        assert await client.read_all() == ("mark 3\n" + SEP).encode()
        await client.close()
        assert rev_of(server).marks == 3


async def small_buffer_client(server):
    """A client with small socket buffers at both ends, so the server's own buffer fills."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, server.address)
    reader, writer = await asyncio.open_connection(sock=sock)
    client = LineClient(reader, writer)
    client.banner = await reply(client)
    conn = the_connection(server)
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return client, conn


async def test_replies_paused_by_a_slow_reader_keep_their_order(rev_dir):
    async with rev_server(rev_dir) as server:
        client, conn = await small_buffer_client(server)
        batch = "".join(f"rev blob 64\nrev say {i}\n" for i in range(40))  # 2.5 MiB of replies
        await client.send(batch)
        await until(lambda: conn.pipeline.flow.write_paused)  # the server sees the client lagging
        for i in range(40):
            assert await reply(client, TIMEOUT) == ("y" * 1023 + "\n") * 64 + SEP
            assert await reply(client, TIMEOUT) == f"{i}\n" + SEP
        assert await ask(client, "rev ping") == "pong\n" + SEP
        await client.close()


async def test_ctrl_c_stops_a_handed_over_job_and_the_session_goes_on(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev ping") == "pong\n" + SEP
        await client.send(b"rev guarded\n")
        await asyncio.wait_for(rev_of(server).guarding.wait(), QUICK)  # it runs now
        await client.send(CTRL_C)
        assert await reply(client) == "ERROR: interrupted\n" + SEP
        await asyncio.wait_for(rev_of(server).cleaned.wait(), QUICK)
        assert await ask(client, "rev ping") == "pong\n" + SEP
        assert the_connection(server).worker.cancelling() == 0
        await client.close()


async def test_shutdown_does_not_wait_for_idle_workers_of_clients_that_read(rev_dir):
    async with rev_server(rev_dir, shutdown_timeout=5.0) as server:
        clients = [await LineClient.connect(server.address[1]) for _ in range(5)]
        for client in clients:
            assert await ask(client, "rev later x") == "x\n" + SEP  # each has an idle worker
        started = time.monotonic()
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        assert time.monotonic() - started < 2.0
        for client in clients:
            assert await client.read_all() == b""


# -- bugs --------------------------------------------------------------------------


async def test_a_deadline_that_has_passed_in_the_first_step_is_the_commands_timeout(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev ping") == "pong\n" + SEP  # the worker is idle now
        assert await ask(client, "rev deadline 0") == "deadline passed\n" + SEP
        assert await ask(client, "rev ping") == "pong\n" + SEP
        await client.close()


async def test_a_deadline_that_has_passed_on_the_first_line_is_fine(rev_dir):
    """(The same command as the first line works: the new worker steps before the timer.)"""
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev deadline 0") == "deadline passed\n" + SEP
        assert await ask(client, "rev deadline 0.01") == "deadline passed\n" + SEP
        await client.close()


async def test_a_service_cancelling_its_own_task_does_not_hang_the_connection(rev_dir):
    async with rev_server(rev_dir) as server:
        parked = await LineClient.connect(server.address[1])
        other = await LineClient.connect(server.address[1])
        await parked.send("rev park")
        await asyncio.wait_for(rev_of(server).parked_event.wait(), QUICK)
        assert await ask(other, "rev unpark") == "unparked\n" + SEP
        assert (await reply(parked)).startswith("ERROR: ")
        assert await ask(parked, "rev ping") == "pong\n" + SEP
        await parked.close()
        await other.close()


async def test_a_swallowed_ctrl_c_does_not_poison_the_connection(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        await client.send("rev stubborn")
        await asyncio.wait_for(rev_of(server).entered.wait(), QUICK)
        await client.send(CTRL_C)
        assert await reply(client) in ("swallowed\n" + SEP, "ERROR: interrupted\n" + SEP)
        # The same line on a fresh connection: "ERROR: rev cancelled failed: CancelledError".
        assert await ask(client, "rev cancelled") == "ERROR: rev cancelled failed: CancelledError\n" + SEP
        await client.close()


async def test_a_failed_task_group_does_not_poison_the_connection(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert (await ask(client, "rev group fail=yes")).startswith("ERROR: rev group failed: ")
        assert await ask(client, "rev cancelled") == "ERROR: rev cancelled failed: CancelledError\n" + SEP
        assert await ask(client, "rev ping") == "pong\n" + SEP
        await client.close()


async def test_a_commands_own_cancelled_error_is_its_failure(rev_dir):
    """(The control for the test above: without a swallowed Ctrl-C, it is a plain error.)"""
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        for _ in range(2):
            assert await ask(client, "rev cancelled") == (
                "ERROR: rev cancelled failed: CancelledError\n" + SEP)
        await client.close()


async def test_a_line_and_ctrl_c_in_one_read_are_answered_as_in_two_reads(rev_dir):
    async with rev_server(rev_dir) as server:
        client = await LineClient.connect(server.address[1])
        assert await ask(client, "rev ping") == "pong\n" + SEP  # idle, with a worker
        await client.send(b"rev guarded\n" + CTRL_C)
        assert await reply(client) == "ERROR: interrupted\n" + SEP
        assert await ask(client, "rev ping") == "pong\n" + SEP
        await client.close()


async def test_shutdown_does_not_wait_for_an_idle_connection_that_is_not_reading(rev_dir, caplog):
    caplog.set_level(logging.WARNING, "smanager.server")
    async with rev_server(rev_dir, shutdown_timeout=0.5) as server:
        client, conn = await small_buffer_client(server)
        await client.send("rev blob 4096")  # 4 MiB, answered at once: nothing runs after
        await until(lambda: conn.pipeline.flow.write_paused)
        assert conn.pipeline.job is None  # idle
        started = time.monotonic()
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        took = time.monotonic() - started
        client.writer.transport.abort()
    assert "still running" not in caplog.text, took
    assert took < 1.2, took  # one shutdown_timeout for the unread output, not 2 x 0.5 + 1


async def test_an_oversized_line_then_ctrl_c_in_one_read_still_answers_and_explains(rev_dir):
    async with rev_server(rev_dir, max_line=80) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev say before\n" + b"x" * 100 + CTRL_C)
        assert await client.read_all() == (
            "before\n" + SEP + "ERROR: line longer than 80 bytes; closing the connection\n"
            + SEP).encode()
        await client.close()


# == Races at the Pipeline itself (real Manager and services, a recording transport) ==


class RecordingTransport:
    """What Pipeline needs of a transport; records writes, and any made after close()."""

    def __init__(self):
        self.out = bytearray()
        self.late = []  # writes after close(): a reply written after the connection closed
        self.closing = False
        self.reading = True
        self.wrote = asyncio.Event()

    def write(self, data):
        if self.closing:
            self.late.append(bytes(data))
        else:
            self.out += data
        self.wrote.set()

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    async def replies(self, count, seconds=QUICK):
        async with asyncio.timeout(seconds):
            while self.out.count(SEP_LINE) < count:
                self.wrote.clear()
                await self.wrote.wait()
        return self.out.decode()


async def in_callback(function):
    """Run FUNCTION as a protocol callback would: from the loop, with no task running."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def call():
        try:
            future.set_result(function())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            future.set_exception(exc)

    loop.call_soon(call)
    return await future


@contextlib.asynccontextmanager
async def core_pipeline(rev_dir):
    async with started_manager(rev_dir) as manager:
        transport = RecordingTransport()
        pipeline = Pipeline(manager, Peer("test:1"), transport)
        try:
            yield manager, pipeline, transport
        finally:
            pipeline.lost()
            if pipeline.worker is not None:
                await asyncio.wait({pipeline.worker}, timeout=QUICK)


def feed(pipeline, *lines):
    for line in lines:
        pipeline.add(line)
        pipeline.advance()


async def test_ctrl_c_between_hand_over_and_the_workers_first_step(rev_dir):
    async with core_pipeline(rev_dir) as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        # The job is handed over; the worker has not stepped yet when Ctrl-C comes.
        await in_callback(lambda: (feed(pipeline, b"rev guarded"),
                                   pipeline.interrupt(errors.INTERRUPTED)))
        await transport.replies(2)
        gc.collect()
        await asyncio.wait_for(rev_of(manager).cleaned.wait(), QUICK)  # closed, not leaked
        await in_callback(lambda: feed(pipeline, b"rev later ok"))
        assert await transport.replies(3) == "pong\n" + SEP + "ERROR: interrupted\n" + SEP \
            + "ok\n" + SEP
        assert transport.late == [] and pipeline.worker.cancelling() == 0


async def test_ctrl_c_racing_the_hand_over_of_a_job_with_a_deadline(rev_dir):
    """The dropped job entered asyncio.timeout(); its timer must not outlive it."""
    async with core_pipeline(rev_dir) as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        await in_callback(lambda: (feed(pipeline, b"rev deadline 0.02"),
                                   pipeline.interrupt(errors.INTERRUPTED)))
        await transport.replies(2)
        await asyncio.sleep(0.05)  # past the dropped command's deadline: nothing may fire
        await in_callback(lambda: feed(pipeline, b"rev later ok"))
        assert (await transport.replies(3)).endswith("ERROR: interrupted\n" + SEP + "ok\n" + SEP)
        assert pipeline.worker is not None and not pipeline.worker.done()


async def test_shutdown_between_hand_over_and_the_workers_first_step(rev_dir):
    async with core_pipeline(rev_dir) as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        await in_callback(lambda: (feed(pipeline, b"rev later last", b"rev mark"), pipeline.shut()))
        assert await transport.replies(2) == "pong\n" + SEP + "last\n" + SEP
        worker = pipeline.worker
        if worker is not None:
            await asyncio.wait({worker}, timeout=QUICK)
        assert transport.closing and transport.late == [] and rev_of(manager).marks == 0


async def test_connection_lost_between_hand_over_and_the_workers_first_step(rev_dir):
    async with core_pipeline(rev_dir) as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        worker = pipeline.worker

        def hand_over_then_lose():
            feed(pipeline, b"rev guarded", b"rev mark")
            transport.close()
            pipeline.lost()

        await in_callback(hand_over_then_lose)
        await asyncio.wait_for(asyncio.wait({worker}), QUICK)
        gc.collect()
        await asyncio.wait_for(rev_of(manager).cleaned.wait(), QUICK)
        assert transport.out.decode() == "pong\n" + SEP and transport.late == []
        assert rev_of(manager).marks == 0


async def test_a_queued_job_runs_exactly_once(rev_dir):
    """Lines queued behind waiting jobs, in random batches: every mark exactly once, in order."""
    rng = random.Random(2)
    async with core_pipeline(rev_dir) as (manager, pipeline, transport):
        sent = 0
        for _ in range(30):
            batch = [rng.choice([b"rev mark", b"rev later x", b"rev yielding"])
                     for _ in range(rng.randint(1, 6))]

            def add_batch(batch=batch):
                for line in batch:
                    pipeline.add(line)
                pipeline.advance()

            await in_callback(add_batch)
            sent += len(batch)
            for _ in range(rng.randint(0, 3)):  # interleave: the next batch may queue behind
                await asyncio.sleep(0)
        await transport.replies(sent)
        marks = [line for line in transport.out.decode().split("\n") if line.startswith("mark")]
        assert marks == [f"mark {i}" for i in range(1, len(marks) + 1)]
        assert rev_of(manager).marks == len(marks) and transport.late == []


# == 2. The per-catalog memo ==========================================================

MEMO_LINES = [
    b"testsvc add 1 2", b"testsvc add 1 2\r", b"  testsvc   add 1 2  ", b"TESTSVC ADD 1 2",
    b"testsvc add a=3", b"testsvc add 1 b=2", b"testsvc add x", b"testsvc add", b"testsvc add 1 2 3",
    b"rev say 'two  spaces' x", b"rev say", b"rev mark", b"rev ping", b"rev firstfail",
    b"systemstatus echo a=b c", b"hostname", b"testsvc hostname", b"rev", b"rev help", b"help rev",
    b"help -s", b"nosuch", b"rev nosuch", b"'unbalanced", b"\xc3\x28", b"", b"   ",
    b"testsvc whoami", b"testsvc data", b"testsvc dashes",
]


async def outcome(manager, raw, peer):
    """A line's reply as the wire carries it (a stream is not expected here)."""
    result = await run_line(manager, raw, peer)
    if result is None:
        return None
    assert result.stream is None
    return render_reply(result)


async def test_the_memo_changes_no_reply(rev_dir):
    """Every line three times through the memo, and three times with the memo emptied."""
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES, rev_dir) as manager:
        peer = Peer("test:1")
        with_memo = [await outcome(manager, raw, peer) for raw in MEMO_LINES * 3]
        remembered = dict(manager.catalog.calls)
        rev_of(manager).marks = 0
        peer = Peer("test:1")
        without = []
        for raw in MEMO_LINES * 3:
            manager.catalog.calls.clear()
            without.append(await outcome(manager, raw, peer))
        assert with_memo == without
        # Only service lines that need no session are remembered: never help, built-ins,
        # errors, or a service that tracks its clients (testsvc has client_disconnected).
        assert set(remembered) == {b"rev say 'two  spaces' x", b"rev say", b"rev mark",
                                   b"rev ping", b"rev firstfail", b"systemstatus echo a=b c",
                                   b"hostname"}


async def test_a_remembered_call_of_a_stopped_service_is_refused_like_a_fresh_one(rev_dir):
    async with started_manager(rev_dir) as manager:
        peer = Peer("test:1")
        assert await outcome(manager, b"rev ping", peer) == ("pong\n" + SEP).encode()
        assert b"rev ping" in manager.catalog.calls
        await stop_service(rev_of(manager), timeout=1.0)  # the catalog still lists it
        remembered = await outcome(manager, b"rev ping", peer)
        manager.catalog.calls.clear()
        assert remembered == await outcome(manager, b"rev ping", peer) == (
            "ERROR: rev is stopped (restarting?); try again\n" + SEP).encode()


async def test_a_restart_starts_a_fresh_memo(rev_dir):
    async with started_manager(rev_dir) as manager:
        peer = Peer("test:1")
        await outcome(manager, b"rev mark", peer)
        old = rev_of(manager)
        assert await manager.restart("rev") == "restarted: rev"
        assert manager.catalog.calls == {}
        assert await outcome(manager, b"rev mark", peer) == ("mark 1\n" + SEP).encode()
        assert manager.catalog.calls[b"rev mark"].instance is rev_of(manager) is not old


async def test_the_memo_does_not_freeze_a_services_time_limit(rev_dir):
    async with started_manager(rev_dir) as manager:
        peer = Peer("test:1")
        assert await outcome(manager, b"rev slow 0.2", peer) == ("slow done\n" + SEP).encode()
        assert await outcome(manager, b"rev limit 0.05", peer) == ("limit 0.05\n" + SEP).encode()
        assert await outcome(manager, b"rev slow 0.2", peer) == (
            "ERROR: rev slow timed out after 0.05 s\n" + SEP).encode()


# == 3. The framer's fast path ========================================================

ALPHABET = [b"a", b"b", b" ", b"=", b"\r", b"\n", b"\x00", b"\xff", b"\xfd", b"\xfb", b"\xfa",
            b"\xf0", b"\xf4", b"\xf7", b"\xf8", b"\x06", b"\x01", b"\xc3"]
WEIGHTS = [10, 5, 4, 1, 3, 4, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def events_of(chunks, max_line, general=False, counter=None):
    """Everything a fresh framer emits for these chunks, then end of input, and its state.
    With ``general``, every feed is forced down the general path; ``counter`` (a list)
    gets one item for each feed that took the fast path."""
    framer = LineFramer(max_line)
    calls = []
    for name in ("_add_text", "_feed_telnet"):  # count the general path's calls
        method = getattr(framer, name)
        setattr(framer, name, lambda *args, _m=method: (calls.append(1), _m(*args))[1])
    events = []
    for chunk in chunks:
        if general:
            framer._stateful = True  # the fast path's guard; the general path recomputes it
        before, stopped = len(calls), framer.overflowed
        events += framer.feed(chunk)
        if counter is not None and len(calls) == before and not stopped:
            counter.append(chunk)
    events += framer.eof()
    state = (bytes(framer._partial), framer.overflowed, framer.telnet_seen)
    return [(type(e).__name__, bytes(e) if isinstance(e, bytes) else None) for e in events], state


def random_input(rng):
    if rng.random() < 0.5:  # plain lines: what the fast path is for
        lines = [bytes(rng.choices(b"ab =\t\xc3\x28x\r", k=rng.randint(0, 12)))
                 + rng.choice([b"\n", b"\r\n"]) for _ in range(rng.randint(1, 3))]
        return b"".join(lines)
    return b"".join(rng.choices(ALPHABET, WEIGHTS, k=rng.randint(1, 30)))


def random_chunks(rng, data):
    if rng.random() < 0.3:  # a read per line, as an interactive client sends them
        return re.findall(rb"[^\n]*\n|[^\n]+$", data)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 4))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def test_the_fast_path_gives_exactly_what_the_general_path_gives():
    """A seeded differential test: the same chunks through the framer as it is, and
    through the general path alone, must give the same events and leave the same state."""
    rng = random.Random(20240601)
    fast = []
    for _ in range(20000):
        data = random_input(rng)
        max_line = rng.choice([1, 2, 3, 5, 8, 13, 80, 65536])
        chunks = random_chunks(rng, data)
        assert events_of(chunks, max_line, counter=fast) == \
            events_of(chunks, max_line, general=True), (data, chunks, max_line)
    assert len(fast) > 4000  # the fast path really was exercised


def test_the_fast_path_at_the_line_limit():
    for limit in (1, 2, 80):
        for body in (b"x" * (limit - 1), b"x" * limit, b"x" * (limit + 1)):
            for end in (b"\n", b"\r\n", b"\r\r\n"):
                data = body + end
                assert events_of([data], limit) == events_of([data], limit, general=True)


def test_without_overflow_the_chunking_changes_nothing():
    """Whole, random chunks and single bytes give the same events, when no line reaches the
    limit (a CR left before a CR NUL aside: see the lesser observations)."""
    rng = random.Random(7)
    for _ in range(5000):
        data = random_input(rng)
        limit = len(data) + 2

        def norm(result):
            events, state = result
            return [(kind, value.rstrip(b"\r") if kind == "bytes" else value)
                    for kind, value in events], state

        whole = norm(events_of([data], limit))
        assert norm(events_of(random_chunks(rng, data), limit)) == whole, data
        assert norm(events_of([data[i:i + 1] for i in range(len(data))], limit)) == whole, data


def test_a_line_at_the_limit_ending_crlf_does_not_depend_on_where_a_read_ends():
    line = b"y" * 80
    assert events_of([line + b"\r\n"], 80)[0] == [("bytes", line)]
    assert events_of([line + b"\r", b"\n"], 80)[0] == [("bytes", line)]


@pytest.mark.parametrize("tail", [CTRL_C, bytes([IAC, DO, 1])])
def test_nothing_follows_an_overflow_in_the_same_read(tail):
    assert LineFramer(80).feed(b"x" * 100 + tail) == [OVERFLOW]


# == 4. The shared receive buffer ======================================================


def test_buffer_updated_hands_on_a_copy():
    shared = memoryview(bytearray(64))
    server = types.SimpleNamespace(config=Config(), receive_buffer=shared)
    connections = [Connection(server), Connection(server)]
    seen = []
    for conn in connections:
        conn.pipeline = object()  # begun (not refused at the door)
        conn.data_received = seen.append  # what buffer_updated passes on
    for conn, text in zip(connections, (b"first", b"other")):
        buffer = conn.get_buffer(-1)
        assert buffer.obj is shared.obj  # one buffer for every connection
        buffer[:len(text)] = text
        conn.buffer_updated(len(text))
    shared[:8] = b"XXXXXXXX"
    assert seen == [b"first", b"other"] and all(type(data) is bytes for data in seen)


async def test_lines_kept_across_reads_do_not_alias_the_shared_buffer(rev_dir):
    async with rev_server(rev_dir) as server:
        a = await LineClient.connect(server.address[1])
        b = await LineClient.connect(server.address[1])
        assert await ask(a, "rev ping") == await ask(b, "rev ping") == "pong\n" + SEP
        conn_a = next(c for c in server.connections if c.pipeline.worker is not None
                      and c.peer.address.endswith(str(a.writer.get_extra_info("sockname")[1])))
        # A: a job that waits, lines queued behind it, and half a line in the framer.
        await a.send(b"rev slow 0.2\n" + b"".join(b"rev say a%d\n" % i for i in range(50))
                     + b"rev say half-")
        await until(lambda: conn_a.framer.has_partial)
        for i in range(30):  # B's reads overwrite the shared buffer many times meanwhile
            await b.send(b"".join(b"rev say %s\n" % (b"B" * 200) for _ in range(20)))
            assert await replies(b, 20) == ["B" * 200 + "\n" + SEP] * 20
        await a.send(b"done\n")
        assert await replies(a, 52) == ["slow done\n" + SEP] + [f"a{i}\n" + SEP for i in range(50)] \
            + ["half-done\n" + SEP]
        await a.close()
        await b.close()
