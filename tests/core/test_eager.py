"""The eager-step helpers keep asyncio's semantics: current task, timeouts, cancellation;
Steps run first steps one after another, and hand themselves on when one waits."""

import asyncio
from types import SimpleNamespace

import pytest

from smanager.auth.levels import Level
from smanager.core.eager import (
    DONE,
    Spare,
    Steps,
    enter_task,
    leave_task,
    resume,
)
from smanager.core.runner import Call, Runner
from smanager.core.signature import Kind


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


def started_plain(coroutine):
    return coroutine, first_step(coroutine)


def started_in_steps(coroutine):
    steps = Steps()
    return steps, steps.send(coroutine)


@pytest.mark.parametrize("start", [started_plain, started_in_steps])
async def test_closing_an_unfinished_resume_closes_the_command(start):
    closed = []

    async def endless():
        try:
            await asyncio.sleep(3600)
        finally:
            closed.append(True)

    relay = resume(*start(endless()))
    relay.send(None)  # started, as a task would
    relay.close()
    assert closed == [True]


# -- Steps: first steps one after another, without a StopIteration each -------------


async def test_steps_run_coroutine_after_coroutine_and_keep_each_result():
    async def double(n):
        return 2 * n

    steps = Steps()
    for n in range(3):
        assert steps.send(double(n)) is DONE
        assert steps.box[0] == 2 * n


async def test_steps_whose_coroutine_waits_are_resumed_to_its_result():
    async def later(value):
        await asyncio.sleep(0)
        return value

    steps = Steps()
    waiting_on = steps.send(later("late"))
    assert waiting_on is not DONE
    assert await finish_in(resume(steps, waiting_on)) == "late"
    assert steps.box == [None]  # the result is handed on, not kept


async def test_a_failure_in_a_first_step_comes_out_of_send_and_ends_the_steps():
    async def fails():
        raise KeyError("now")

    async def fine():
        return 1

    steps = Steps()
    with pytest.raises(KeyError):
        steps.send(fails())
    coroutine = fine()
    with pytest.raises(StopIteration):  # spent: the runner makes new Steps after a failure
        steps.send(coroutine)
    coroutine.close()


async def test_a_first_step_that_runs_a_command_of_its_own_gets_steps_of_its_own():
    """The runner's Steps are taken while a first step runs: a nested first step (a command
    that runs another at once) must not find them busy, and the outer result is not mixed up."""
    runner = Runner(executor=None, default_timeout=1.0)
    command = SimpleNamespace(kind=Kind.ASYNC, secret=False, name="x", toplevel=True,
                              level=Level.READ)

    async def inner():
        return "inner"

    async def outer():
        nested = runner.start(Call(None, command, None, inner))
        return f"outer saw {nested}"  # a str done at once comes as it is

    for _ in range(2):  # and again, with the Steps the first round handed back
        assert runner.start(Call(None, command, None, outer)) == "outer saw inner"


# -- Spare: the task first steps run as until a connection needs its own ----------


async def test_a_spare_stays_the_same_task_until_it_is_adopted():
    spare = Spare()
    task = spare.get()
    assert spare.get() is task and not task.done()
    ran = []

    async def run(cancelled):
        ran.append((asyncio.current_task(), cancelled))
        return "its own now"

    assert spare.adopt(run) is task
    assert await asyncio.wait_for(task, 1) == "its own now"
    assert ran == [(task, False)]
    fresh = spare.get()
    assert fresh is not task
    fresh.cancel()


async def test_a_cancellation_that_reached_the_spare_first_is_handed_to_its_adopter():
    spare, ran = Spare(), []
    task = spare.get()
    await asyncio.sleep(0)  # the spare waits to be adopted
    task.cancel()  # as a first step's current_task().cancel() would

    async def run(cancelled):
        ran.append(cancelled)
        asyncio.current_task().uncancel()

    spare.adopt(run)
    await asyncio.wait_for(task, 1)
    assert ran == [True] and not task.cancelled()


async def test_a_spare_cancelled_before_anyone_adopted_it_ends_and_is_replaced():
    spare = Spare()
    task = spare.get()
    await asyncio.sleep(0)
    task.cancel()  # the loop closing down
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert spare.get() is not task
