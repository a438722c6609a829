"""supervise.admission: the FIFO limit on concurrent runs, the queue bound, per-script locks."""

import asyncio
import re

import pytest

from smanager.supervise.admission import Admission, Busy

TIMEOUT = 5


async def until(condition):
    """Let the loop turn until ``condition()`` holds (bounded in turns and time)."""
    async with asyncio.timeout(TIMEOUT):
        for _ in range(10_000):
            if condition():
                return
            await asyncio.sleep(0)
    raise AssertionError("condition never held")


class Runs:
    """Test runs that enter, say so, and stay inside until let go."""

    def __init__(self, admission):
        self.admission = admission
        self.entered = asyncio.Queue()
        self.inside = 0
        self.most_inside = 0
        self.gates = {}
        self.tasks = {}

    def start(self, run_id, script="job", lock="none", since="12:03:04"):
        self.gates[run_id] = asyncio.Event()
        self.tasks[run_id] = asyncio.create_task(self._run(run_id, script, lock, since))

    async def _run(self, run_id, script, lock, since):
        async with self.admission.enter(script, lock, run_id, started_at_text=since):
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.entered.put_nowait(run_id)
            try:
                await self.gates[run_id].wait()
            finally:
                self.inside -= 1

    async def next_entered(self):
        async with asyncio.timeout(TIMEOUT):
            return await self.entered.get()

    def release(self, run_id):
        self.gates[run_id].set()

    async def refusal(self, script, lock, run_id):
        """The Busy message a run gets at once (it must not be let in or made to wait)."""
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(Busy) as refused:
                async with self.admission.enter(script, lock, run_id):
                    raise AssertionError(f"run {run_id} was let in")
        return str(refused.value)

    async def finish(self):
        for gate in self.gates.values():
            gate.set()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def test_a_hundred_runs_against_four_slots_enter_four_at_a_time_in_arrival_order():
    admission = Admission(max_concurrent=4, max_queued=100)
    runs = Runs(admission)
    for run_id in range(100):
        runs.start(run_id, script=f"script{run_id % 7}")
    order = [await runs.next_entered() for _ in range(4)]
    await until(lambda: admission.queued == 96)
    assert admission.running == 4
    for done in range(100):
        runs.release(order[done])
        if len(order) < 100:
            order.append(await runs.next_entered())
    await runs.finish()
    assert order == list(range(100))
    assert runs.most_inside == 4
    assert (admission.running, admission.queued) == (0, 0)


async def test_a_run_that_would_queue_past_max_queued_is_refused_at_once():
    admission = Admission(max_concurrent=1, max_queued=2)
    runs = Runs(admission)
    for run_id in (1, 2, 3):
        runs.start(run_id)
    await until(lambda: admission.queued == 2)
    assert await runs.refusal("job", "none", 4) == "busy: 2 runs are queued (max_queued = 2)"
    await runs.finish()


async def test_a_run_that_can_go_straight_in_is_never_refused_for_the_queue():
    admission = Admission(max_concurrent=2, max_queued=0)
    async with admission.enter("job", "none", 1):
        assert admission.running == 1
    assert admission.running == 0


async def test_lock_wait_lets_one_run_of_a_script_in_at_a_time_in_arrival_order():
    admission = Admission(max_concurrent=4)
    runs = Runs(admission)
    for run_id in (1, 2, 3):
        runs.start(run_id, script="backup", lock="wait")
    runs.start(9, script="other", lock="wait")
    assert {await runs.next_entered(), await runs.next_entered()} == {1, 9}
    await until(lambda: admission.queued == 2)
    assert admission.holder("backup") == 1
    runs.release(1)
    assert await runs.next_entered() == 2
    assert admission.holder("backup") == 2
    runs.release(2)
    assert await runs.next_entered() == 3
    runs.release(3)
    await runs.finish()
    assert admission.holder("backup") is None
    assert runs.most_inside == 2


async def test_runs_waiting_for_a_lock_count_against_max_queued():
    admission = Admission(max_concurrent=4, max_queued=1)
    runs = Runs(admission)
    runs.start(1, lock="wait")
    runs.start(2, lock="wait")
    await until(lambda: admission.queued == 1)
    assert await runs.refusal("job", "wait", 3) == "busy: 1 runs are queued (max_queued = 1)"
    await runs.finish()


async def test_lock_fail_refuses_a_second_run_naming_the_holder_and_its_start():
    admission = Admission()
    runs = Runs(admission)
    runs.start(41, script="deploy", lock="fail", since="12:03:04")
    assert await runs.next_entered() == 41
    assert await runs.refusal("deploy", "fail", 42) == "busy: run 41 since 12:03:04"
    async with admission.enter("another", "fail", 43):
        pass
    runs.release(41)
    await runs.finish()
    async with admission.enter("deploy", "fail", 44):
        assert admission.holder("deploy") == 44


async def test_lock_fail_refuses_while_the_holder_still_waits_for_a_slot():
    admission = Admission(max_concurrent=1)
    runs = Runs(admission)
    runs.start(1, script="busy-slot")
    runs.start(41, script="deploy", lock="fail")
    await until(lambda: admission.queued == 1)
    assert await runs.refusal("deploy", "fail", 42) == "busy: run 41 since 12:03:04"
    await runs.finish()


