"""The lines of one connection, answered in order.

1. Every line takes one path: it joins the queue (``add()``, or ``take()``
   for a read's worth), and ``_answer_queued()`` runs ``Manager.answer(raw,
   peer)`` for each line in turn and writes its reply (and audits it).  That
   loop runs in the callback that read the lines, once per read, acting as
   the connection's one task, its worker (see core/eager.py): a read of
   sixteen pipelined lines is one pass, with no task switch or loop
   iteration between them.
2. The replies ready by the end of a pass go out in one write, in order, at
   most COALESCE_BYTES held: one send() for a read's worth of pipelined
   lines, or for the lines that waited behind a command, not one per line.
   (A read that is not only lines holds around its whole callback: ``hold()``
   ... ``flush()``.)
3. Only a request that has to wait (a plain command's thread, an async
   command that sleeps, a stream, a full send buffer) becomes a Job for the
   worker, and the lines behind it wait their turn.  So pipelined requests
   are answered in order, and one that finishes at once costs no task switch.
4. The pipeline's life is a Phase, changed only by ``_enter()``, and never
   backwards: OPEN (reading lines and answering them) -> ENDING (taking no
   more input: what is queued still runs, then the connection closes) ->
   CLOSED (nothing more runs).  A connection ends after the client
   half-closes, after a one-shot line, after a reply that closes (quit,
   kill, an error on probation), or when a limit is passed (``stop_with()``:
   its error is the last reply, after the lines before it).
"""

import asyncio
import collections
import enum
import logging
import time
from dataclasses import dataclass

from ..core import eager
from ..core.eager import enter_task, leave_task
from ..core.runner import Outcome
from ..wire import errors, formats
from . import tls
from .flow import Flow

log = logging.getLogger("smanager.pipeline")
QUEUE_HIGH, QUEUE_LOW = 256, 64  # lines waiting before we stop reading, and resume
DRAIN = object()  # a job's work: wait until the client has read what we sent
COALESCE_BYTES = 65536  # ready replies held for one write at most: then written at once


class Phase(enum.IntEnum):
    OPEN = 0
    ENDING = 1
    CLOSED = 2


# Looked up on every read and connection (an Enum member costs 4 times a
# global: 3.11's EnumType has a __getattr__).
_OPEN, _ENDING, _CLOSED = Phase.OPEN, Phase.ENDING, Phase.CLOSED
# Every connection starts in text mode (a class's attribute is a slow lookup in 3.11).
_TEXT, _TEXT_REPLY, _TEXT_VALUE = formats.Text, formats.Text.reply, formats.Text.value


@dataclass(slots=True, eq=False)
class Job:
    """What the worker is handed: ``work`` is a coroutine that finishes a
    command, an Outcome whose stream it sends, or DRAIN."""

    work: object
    running: bool = False  # the worker is inside it: interrupt() cancels, never replaces
    cancel_reason: str | None = None  # why interrupt() cancelled it: its error reply
    cancel_on_start: bool = False  # a cancellation meant for it came before it started


