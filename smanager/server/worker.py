"""The connection's task: the work a line leaves, finished in turn.

A line whose reply is not done at once (a plain command's thread, an async
command that sleeps, a stream, a full send buffer) is handed over as a Job.
The connection's worker finishes it, sends its reply, then answers the lines
that waited behind it, and waits for the next.  It is a long-lived task: the
server's spare (core/eager.py), adopted by the connection at its first Job,
its second read of lines, or a first step that left anything on the spare.
So pipelined requests are answered in order, and a line that is done at once
costs no task switch: most are never handed over.

A Worker is the half of a connection's Pipeline (pipeline.py) that runs in
that task: one object per connection holds both, as it holds its Flow (see
flow.py for why).  What it uses of the pipeline: ``_after_job()`` (the lines
that waited, and the close if the connection is ending), ``send()``,
``close()``, ``_after()`` (a reply that ends the connection), the reply's
format (``format``, ``_render_reply``, ``_switch()``), ``_audit()`` and
``peer`` (whose address a failure's log line names).
"""

import asyncio
import logging
from dataclasses import dataclass

from ..core.runner import Outcome
from ..wire import errors
from .flow import Flow

log = logging.getLogger("smanager.pipeline")
DRAIN = object()  # a job's work: wait until the client has read what we sent


@dataclass(slots=True, eq=False)
class Job:
    """What the worker is handed: ``work`` is a coroutine that finishes a
    command, an Outcome whose stream it sends, or DRAIN."""

    work: object
    running: bool = False  # the worker is inside it: interrupt() cancels, never replaces
    cancel_reason: str | None = None  # why interrupt() cancelled it: its error reply
    cancel_on_start: bool = False  # a cancellation meant for it came before it started


class Worker(Flow):
    """The job in hand and the task that finishes it (see the module text)."""

    def __init__(self, transport, spare):
        Flow.__init__(self, transport)  # (sets transport)
        self.worker = None  # the connection's task, once it needs one
        self._spare = spare  # the server's eager.Spare, shared by its connections
        self._context = None  # the worker's context (contextvars): first steps run in it
        self.job = None  # the Job handed to the worker, until it is done
        self._wakeup = None  # the future an idle worker waits on

    @property
    def streaming(self):
        """The job in hand sends a stream."""
        work = self.job.work if self.job is not None else None
        return type(work) is Outcome and work.stream is not None

    @property
    def busy(self):
        """A command is running or about to (not merely waiting for the client to read)."""
        return self.job is not None and self.job.work is not DRAIN

    def _adopt(self):
        """The spare becomes this connection's worker (made if need be)."""
        self._spare.get()
        self._context = self._spare.context
        worker = self.worker = self._spare.adopt(self._work)
        worker.add_done_callback(self._worker_ended)
        return worker

    def _worker_ended(self, task):
        """A worker cancelled before its first step ends without running _work
        (a first step's cancel() of a spare not yet started): do what _work
        does with a cancellation that comes while idle."""
        if self.worker is not task:
            return  # _work ran, and ended as it does
        self.worker = None
        if self.job is None or self.transport.is_closing():
            self.close()
        else:
            self.job.cancel_on_start = True  # the job's own first step asked for it
            self._adopt()

    def _hand_over(self, work):
        self.job = Job(work)
        if self.worker is None:
            self._adopt()  # it starts with this job
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _replace_work(self, replacement):
        """Replace the work of a job the worker has not started (None: drop the
        job).  A running one is cancelled instead."""
        job = self.job
        if job is None or job.running:
            return
        if asyncio.iscoroutine(job.work):
            job.work.close()
        if replacement is None:
            self.job = None
        else:
            job.work = replacement

    async def _work(self, cancelled=False):
        """The worker: finishes handed-over jobs for as long as the connection lives.

        It must survive cancellations not meant to end it.  lost() cancels it
        to end it; interrupt() cancels the job in progress with a reason.  Any
        other cancellation (a command cancelling its own task) ends only the
        job in progress.  One that arrives while idle (``cancelled``: also
        before it started, as the spare), with a job just handed over, was
        asked for by that job's first step (an asyncio.timeout() already
        past, say), so it is passed on to the job; while idle with no job
        (the loop closing down), it ends the worker.  After each job the
        task's cancel count is reset, so the next one starts clean.
        """
        # As adopt() made it ours (asking asyncio costs a getpid() each time).
        loop, task = self._spare.loop, self.worker
        try:
            while not self.transport.is_closing():
                if cancelled:
                    if self.job is None:
                        break
                    task.uncancel()
                    self.job.cancel_on_start = True
                    cancelled = False
                if self.job is None:
                    self._wakeup = loop.create_future()
                    try:
                        await self._wakeup
                    except asyncio.CancelledError:
                        cancelled = True
                    continue
                await self._finish(self.job)
                self.job = None
                while task.cancelling():
                    task.uncancel()
                self._after_job()
        except (asyncio.CancelledError, ConnectionError):
            pass  # the client has gone, or the server is closing the connection
        except Exception:  # noqa: BLE001 - a bug here must not leave a silent connection
            log.exception("%s: connection worker failed", self.peer.address)
        finally:
            self.worker = None
            self.close()

    async def _finish(self, job):
        job.running = True
        try:
            work = job.work
            if work is not DRAIN:
                if job.cancel_on_start and asyncio.iscoroutine(work):
                    asyncio.current_task().cancel()  # delivered inside the job, see _work
                outcome = work if type(work) is Outcome else await work
                if outcome.mode is not None:
                    self._switch(outcome.mode)
                if outcome.stream is not None:
                    await self._send_stream(outcome.stream)
                else:
                    self.send(self._render_reply(outcome))
                    self._audit(outcome.error)
                self._after(outcome.close,
                            outcome.error or outcome.stream and outcome.stream.error)
        except asyncio.CancelledError:
            if job.cancel_reason is None and self.transport.is_closing():
                self._audit("the client went away while it ran")
                raise  # the connection is gone
            asyncio.current_task().uncancel()
            error = job.cancel_reason or errors.CANCELLED
            self.send(self.format.error(error))
            self._audit(error)
            self._after(False, error)  # an error: the end for a connection on probation
        finally:
            job.running = False
        # Outside the command: a reply already sent whole is not "interrupted".
        await self.drain()

    async def _send_stream(self, stream):
        try:
            async for value in stream:
                self.send(self.format.chunk(value))
                await self.drain()
        finally:
            await stream.aclose()
        self.send(self.format.end(stream.error, stream.result))
        self._audit(stream.error)
