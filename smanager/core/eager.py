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
- ``resume(coroutine, waiting_on)`` is an awaitable that, awaited in the task,
  carries the suspended coroutine on: it hands the future to the task and
  relays whatever the task sends or throws (a result, a cancellation).
"""

import types
from asyncio.tasks import _enter_task as enter_task
from asyncio.tasks import _leave_task as leave_task

__all__ = ["enter_task", "leave_task", "resume"]


@types.coroutine
def resume(coroutine, waiting_on):
    """Continue a coroutine whose first step left it suspended on ``waiting_on``."""
    try:
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, or anything the task throws
                waiting_on = coroutine.throw(exc)
            else:
                waiting_on = coroutine.send(sent)
    except StopIteration as stop:
        return stop.value