class Pipeline(Flow):
    """The queue of one connection's lines, and its backpressure (a Flow: see flow.py)."""

    def __init__(self, manager, peer, transport, audit=None, spare=None, secure=False):
        self._answer = manager.answer
        self.peer = peer
        Flow.__init__(self, transport)  # (sets transport)
        self.secure = secure  # the transport is TLS (asyncio's)
        self.phase = _OPEN
        self.queue = collections.deque()  # raw lines
        self._last_word = None  # a limit's error, the reply after the queue's last (stop_with)
        self.worker = None  # the connection's task, once it needs one (see advance())
        self._spare = spare or eager.Spare()  # the server's, shared by its connections
        self._context = None  # the worker's context (contextvars): first steps run in it
        self.job = None  # the Job handed to the worker, until it is done
        self._wakeup = None  # the future an idle worker waits on
        self.format = _TEXT  # replies' format: `mode json` switches it
        self._render_reply, self._render_value = _TEXT_REPLY, _TEXT_VALUE
        self.audit = audit  # an Audit, or None: then nothing here costs a thing
        self._audited = None  # (time begun, raw line) of the line being answered
        self._held = None  # replies held for one write (rule 2); None: not holding
        self._held_bytes = 0

    @property
    def accepting(self):
        """Lines read now are taken (not ignored)."""
        return self.phase is _OPEN

    @property
    def streaming(self):
        """The job in hand sends a stream."""
        work = self.job.work if self.job is not None else None
        return type(work) is Outcome and work.stream is not None

    @property
    def busy(self):
        """A command is running or about to (not merely waiting for the client to read)."""
        return self.job is not None and self.job.work is not DRAIN

    def _enter(self, phase):
        """The one place the phase changes; it only moves forward."""
        if phase <= self.phase:
            return
        self.phase = phase
        if phase is _ENDING:
            # Reading stops in _wind_down(), and only if a job still runs: a
            # connection closed at once is better not paused first (asyncio
            # then looks for its reader twice more, at 2 us an exception).
            self.final = True  # reading is never resumed

    # -- input -------------------------------------------------------------------

    def add(self, raw):
        """A line, from a protocol callback: answered by the advance() that
        ends the callback, in turn behind what is ahead of it."""
        self.queue.append(raw)
        if len(self.queue) >= QUEUE_HIGH:
            self.stop_reading("queue")

    def take(self, lines, first=False):
        """The lines of one read, from the callback that read them: queued and
        answered in one pass (the replies ready go out in one write) -- what
        add() for each, then advance(), does, in one call (this is every
        pipelined read's path).  ``first``: the connection's first lines, which
        it answers as the spare (see _answer_now()); a later read makes it a
        session, with a task of its own."""
        queue = self.queue
        queue.extend(lines)
        if self.job is not None:  # the worker comes to them in turn
            if len(queue) >= QUEUE_HIGH:
                self.stop_reading("queue")
            return
        worker = self.worker
        if worker is None and not first:
            worker = self._adopt()
        if worker is None:
            self._answer_now()  # as the spare
        else:  # what _answer_now() does with a worker, without the call: every session's read
            loop = self._spare.loop
            enter_task(loop, worker)
            try:
                self._context.run(_answer_queued, self)
            finally:
                leave_task(loop, worker)
        if self.phase is _ENDING:
            self._wind_down()

    def finish(self):
        """The client has finished (or is treated as finished: a one-shot
        line), and every line it sent is here: answer what is queued, then
        close -- at once if nothing is left to run (most one-liners' end, so
        without the steps of advance())."""
        if self.job is not None or self.queue or self._last_word is not None:
            self._enter(_ENDING)
            self.advance()
        elif self.phase is not _CLOSED:
            self.close()

    def stop_with(self, error):
        """A limit was passed: answer the lines before, then ``error``, then close.
        A connection already ending has had its last word: nothing is added."""
        if self.phase is _OPEN:
            self._last_word = error
            self._enter(_ENDING)

    def interrupt(self, reason):
        """Ctrl-C or shutdown: drop waiting lines, stop the job with an error reply."""
        self._drop_queued()
        self.start_reading("queue")
        job = self.job
        if job is None or job.work is DRAIN:
            return
        if not job.running:
            self._replace_work(Outcome(error=reason))
        elif job.cancel_reason is None:  # one cancel per job, however many Ctrl-Cs
            job.cancel_reason = reason
            self.worker.cancel()

    def shut(self):
        """Run nothing new; close now if idle, else once the current job ends."""
        self._drop_queued()
        self._enter(_ENDING)
        self._wind_down()

    def lost(self):
        """The transport is gone: stop everything."""
        if self.phase is not _CLOSED:
            self._enter(_CLOSED)
        if self.job is not None:
            self._replace_work(None)
        if self.worker is not None:
            self.worker.cancel()
        self.fail_drain()

    def hold(self):
        """From the callback that read a chunk: hold its ready replies for flush()."""
        self._held, self._held_bytes = [], 0

    def flush(self):
        """Write the held replies in one go, and stop holding."""
        held, self._held = self._held, None
        if held and not self.transport.is_closing():
            self.transport.write(b"".join(held))  # (one reply: join returns it, uncopied)

    def close(self):
        """Close the connection now; nothing more runs."""
        if self._held:
            self.flush()  # what was answered is sent before the close
        self._enter(_CLOSED)  # closing may read the client's last bytes: they run nothing
        tls.close(self.transport, self.secure)

    # -- running -----------------------------------------------------------------

    def advance(self):
        """From a protocol callback: answer queued lines now (see _answer_now()),
        until one has to wait; close if ending."""
        if self.job is None and (self.queue or self._last_word is not None):
            self._answer_now()
        if self.phase is _ENDING:
            self._wind_down()

    def _answer_now(self):
        """Answer queued lines in this callback, acting as the worker (see
        core/eager.py).  A connection without a worker acts as the server's
        spare, and adopts it if the pass left anything on it (see eager.Spare)."""
        worker, spare, context = self.worker, self._spare, self._context
        if worker is None:
            worker = spare.get()
            counted, context = spare.count(worker), spare.context
        enter_task(spare.loop, worker)
        try:
            context.run(_answer_queued, self)  # in the worker's context, as its steps
        finally:
            leave_task(spare.loop, worker)
        if self.worker is None and not spare.untouched(worker, counted):
            self._adopt()  # something of this connection's is on it

    def _wind_down(self):
        """Ending: close now if nothing runs; else read nothing more meanwhile."""
        if self.job is None:
            self.close()
        else:
            self.stop_for_good()

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

    def _answer_queued(self):
        """Answer queued lines, in order, in one pass, until one leaves work for
        the worker.  This loop is every line's path, so a line whose reply is
        done at once (a str: most lines) costs only what it must:

        - Its reply is rendered and held right here.  What the pass holds goes
          out in one write at its end (or its caller's flush()), or every
          COALESCE_BYTES: only a write can find the client slow (write_paused)
          or gone, so only then are those looked at.
        - Reading cannot resume in a pass, so the queue's length is checked once,
          at its end (see QUEUE_HIGH).
        """
        queue, transport = self.queue, self.transport
        if transport.is_closing():
            return
        own = self._held is None  # the caller holds nothing: this pass holds, and writes
        if own:
            self._held, self._held_bytes = [], 0
        answer, peer, audit = self._answer, self.peer, self.audit
        # (Locals: an attribute holding a function is looked up the slow way.)
        render_value, held, size = self._render_value, self._held, self._held_bytes
        try:
            while queue and not self.write_paused:  # (only a write changes it: see above)
                raw = queue.popleft()
                if audit is not None:
                    self._audited = (time.time(), raw)
                outcome = answer(raw, peer)
                if type(outcome) is str:  # a text reply, done at once
                    data = render_value(outcome)
                    held.append(data)
                    size += len(data)
                    if audit is not None:
                        self._audit(None)
                    if size < COALESCE_BYTES:
                        continue
                    self._write_held()  # (which starts the count again)
                elif outcome is None:  # a blank line
                    continue
                else:
                    self._held_bytes = size
                    if self._settle(outcome):
                        return  # the worker has it, and the lines behind it
                    render_value = self._render_value  # (`mode json` changes it)
                if transport.is_closing():  # the client is gone: nothing more runs
                    return
                held, size = self._held, self._held_bytes
            self._held_bytes = size
            if self.write_paused and (queue or self._last_word is not None):
                return self._hand_over(DRAIN)  # the rest waits, as any reply would, for the client
            if self._last_word is not None:  # every line before it is answered
                error, self._last_word = self._last_word, None
                self.send(self.format.error(error))
        finally:
            if queue or self.stopped_for:  # lines wait, or reading waits for them to go
                waiting = len(queue)
                if waiting >= QUEUE_HIGH:
                    self.stop_reading("queue")
                elif waiting <= QUEUE_LOW:
                    self.start_reading("queue")  # (if stopped for it)
            if own:
                # flush(), without its is_closing(): what is held was answered with
                # the transport open, as whatever closes it in a pass (a failed
                # write, close()) first sends or drops what is held.
                held, self._held = self._held, None
                if held:
                    transport.write(b"".join(held))  # (one reply: join returns it, uncopied)

    def _settle(self, outcome):
        """A line's outcome that is not a text reply done at once: an Outcome
        done at once is held (and may end the connection); anything else is
        work for the worker.  True: this pass stops here."""
        if type(outcome) is not Outcome or outcome.stream is not None:
            self._hand_over(outcome)
            return True
        if outcome.mode is not None:
            self._switch(outcome.mode)
        self.send(self._render_reply(outcome))
        self._audit(outcome.error)  # the line ran: it is audited even if its reply is lost
        self._after(outcome.close, outcome.error)
        return False

    def _write_held(self):
        """Write what is held now (COALESCE_BYTES reached), and go on holding."""
        self.flush()
        self.hold()

    def _switch(self, mode):
        self.format = formats.FORMATS[mode]
        self._render_reply, self._render_value = self.format.reply, self.format.value

    def _after(self, close, error):
        """End after this reply if it asks to, or if it is an error to a
        connection on probation (it gets no second chance)."""
        if close or self.peer.on_probation and error is not None:
            self._drop_queued()
            self._enter(_ENDING)

    def _drop_queued(self):
        self.queue.clear()
        self._last_word = None

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
                self._answer_queued()  # as advance() does, but the worker is the task
                if self.job is None and self.phase is _ENDING:
                    self.close()
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

    def _audit(self, error):
        if self._audited is not None:
            started, raw = self._audited
            self._audited = None
            self.audit.record(started, raw, self.peer, error)

    # -- output ------------------------------------------------------------------

    def send(self, data):
        """Every byte for the client goes out here, in order (rule 2)."""
        held = self._held
        if held is None:
            if not self.transport.is_closing():
                self.transport.write(data)
            return
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= COALESCE_BYTES:  # bounded: write now, keep holding
            self._write_held()


# The pass as a plain function: context.run(_answer_queued, pipeline) makes no
# bound method, as context.run(pipeline._answer_queued) would on every read.
_answer_queued = Pipeline._answer_queued
