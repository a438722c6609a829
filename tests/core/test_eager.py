"""The eager-step helpers keep asyncio's semantics: current task, timeouts, cancellation."""

import asyncio

import pytest

from smanager.core.eager import enter_task, leave_task, resume


class Done:
    def __init__(self, value):
        self.value = value


def first_step(coroutine):
    """What the runner does with a command's coroutine before any task is involved."""
    try:
        return coroutine.send(None)
    except StopIteration as stop:
        return Done(stop.value)


async def idle_task():
    """A task that waits forever: the stand-in for a connection's worker."""
    return asyncio.get_running_loop().create_task(asyncio.Event().wait())


async def finish_in(task_body):
    return await asyncio.get_running_loop().create_task(task_body)


async def test_a_coroutine_that_never_waits_is_done_at_once():
    async def quick():
        return 42

    step = first_step(quick())
    assert isinstance(step, Done) and step.value == 42


async def test_a_coroutine_that_waits_is_resumed_in_a_task():
    async def slow():
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return "late"

    coroutine = slow()
    waiting_on = first_step(coroutine)
    assert not isinstance(waiting_on, Done)
    assert await finish_in(resume(coroutine, waiting_on)) == "late"


async def test_exceptions_travel_both_ways():
    async def fails_later():
        await asyncio.sleep(0)
        raise ValueError("boom")

    coroutine = fails_later()
    waiting_on = first_step(coroutine)
    with pytest.raises(ValueError, match="boom"):
        await finish_in(resume(coroutine, waiting_on))

    async def fails_at_once():
        raise KeyError("now")

    with pytest.raises(KeyError):
        first_step(fails_at_once())


async def test_the_current_task_is_the_one_that_finishes_the_work():
    worker = await idle_task()
    seen = []

    async def command():
        seen.append(asyncio.current_task())
        async with asyncio.timeout(5):  # needs a current task
            await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        return "ok"

    loop = asyncio.get_running_loop()

    def outside_any_task():
        coroutine = command()
        enter_task(loop, worker)
        try:
            return coroutine, first_step(coroutine)
        finally:
            leave_task(loop, worker)

    future = loop.create_future()
    loop.call_soon(lambda: future.set_result(outside_any_task()))
    coroutine, waiting_on = await future
    assert seen == [worker]
    assert asyncio.current_task() is not worker
    # The worker itself would resume it; here a task stands in for the worker's step.
    worker.cancel()
    assert await finish_in(resume(coroutine, waiting_on)) == "ok"


async def test_cancelling_the_task_reaches_the_command():
    cleaned = asyncio.Event()

    async def endless():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    coroutine = endless()
    task = asyncio.get_running_loop().create_task(resume(coroutine, first_step(coroutine)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_a_timeout_around_resume_cancels_the_command():
    async def endless():
        await asyncio.sleep(3600)

    async def bounded():
        coroutine = endless()
        async with asyncio.timeout(0.01):
            await resume(coroutine, first_step(coroutine))

    with pytest.raises(TimeoutError):
        await finish_in(bounded())


async def test_closing_an_unfinished_resume_closes_the_command():
    closed = []

    async def endless():
        try:
            await asyncio.sleep(3600)
        finally:
            closed.append(True)

    coroutine = endless()
    relay = resume(coroutine, first_step(coroutine))
    relay.send(None)  # started, as a task would
    relay.close()
    assert closed == [True]
