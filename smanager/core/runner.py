"""Running one resolved command, whatever it does, and turning that into an Outcome.

- ``async def`` runs on the loop.  Its first step runs at once (most commands
  finish there); if it has to wait, the rest runs under the time limit.
- ``def`` runs in a worker thread, so it cannot stall other clients.  A
  service's plain commands run one at a time unless it sets ``concurrent``; a
  command that overruns its limit keeps its service's turn until its thread
  really ends, so the "one at a time" promise holds even then.
- An async generator becomes a Stream: each wait for the next chunk is bounded
  by the time limit, and closing the stream closes the generator.

Every failure becomes ``Outcome(error=...)``; tracebacks go to the log only.
"""

import asyncio
import functools
import logging
import time
from dataclasses import dataclass

from ..service import State
from ..wire import errors
from ..wire.protocol import Final
from . import eager, helptext
from .signature import Kind

log = logging.getLogger("smanager.runner")


@dataclass(slots=True)
class Outcome:
    """The outcome of one request: a value or an error, or a stream of chunks."""

    value: object = None
    error: str | None = None
    close: bool = False  # close the connection once this reply is sent
    stream: object = None
    mode: str | None = None  # switch the connection's reply format, from this reply on

    @property
    def ok(self):
        return self.error is None


class Stream:
    """The chunks of a streaming command, as produced; ``error`` is set if it
    failed, or if its service stopped it (see end())."""

    def __init__(self, generator, timeout, label, service=None, secret=False):
        self._generator = generator
        self.timeout = timeout
        self.label = label
        self.secret = secret  # its command takes secrets: see _failure
        self.error = None
        self.result = None  # the value a Final chunk ended it with
        self._ended = None  # why end() was called
        self._waiting = None  # the task waiting in __anext__ for the next chunk
        # Its service's ``streams`` hold it from its first chunk until it closes (a
        # stream dropped before it began, by Ctrl-C or a lost client, is never there).
        self._service = service

    def __aiter__(self):
        return self

    def end(self, why):
        """Its service is stopping: the stream stops at once (if it is waiting
        for a chunk) or before its next chunk, with ``why`` as its last line."""
        if self._generator is not None and self._ended is None:
            self._ended = why
            if self._waiting is not None:
                self._waiting.cancel()

    async def __anext__(self):
        if self._generator is None:
            raise StopAsyncIteration
        service = self._service
        if service is not None and self not in service.streams:  # its first chunk
            state = service.instance.state
            if state is not _RUNNING:  # stopped while the stream waited its turn
                self._ended = f"{service.name} is {state.value}"
            service.streams.add(self)
        if self._ended is not None:
            await self._stop(f"{self.label} ended: {self._ended}")
        self._waiting = asyncio.current_task()
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                value = await anext(self._generator)
        except StopAsyncIteration:
            self._drop()
            raise
        except _CAUGHT as exc:  # a failing stream ends with an error line
            if self._ended is not None and isinstance(exc, asyncio.CancelledError):
                asyncio.current_task().uncancel()  # end() cancelled it: not the client
                await self._stop(f"{self.label} ended: {self._ended}")
            _reraise_real_cancellation(exc)
            await self._stop(_failure(exc, deadline, self.label, self.timeout, self._service,
                                      self.secret))
        finally:
            self._waiting = None
        if type(value) is Final:  # the stream's last word: no chunk, its reply's value
            self.result = value.value
            await self.aclose()
            raise StopAsyncIteration
        return value

    async def _stop(self, error):
        self.error = error
        await self.aclose()
        raise StopAsyncIteration from None

    def _drop(self):
        self._generator = None
        if self._service is not None:
            self._service.streams.discard(self)

    async def aclose(self):
        generator = self._generator
        self._drop()
        if generator is not None:
            try:
                await generator.aclose()
            except errors.SERVICE_FAILURES:
                log.exception("%s: error while closing its stream", self.label)


class Call:
    """A request bound to its command: ready to run, any number of times.

    It depends only on the line and the catalog (unless it carries a
    session), so the catalog may keep it for the next identical line.
    (Slots, not a NamedTuple: 3.11 specialises reading a slot, not a field.)
    """

    __slots__ = ("service", "command", "instance", "invoke", "rank")

    def __init__(self, service, command, instance, invoke):
        self.service = service  # Loaded, or None for a built-in
        self.command = command
        self.instance = instance
        self.invoke = invoke  # the command's function with its instance and arguments
        self.rank = command.level._value_  # the level it needs, as a plain int (compared fast)

    @property
    def label(self):
        if self.service is None or self.command.toplevel:
            return self.command.name
        return f"{self.service.name} {self.command.name}"


