"""Races at the Pipeline itself, with no socket: a real Manager and services and a
transport that records what is written (and anything written after close).
Ctrl-C, shutdown and a lost connection each land between a job's hand-over and
the worker's first step; queued jobs each run exactly once; a line whose reply
finds the client gone is still audited."""

import asyncio
import contextlib
import gc
import random

import pytest
from helpers import QUICK, REV, SEP, SEP_LINE, rev_of, started_manager, until

from smanager.auth.peer import Peer
from smanager.core.eager import Spare
from smanager.server.pipeline import Pipeline
from smanager.wire import errors


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

    def get_extra_info(self, name, default=None):
        return default  # a plain connection: no TLS, no socket

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
async def core_pipeline():
    async with started_manager(REV) as manager:
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


async def test_ctrl_c_between_hand_over_and_the_workers_first_step():
    async with core_pipeline() as (manager, pipeline, transport):
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


async def test_ctrl_c_racing_the_hand_over_of_a_job_with_a_deadline():
    """The dropped job entered asyncio.timeout(); its timer must not outlive it."""
    async with core_pipeline() as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        await in_callback(lambda: (feed(pipeline, b"rev deadline 0.02"),
                                   pipeline.interrupt(errors.INTERRUPTED)))
        await transport.replies(2)
        await asyncio.sleep(0.05)  # past the dropped command's deadline: nothing may fire
        await in_callback(lambda: feed(pipeline, b"rev later ok"))
        assert (await transport.replies(3)).endswith("ERROR: interrupted\n" + SEP + "ok\n" + SEP)
        assert pipeline.worker is not None and not pipeline.worker.done()


async def test_shutdown_between_hand_over_and_the_workers_first_step():
    async with core_pipeline() as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        await in_callback(lambda: (feed(pipeline, b"rev later last", b"rev mark"), pipeline.shut()))
        assert await transport.replies(2) == "pong\n" + SEP + "last\n" + SEP
        worker = pipeline.worker
        if worker is not None:
            await asyncio.wait({worker}, timeout=QUICK)
        assert transport.closing and transport.late == [] and rev_of(manager).marks == 0


async def test_connection_lost_between_hand_over_and_the_workers_first_step():
    async with core_pipeline() as (manager, pipeline, transport):
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        await transport.replies(1)
        workers = []

        def hand_over_then_lose():
            feed(pipeline, b"rev guarded", b"rev mark")
            workers.append(pipeline.worker)  # the task the job was handed to
            transport.close()
            pipeline.lost()

        await in_callback(hand_over_then_lose)
        await asyncio.wait_for(asyncio.wait(workers), QUICK)
        gc.collect()
        await asyncio.wait_for(rev_of(manager).cleaned.wait(), QUICK)
        assert transport.out.decode() == "pong\n" + SEP and transport.late == []
        assert rev_of(manager).marks == 0


async def test_a_queued_job_runs_exactly_once():
    """Lines queued behind waiting jobs, in random batches: every mark exactly once, in order."""
    rng = random.Random(2)
    async with core_pipeline() as (manager, pipeline, transport):
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


class RecordingAudit:
    def __init__(self):
        self.lines = []

    def record(self, started, raw, peer, error):
        self.lines.append((raw, error))


class VanishingTransport(RecordingTransport):
    """The client is gone by the time the first reply is written."""

    def write(self, data):
        super().write(data)
        self.closing = True


async def test_a_line_whose_reply_finds_the_client_gone_is_audited_and_nothing_after_it_runs():
    async with started_manager(REV) as manager:
        transport, audit = VanishingTransport(), RecordingAudit()
        pipeline = Pipeline(manager, Peer("test:1"), transport, audit)
        try:
            await in_callback(lambda: feed(pipeline, b"rev mark", b"rev mark"))
            assert audit.lines == [(b"rev mark", None)]
            assert rev_of(manager).marks == 1
        finally:
            pipeline.lost()
            if pipeline.worker is not None:
                await asyncio.wait({pipeline.worker}, timeout=QUICK)


async def test_a_pipeline_ending_with_nothing_running_closes_without_pausing_first():
    """Pausing a plain transport just before closing it costs asyncio two searches
    for a reader that is gone; one still running a job stops reading meanwhile."""
    async with core_pipeline() as (manager, pipeline, transport):
        await in_callback(lambda: (feed(pipeline, b"rev ping"), pipeline.finish()))
        assert transport.closing and transport.reading
        assert await transport.replies(1) == "pong\n" + SEP
    async with core_pipeline() as (manager, pipeline, transport):
        worker = await in_callback(lambda: (feed(pipeline, b"rev later last"),
                                            pipeline.finish(), pipeline.worker)[-1])
        assert not transport.closing and not transport.reading  # the job runs; nothing is read
        await asyncio.wait_for(asyncio.wait({worker}), QUICK)
        assert transport.out.decode() == "last\n" + SEP
        assert transport.closing and not transport.reading



@pytest.mark.parametrize("started", [True, False])
async def test_a_cancel_taken_back_in_a_first_step_stays_with_its_connection(started):
    """cancel() then uncancel(): the CancelledError is still on its way to the
    spare (before its first step, or to the wait it is in).  That connection
    takes the spare, so the next one's command is not the one cancelled."""
    async with started_manager(REV) as manager:
        spare = Spare()
        if started:
            spare.get()
            await asyncio.sleep(0)  # its first step: it waits to be adopted
        first, second = RecordingTransport(), RecordingTransport()
        one = Pipeline(manager, Peer("test:1"), first, spare=spare)
        two = Pipeline(manager, Peer("test:2"), second, spare=spare)
        workers = await in_callback(lambda: (feed(one, b"rev cancelundo"),
                                             feed(two, b"rev later ok"),
                                             [one.worker, two.worker])[-1])
        assert workers[0] is not None and workers[0] is not workers[1]
        assert await second.replies(1) == "ok\n" + SEP
        assert first.out.decode() == "undone\n" + SEP
        assert await until(lambda: first.closing, QUICK)  # as a worker cancelled while idle
        for pipeline in (one, two):
            worker = pipeline.worker
            pipeline.lost()
            if worker is not None:
                await asyncio.wait({worker}, timeout=QUICK)
        spare.close()



async def test_a_job_whose_worker_was_cancelled_before_its_first_step_gets_another():
    """The job's own first step cancelled a spare not yet started: that task ends
    before running anything, so another is adopted, and the job gets the
    cancellation it asked for; the session goes on."""
    async with started_manager(REV) as manager:
        spare, transport = Spare(), RecordingTransport()  # its spare: made in the pass
        pipeline = Pipeline(manager, Peer("test:1"), transport, spare=spare)
        first = await in_callback(lambda: (feed(pipeline, b"rev cancelwait"),
                                           pipeline.worker)[-1])
        assert await transport.replies(1) == "ERROR: the command was cancelled\n" + SEP
        assert first.done() and pipeline.worker not in (None, first)
        await in_callback(lambda: feed(pipeline, b"rev ping"))
        assert (await transport.replies(2)).endswith("pong\n" + SEP)
        worker = pipeline.worker
        pipeline.lost()
        await asyncio.wait({worker}, timeout=QUICK)
        spare.close()
        assert transport.late == []
