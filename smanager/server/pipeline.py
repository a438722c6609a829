"""The lines of one connection, run in order.

Each connection has one task, its worker.  A line runs at once, in the
callback that received it, acting as the worker (see eager.py); only a request
that has to wait (a plain command's thread, an async command that sleeps, a
stream, a full send buffer) is handed to the worker as a job, and the lines
behind it wait their turn.  So pipelined requests are answered in order, and a
request that finishes at once costs no task switch.
"""

import asyncio
import collections
import logging
import time

from ..core import eager
from ..core.runner import Outcome
from ..wire import errors, formats
from . import tls
from .flow import Flow

log = logging.getLogger("smanager.pipeline")
QUEUE_HIGH, QUEUE_LOW = 256, 64  # lines waiting before we stop reading, and resume
DRAIN = object()  # a job: wait until the client has read what we sent


class Pipeline:
    def __init__(self, manager, peer, transport, audit=None):
        self.manager = manager
        self._answer = manager.answer
        self._start = manager.runner.start
        self._roster = manager.roster
        self.peer = peer
        self.transport = transport
        self.queue = collections.deque()
        self.worker = None  # the connection's task, made when the first line arrives
        self.closing = False  # run nothing more
        self.finish_then_close = False  # no more input will come: close when the queue is done
        self._job = None  # handed to the worker: a coroutine, a streaming Outcome, or DRAIN
        self._wakeup = None  # the future an idle worker waits on
        self._running = False  # the worker is inside a job
        self._cancel_reason = None  # the error to reply when the running job is cancelled
        self._cancel_next_job = False  # a cancellation arrived for the job handed over
        self.flow = Flow(transport)
        self._loop = None
        self.format = formats.Text  # replies' format: `mode json` switches it
        self.audit = audit  # an Audit, or None: then nothing here costs a thing
        self._audited = None  # (time begun, raw line) of the line being answered
        self._render_reply = self.format.reply

    @property
    def busy(self):
        """A command is running or about to (not merely waiting for the client to read)."""
        return self._job is not None and self._job is not DRAIN

    # -- input -------------------------------------------------------------------

    def add(self, raw):
        self.queue.append(raw)
        if len(self.queue) >= QUEUE_HIGH:
            self.flow.stop_reading("queue")

    def no_more_input(self):
        """The client has finished (or will be treated as finished): close when done."""
        self.finish_then_close = True
        self.flow.stop_for_good()

    def stop_with(self, error):
        """A limit was passed: answer the lines before, then ``error``, then close."""
        self.queue.append(error)  # a str among the lines' bytes
        self.closing = True
        self.flow.stop_for_good()

    def interrupt(self, reason):
        """Ctrl-C or shutdown: drop waiting lines, stop the job with an error reply."""
        self.queue.clear()
        self.flow.start_reading("queue")
        if self._running:
            if self._cancel_reason is None:  # one cancel per job, however many Ctrl-Cs
                self._cancel_reason = reason
                self.worker.cancel()
        elif self._job is not None and self._job is not DRAIN:
            self._drop_job(Outcome(error=reason))

    def shut(self):
        """Run nothing new; close now if idle, else once the current job ends."""
        self.closing = True
        self.queue.clear()
        if self._job is None:
            self.close()
        else:
            self.flow.stop_for_good()

    def lost(self):
        """The transport is gone: stop everything."""
        self.closing = True
        self._drop_job(None)
        if self.worker is not None:
            self.worker.cancel()
        self.flow.lost()

    # -- running -----------------------------------------------------------------

    def advance(self):
        """Run queued lines now, acting as the worker, until one has to wait."""
        if self._job is not None or self.transport.is_closing():
            return
        if self.queue and self.worker is None:
            self._loop = asyncio.get_running_loop()
            self.worker = self._loop.create_task(self._work())
        acting = self.queue and eager.act_as(self.worker)
        try:
            while self.queue and not self.transport.is_closing():
                if self.flow.write_paused:
                    return self._hand_over(DRAIN)
                item = self.queue.popleft()
                if len(self.queue) <= QUEUE_LOW:
                    self.flow.start_reading("queue")
                if type(item) is str:
                    self._write(self.format.error(item))
                    self.closing = True
                    break
                job = self._begin(item)
                if job is not None:
                    return self._hand_over(job)
        finally:
            if acting:
                eager.stop_acting(self.worker)
        if self.closing or self.finish_then_close:
            self.close()

    def close(self):
        """Close the connection now; nothing more runs."""
        self.closing = True  # closing may read the client's last bytes: they run nothing
        tls.close(self.transport)

    def answer_remembered(self, data):
        """The fastest lane: ``data`` is one whole line the catalog remembers
        (see Manager.begin_line), and nothing is queued or running, so its
        Call runs at once: no framing, parsing or binding.  Returns False,
        having done nothing, for anything else, which takes the general path.

        The caller vouches that the framer is at the start of a line (nothing
        half-read) and that this is not the connection's first line.
        """
        if (self._job is not None or self.queue or self.flow.write_paused or self.closing
                or data[-1:] != b"\n" or self.worker is None or self.audit is not None):
            return False
        calls = self._roster.catalog.calls  # the catalog of the moment: a restart replaces it
        call = calls.get(data[:-2] if data[-2:-1] == b"\r" else data[:-1])
        if call is None or call.command.level > self.peer.level or self.transport.is_closing():
            return False
        loop = self._loop  # a protocol callback called us: no task is running
        eager.enter_task(loop, self.worker)
        try:
            job = self._settle(self._start(call))
        finally:
            eager.leave_task(loop, self.worker)
        if job is not None:
            self._hand_over(job)
        elif self.closing:
            self.close()
        return True

    def _begin(self, raw):
        """Start one line; write its reply if done, else return the job left to do."""
        if self.audit is not None:
            self._audited = (time.time(), raw)
        return self._settle(self._answer(raw, self.peer))

    def _settle(self, outcome):
        """Write a finished reply; return the job left for the worker, or None.

        (Every line passes here, so it writes straight to the transport: its
        callers have made sure the transport is not closing.)
        """
        if type(outcome) is Outcome and outcome.stream is None:
            if outcome.mode is not None:
                self._switch(outcome.mode)
            self.transport.write(self._render_reply(outcome))
            if self._audited is not None:
                self._audit(outcome.error)
            if outcome.close or outcome.error is not None and self.peer.on_probation:
                self._after(outcome.close, outcome.error)
            return None
        return outcome  # None for a blank line, or a job for the worker

    def _switch(self, mode):
        self.format = formats.FORMATS[mode]
        self._render_reply = self.format.reply

    def _after(self, close, error):
        """Close after this reply if it asks to, or if it is an error to a
        connection that has not logged in (it gets no second chance)."""
        if close or self.peer.on_probation and error is not None:
            self.closing = True
            self.queue.clear()
            self.flow.stop_for_good()

    def _hand_over(self, job):
        self._job = job
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _drop_job(self, replacement):
        """Replace a job the worker has not started (a running one is cancelled instead)."""
        if self._running or self._job is None:
            return
        if asyncio.iscoroutine(self._job):
            self._job.close()
        self._job = replacement

    async def _work(self):
        """The worker: finishes handed-over jobs for as long as the connection lives.

        It must survive cancellations not meant to end it.  lost() cancels it
        to end it; interrupt() cancels the job in progress with a reason.  Any
        other cancellation (a command cancelling its own task) ends only the
        job in progress.  One that arrives while idle, with a job just handed
        over, was asked for by that job's first step (an asyncio.timeout()
        already past, say), so it is passed on to the job; while idle with no
        job (the loop closing down), it ends the worker.  After each job the
        task's cancel count is reset, so the next one starts clean.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        try:
            while not self.transport.is_closing():
                if self._job is None:
                    self._wakeup = loop.create_future()
                    try:
                        await self._wakeup
                    except asyncio.CancelledError:
                        if self._job is None or self.transport.is_closing():
                            raise
                        task.uncancel()
                        self._cancel_next_job = True
                    continue
                await self._finish(self._job)
                self._job = None
                while task.cancelling():
                    task.uncancel()
                self.advance()
        except (asyncio.CancelledError, ConnectionError):
            pass  # the client has gone, or the server is closing the connection
        except Exception:  # noqa: BLE001 - a bug here must not leave a silent connection
            log.exception("%s: connection worker failed", self.peer.address)
        finally:
            self.worker = None
            self.close()

    async def _finish(self, job):
        self._running = True
        try:
            if job is not DRAIN:
                if self._cancel_next_job and asyncio.iscoroutine(job):
                    asyncio.current_task().cancel()  # delivered inside the job, see _work
                self._cancel_next_job = False
                reply = job if type(job) is Outcome else await job
                if reply.mode is not None:
                    self._switch(reply.mode)
                if reply.stream is not None:
                    await self._send_stream(reply.stream)
                else:
                    self._write(self._render_reply(reply))
                    self._audit(reply.error)
                self._after(reply.close, reply.error or reply.stream and reply.stream.error)
        except asyncio.CancelledError:
            if self._cancel_reason is None and self.transport.is_closing():
                self._audit("the client went away while it ran")
                raise  # the connection is gone
            asyncio.current_task().uncancel()
            error = self._cancel_reason or errors.CANCELLED
            self._write(self.format.error(error))
            self._audit(error)
            self._after(False, error)  # an error: the end for a connection on probation
        finally:
            self._running = False
            self._cancel_reason = None
        # Outside the command: a reply already sent whole is not "interrupted".
        await self.flow.drain()

    async def _send_stream(self, stream):
        try:
            async for value in stream:
                self._write(self.format.chunk(value))
                await self.flow.drain()
        finally:
            await stream.aclose()
        self._write(self.format.end(stream.error))
        self._audit(stream.error)

    def _audit(self, error):
        if self._audited is not None:
            started, raw = self._audited
            self._audited = None
            self.audit.record(started, raw, self.peer, error)

    # -- output ------------------------------------------------------------------

    def _write(self, data):
        if not self.transport.is_closing():
            self.transport.write(data)
