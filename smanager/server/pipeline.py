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
   connection's task (worker.py: a Pipeline is a Worker), and the lines
   behind it wait their turn.  So pipelined requests are answered in order,
   and one that finishes at once costs no task switch.
4. The pipeline's life is a Phase, changed only by ``_enter()``, and never
   backwards: OPEN (reading lines and answering them) -> ENDING (taking no
   more input: what is queued still runs, then the connection closes) ->
   CLOSED (nothing more runs).  A connection ends after the client
   half-closes, after a one-shot line, after a reply that closes (quit,
   kill, an error on probation), or when a limit is passed (``stop_with()``:
   its error is the last reply, after the lines before it).
"""

import collections
import enum
import time

from ..core import eager
from ..core.eager import enter_task, leave_task
from ..core.runner import Outcome
from ..wire import formats
from . import tls
from .worker import DRAIN, Worker

QUEUE_HIGH, QUEUE_LOW = 256, 64  # lines waiting before we stop reading, and resume
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


class Pipeline(Worker):
    """The queue of one connection's lines, its task (a Worker: see worker.py),
    and its backpressure (a Flow: see flow.py)."""

    def __init__(self, manager, peer, transport, audit=None, spare=None, secure=False):
        self._answer = manager.answer
        self.peer = peer
        Worker.__init__(self, transport, spare or eager.Spare())  # (sets transport)
        self.secure = secure  # the transport is TLS (asyncio's)
        self.phase = _OPEN
        self.queue = collections.deque()  # raw lines
        self._last_word = None  # a limit's error, the reply after the queue's last (stop_with)
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

    def _after_job(self):
        """From the worker, after a job: answer the lines that waited behind it
        (as advance() does, but the worker is the task), and close if that
        was the last of an ending connection."""
        self._answer_queued()
        if self.job is None and self.phase is _ENDING:
            self.close()

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
