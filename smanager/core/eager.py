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
"""

import types
from asyncio.tasks import _enter_task as enter_task
from asyncio.tasks import _leave_task as leave_task

__all__ = ["DONE", "Steps", "enter_task", "leave_task", "resume"]
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