async def test_the_holders_start_defaults_to_the_local_time_it_entered():
    admission = Admission()
    async with admission.enter("deploy", "fail", 7):
        refused = await Runs(admission).refusal("deploy", "fail", 8)
    assert re.fullmatch(r"busy: run 7 since \d\d:\d\d:\d\d", refused)


async def test_cancelled_waiters_leave_the_queue_without_leaking_a_slot_or_a_lock():
    admission = Admission(max_concurrent=4)
    runs = Runs(admission)
    for run_id in range(4):
        runs.start(run_id)
    for run_id in range(4, 10):     # 4 takes the lock and waits for a slot, the rest for the lock
        runs.start(run_id, script="locked", lock="wait")
    assert {await runs.next_entered() for _ in range(4)} == {0, 1, 2, 3}
    await until(lambda: admission.queued == 6)
    for run_id in (4, 5, 7, 9):     # 4's leaving skips 5, already cancelled, for 6
        runs.tasks[run_id].cancel()
    await until(lambda: admission.queued == 2)
    assert admission.holder("locked") == 6
    for run_id in range(4):
        runs.release(run_id)
    assert await runs.next_entered() == 6
    runs.release(6)
    assert await runs.next_entered() == 8
    await runs.finish()
    assert all(runs.tasks[run_id].cancelled() for run_id in (4, 5, 7, 9))
    assert (admission.running, admission.queued, admission.holder("locked")) == (0, 0, None)
    again = Runs(admission)
    for run_id in range(20, 24):
        again.start(run_id)
    assert {await again.next_entered() for _ in range(4)} == {20, 21, 22, 23}
    await again.finish()


@pytest.mark.parametrize("cancelled", ["before", "after"])
async def test_a_slot_freed_as_its_first_waiter_is_cancelled_goes_to_the_next(cancelled):
    admission = Admission(max_concurrent=1)
    runs = Runs(admission)
    first = admission.enter("job", "none", 1)
    await first.__aenter__()
    runs.start(2)
    runs.start(3)
    await until(lambda: admission.queued == 2)
    if cancelled == "before":
        runs.tasks[2].cancel()
    await first.__aexit__(None, None, None)    # frees the slot; run 2 has not run since
    if cancelled == "after":
        runs.tasks[2].cancel()
    assert await runs.next_entered() == 3
    await runs.finish()
    assert runs.tasks[2].cancelled()
    assert (admission.running, admission.queued) == (0, 0)


@pytest.mark.parametrize("cancelled", ["before", "after"])
async def test_a_lock_freed_as_its_first_waiter_is_cancelled_goes_to_the_next(cancelled):
    admission = Admission()
    runs = Runs(admission)
    first = admission.enter("job", "wait", 1)
    await first.__aenter__()
    runs.start(2, lock="wait")
    runs.start(3, lock="wait")
    await until(lambda: admission.queued == 2)
    if cancelled == "before":
        runs.tasks[2].cancel()
    await first.__aexit__(None, None, None)
    if cancelled == "after":
        runs.tasks[2].cancel()
    assert await runs.next_entered() == 3
    assert admission.holder("job") == 3
    await runs.finish()
    assert runs.tasks[2].cancelled()
    assert (admission.running, admission.queued, admission.holder("job")) == (0, 0, None)


async def test_an_exception_inside_releases_the_slot_and_the_lock():
    admission = Admission(max_concurrent=1)
    with pytest.raises(RuntimeError):
        async with admission.enter("deploy", "fail", 1):
            raise RuntimeError("script blew up")
    assert (admission.running, admission.holder("deploy")) == (0, None)
    async with admission.enter("deploy", "fail", 2):
        assert admission.running == 1


async def test_an_unknown_lock_mode_is_refused():
    with pytest.raises(ValueError, match="lock must be one of none, wait, fail"):
        async with Admission().enter("job", "True", 1):
            pass


async def test_a_higher_limit_lets_the_waiting_runs_in_first_in_arrival_order():
    admission = Admission(max_concurrent=1)
    runs = Runs(admission)
    for run_id in (1, 2, 3):
        runs.start(run_id)
    assert await runs.next_entered() == 1
    await until(lambda: admission.queued == 2)
    admission.set_limits(3, 100)
    assert [await runs.next_entered(), await runs.next_entered()] == [2, 3]
    runs.start(4)
    await until(lambda: admission.queued == 1)  # the newcomer waits: all three slots are taken
    runs.release(1)
    assert await runs.next_entered() == 4
    await runs.finish()


async def test_a_lower_limit_retires_slots_as_runs_leave_until_within_it():
    admission = Admission(max_concurrent=3)
    runs = Runs(admission)
    for run_id in (1, 2, 3, 4):
        runs.start(run_id)
    assert sorted([await runs.next_entered() for _ in range(3)]) == [1, 2, 3]
    admission.set_limits(1, 100)
    runs.release(1)
    runs.release(2)
    await until(lambda: runs.inside == 1)
    assert admission.queued == 1 and admission.running == 1  # 3 alone: run 4 still waits
    runs.release(3)
    assert await runs.next_entered() == 4
    await runs.finish()
    assert admission.running == 0
