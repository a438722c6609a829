"""Starting and stopping one service: the hooks, in order, each bounded in time.

start:  STARTING, start(), RUNNING (or FAILED if start() raised or overran).
stop:   STOPPING, stop(), cancel background tasks, cleanup(), STOPPED.

A hook the service did not override is not called at all, so a thousand plain
services start and stop in no time.  A hook that raises is logged; stopping
always goes on to the next step.
"""

import asyncio
import inspect
import logging

from ..service import SService, StartRefused, State
from ..wire import errors
from ..wire.errors import describe_exception

log = logging.getLogger("smanager.lifecycle")


def overrides(service, hook):
    """True when the service's class replaces SService's do-nothing hook."""
    return getattr(type(service), hook) is not getattr(SService, hook)


class Refusal(str):
    """Why a start failed, when the service raised StartRefused: the server
    must not run without it."""


async def call_hook(service, hook, *args, timeout, executor=None):
    """Run one hook if overridden: async on the loop, plain in a worker thread.
    A service's own hook_timeout, when it sets one, replaces ``timeout``."""
    if not overrides(service, hook):
        return
    function = getattr(service, hook)
    async with asyncio.timeout(service.hook_timeout or timeout):
        if inspect.iscoroutinefunction(function):
            await function(*args)
        else:
            loop = asyncio.get_running_loop()
            result = await asyncio.shield(loop.run_in_executor(executor, function, *args))
            if inspect.isawaitable(result):
                await result


async def start_service(service, *, timeout, executor=None):
    """Start a service; return None, or the reason it failed as one line."""
    label = type(service).__name__
    service._change_state(State.STARTING)
    try:
        await call_hook(service, "start", timeout=timeout, executor=executor)
    except (*errors.SERVICE_FAILURES, asyncio.CancelledError) as exc:  # a failure is a report
        if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():
            raise  # the server is stopping us, not the service failing
        if isinstance(exc, StartRefused):
            reason = Refusal(str(exc))
            log.error("%s refused to start: %s", label, reason)
        else:
            reason = ("start() timed out" if isinstance(exc, TimeoutError)
                      else "start() was cancelled" if isinstance(exc, asyncio.CancelledError)
                      else describe_exception(exc))
            log.error("%s failed to start: %s", label, reason, exc_info=True)
        service._change_state(State.FAILED)
        return reason
    service._change_state(State.RUNNING)
    return None


async def stop_service(service, *, timeout, executor=None, restarting=False):
    """Stop a service, whatever its hooks do; never raises.  ``restarting``:
    a new instance takes over at once (see SService.restarting)."""
    label = type(service).__name__
    if service.state not in (State.RUNNING, State.FAILED):
        return
    service.restarting = restarting
    service._change_state(State.STOPPING)
    for step in ("stop", "background", "cleanup"):
        try:
            if step == "background":
                async with asyncio.timeout(timeout):
                    await service._cancel_background()
            else:
                await call_hook(service, step, timeout=timeout, executor=executor)
        except errors.SERVICE_FAILURES:  # stopping goes on
            log.error("%s: %s did not finish cleanly", label, step, exc_info=True)
    service._change_state(State.STOPPED)