class Runner:
    """Binds and runs commands; owns the worker threads for plain commands."""

    def __init__(self, executor, default_timeout):
        self.executor = executor
        self.default_timeout = default_timeout
        self._steps = None  # the eager.Steps first steps run in, while none waits

    def bind(self, target, instance, session):
        """A Target's words bound to its command: a Call, or an Outcome with the error."""
        service, command = target.service, target.command
        try:
            args, kwargs = command.bind(target.words, session)
        except errors.ArgumentError as exc:
            usage = helptext.usage(command, service and service.name)
            return Outcome(error=errors.bad_arguments(exc, usage))
        return Call(service, command, instance,
                    functools.partial(command.function, instance, *args, **kwargs))

    def _timeout(self, call):
        """The call's time limit, read when it runs: a service may change its own."""
        if call.service is None:
            return None  # built-ins (help, restart) are ours and bound their own work
        limit = call.service.timeout
        return self.default_timeout if limit is None else limit

    def start(self, call):
        """Run a Call: its Outcome if it is done at once (a str value as it is),
        else a coroutine that finishes it (awaited by the connection's task;
        see eager.py)."""
        service, command = call.service, call.command
        if service is not None and call.instance._state is not _RUNNING:
            return Outcome(error=errors.not_running(service.name, call.instance.state.value))
        kind, invoke = command.kind, call.invoke
        if kind is _ASYNC:
            # Its first step, at once (see eager.py).  The Steps are taken while
            # it runs: a first step that starts a command of its own gets others.
            steps, self._steps = self._steps or eager.Steps(), None
            send = steps.send  # (steps.send(...) would be a method lookup that fails, each time)
            try:
                waiting_on = send(invoke())  # (a call its signature refuses raises)
            except _CAUGHT as exc:  # nothing cancels a first step: a CancelledError is its own
                return Outcome(error=_failure(exc, None, call.label, None, service, command.secret))
            if waiting_on is not _DONE:
                return self._resumed(steps, waiting_on, call)  # the Steps are its own now
            self._steps = steps
            box = steps.box
            value, box[0] = box[0], None
            # A str (most replies) is passed on as it is (see Manager.answer).
            return value if type(value) is str or type(value) is Outcome else Outcome(value)
        if kind is Kind.BLOCKING:
            return self._in_thread(call.invoke, call)
        try:
            generator = call.invoke()
        except _CAUGHT as exc:
            return Outcome(error=_failure(exc, None, call.label, None, service, command.secret))
        return Outcome(stream=Stream(generator, self._timeout(call), call.label, service,
                                     bool(command.secret)))

    async def _resumed(self, steps, waiting_on, call):
        deadline, timeout = None, self._timeout(call)
        try:
            async with asyncio.timeout(timeout) as deadline:
                value = await eager.resume(steps, waiting_on)
        except _CAUGHT as exc:  # every failure is a reply
            _reraise_real_cancellation(exc)
            return Outcome(error=_failure(exc, deadline, call.label, timeout, call.service,
                                          call.command.secret))
        return _as_outcome(value)

    async def _in_thread(self, function, call):
        turn = call.service and call.service.turn
        if turn is not None and turn.left is not None:  # a thread left running has it
            return Outcome(error=errors.still_busy(call.service.name, turn.holder.label, turn.left,
                                                   turn.running_for()))
        timeout = self._timeout(call)
        deadline, waiting, future = None, False, None
        try:
            async with asyncio.timeout(timeout) as deadline:
                if turn is not None:
                    waiting = True
                    await turn.lock.acquire()
                    waiting = False
                    turn.taken(call)
                try:
                    future = asyncio.get_running_loop().run_in_executor(self.executor, function)
                except BaseException:
                    if turn is not None:
                        turn.release()
                    raise
                future.add_done_callback(functools.partial(_thread_done, turn))
                # shield: if we stop waiting (time limit, Ctrl-C), the thread still
                # runs, and keeps its service's turn until it really ends.
                value = await asyncio.shield(future)
        except _CAUGHT as exc:  # every failure is a reply
            if turn is not None and future is not None and not future.done():
                turn.left = "timed out" if deadline.expired() else "interrupted"
            _reraise_real_cancellation(exc)
            if waiting and deadline.expired():
                return Outcome(error=errors.busy(call.label, timeout))
            return Outcome(error=_failure(exc, deadline, call.label, timeout, call.service,
                                          call.command.secret))
        return _as_outcome(value)


_CAUGHT = (*errors.SERVICE_FAILURES, asyncio.CancelledError)
_RUNNING, _ASYNC, _DONE = State.RUNNING, Kind.ASYNC, eager.DONE  # looked up on every request


def _reraise_real_cancellation(exc):
    """Ctrl-C, shutdown or a lost client cancel our task: let that through.  A
    CancelledError a command raised by itself (say, from awaiting a task that
    someone else cancelled) is just its failure."""
    if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():
        raise exc


def _as_outcome(value):
    return value if isinstance(value, Outcome) else Outcome(value)


def _thread_done(turn, future):
    if turn is not None:
        turn.release()
    if not future.cancelled():
        future.exception()  # retrieved here, so an abandoned failure is not reported twice


def _failure(exc, deadline, label, timeout, service=None, secret=False):
    """A command's failure as its error line; its service keeps the last one for
    status, without its text if the command takes secrets (it may quote one)."""
    if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
        error = errors.timed_out(label, timeout)
    else:
        if not isinstance(exc, errors.CommandError):
            log.error("%s raised", label, exc_info=exc)
        error = errors.failed(label, exc)
    if service is not None:
        service.last_error = (time.time(), f"{label} failed" if secret else errors.one_line(error))
    return error
