"""Running a coroutine's first step now, and the rest later in a task.

Most commands (``echo``, ``help``) finish without ever waiting.  Sending each
request to a task costs an event-loop iteration and a task, which is most of a
request's cost on loopback.  So a connection runs a request straight away, in
the protocol callback that read it, *on behalf of* its own long-lived task:

- ``enter_task(loop, task)`` ... ``leave_task(loop, task)`` make that task the
  current one, so a command's ``asyncio.timeout()``, ``TaskGroup`` or
  ``current_task()`` see the task that will also run the rest of it.  (This is
  what Python 3.12's eager tasks do; 3.11 has no public way, so these are
  asyncio's own _enter_task and _leave_task, which every task step uses.)
  Only from a protocol callback, where no task is running.
- ``coroutine.send(None)`` runs a coroutine's first step, up to its first real
  wait: it raises StopIteration with the result, or returns what it waits on.
- ``Steps`` does the same for one coroutine after another without that
  StopIteration, whose making and catching is a third of a trivial command's
  cost: ``steps.send(coroutine)`` returns DONE (its result in ``steps.box``)
  or what it waits on.  It runs each coroutine with ``yield from``, which
  takes a result as a plain value.  A Steps whose coroutine waited, or
  raised, is that coroutine's alone from then on.
- ``resume(coroutine, waiting_on)`` is an awaitable that, awaited in the task,
  carries the suspended coroutine (or Steps) on: it hands the future to the
  task and relays whatever the task sends or throws (a result, a cancellation).
- ``Spare`` is a task first steps run as before a connection has one of its
  own, so that a client whose commands all finish at once (a netcat
  one-liner) costs no task of its own: a task's making, and the two loop
  turns that start and end it, are a fifth of such a connection's cost.
"""

import asyncio
import contextvars
import sys
import types
import weakref
from asyncio.tasks import _enter_task as enter_task
from asyncio.tasks import _leave_task as leave_task

__all__ = ["DONE", "Spare", "Steps", "enter_task", "leave_task", "resume"]
DONE = object()  # what a Steps yields when the coroutine it runs has returned


class Steps:
    """Runs coroutines' steps, one coroutine after another (see the module text)."""

    __slots__ = ("send", "throw", "close", "box")

    def __init__(self):
        self.box = [None]  # the result of the coroutine that last returned
        generator = _steps(self.box)
        generator.send(None)
        self.send, self.throw, self.close = generator.send, generator.throw, generator.close


@types.coroutine
def _steps(box):
    while True:
        coroutine = yield DONE
        box[0] = yield from coroutine


@types.coroutine
def resume(coroutine, waiting_on):
    """Continue a coroutine (or Steps) whose first step left it suspended on
    ``waiting_on``; its result is this awaitable's."""
    try:
        while waiting_on is not DONE:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, or anything the task throws
                waiting_on = coroutine.throw(exc)
            else:
                waiting_on = coroutine.send(sent)
    except StopIteration as stop:  # a plain coroutine has returned
        return stop.value
    box = coroutine.box  # a Steps has: it keeps nothing once handed on
    value, box[0] = box[0], None
    return value


class Spare:
    """A task for first steps to run as until a connection needs one of its own.

    A connection without a task runs its first steps as the spare (from a
    protocol callback, with ``enter_task``, in the spare's ``context``),
    counting its references first (``count()``).  A pass that leaves nothing
    on it (``untouched()``) leaves it spare, for the next connection: nothing
    handed to it, no reference or weak reference to it kept, no done callback
    added, no cancellation asked of it, no new name, no context variable set.
    Otherwise the connection *adopts* it: from then on the task (and its
    context) is that connection's own, exactly as if made for it -- whatever
    a first step bound to it (an ``asyncio.timeout()``, a ``TaskGroup``, a
    stored ``current_task()``, a callback for its end, a context variable) is
    the connection's -- and the next connection gets a new spare.  Every
    spare starts from the context the Spare was made in.
    """

    __slots__ = ("loop", "task", "context", "_state", "_base")

    def __init__(self, loop=None):
        self.loop = loop  # None: the running loop, asked for once
        self.task = None
        self.context = None  # the spare's: its first steps and its steps run in it
        self._state = None  # the spare's _SpareState
        self._base = contextvars.copy_context()

    def get(self):
        """The spare task (a new one if the last was adopted, or ended)."""
        task = self.task
        if task is None or task.done():
            loop = self.loop = self.loop or asyncio.get_running_loop()
            context = self.context = self._base.copy()
            state = self._state = _SpareState(loop.create_future(), context.copy())
            task = self.task = loop.create_task(_spare(state), context=context)
            state.weakrefs, state.name = weakref.getweakrefcount(task), task.get_name()
        return task

    def count(self, task):
        """The spare's references now, before a pass: for untouched() after it."""
        return sys.getrefcount(task)

    def untouched(self, task, counted):
        """Nothing the pass did stays on the spare (see the class text).  Called
        as count() was, so the references of the call itself cancel out."""
        state = self._state
        return (sys.getrefcount(task) == counted and not task.cancelling()
                and weakref.getweakrefcount(task) == state.weakrefs
                # asyncio's own: a cancel() its uncancel() does not take back,
                # made before the task started, or after (it cancels the wait).
                and not task._must_cancel and not state.wake.cancelled()
                and not task._callbacks and task.get_name() is state.name
                and self.context == state.fresh)

    def adopt(self, run):
        """The spare is the caller's task now: it runs ``run(cancelled)``, where
        ``cancelled`` says that a cancellation reached it before it started.
        (One made before its first step ends it before ``run`` is called: the
        adopter watches for that: see server/worker.py, Worker._adopt.)"""
        task, state = self.task, self._state
        self.task = self.context = self._state = None
        state.run = run
        if not state.wake.done():  # (a first step's cancel() cancels it)
            state.wake.set_result(None)
        return task

    def close(self):
        """End the spare (the server is stopping); adopted ones are their owners'."""
        if self.task is not None:
            self.task.cancel()
            self.task = self.context = self._state = None


class _SpareState:
    """A spare as it was made (to tell what a pass left on it), and who adopted it."""

    __slots__ = ("wake", "fresh", "weakrefs", "name", "run")

    def __init__(self, wake, fresh):
        self.wake, self.fresh = wake, fresh  # fresh: a copy of its context, as made
        self.weakrefs = self.name = self.run = None


async def _spare(state):
    try:
        await state.wake
    except asyncio.CancelledError:
        if state.run is None:
            raise  # never adopted: the loop is closing
        return await state.run(True)  # the adopter's to deal with
    return await state.run(False)
