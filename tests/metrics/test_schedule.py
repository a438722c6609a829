"""The collector schedule, driven with numbers for both clocks (no real time)."""

import os
import subprocess
import sys

import pytest

from smanager.metrics.schedule import ClockWatch, Schedule, offset_of

INTERVALS = [0.5, 1, 10, 60, 3600]


def on_grid(moment, schedule):
    steps = (moment - schedule.offset) / schedule.interval
    return abs(steps - round(steps)) < 1e-6


def run_ticks(schedule, now, count, lag=0.0, duration=0.0):
    """Drive the loop COUNT wake-ups from monotonic NOW; each wake-up comes LAG late,
    each run lasts DURATION.  Returns the monotonic times runs started."""
    started = []
    tick = schedule.first_tick(now)
    for _ in range(count):
        now = tick + lag
        if schedule.due(now):
            schedule.start(now)
            started.append(now)
            schedule.finish(now + duration)
        tick = schedule.next_tick(now)
    return started


def test_offsets_are_the_same_in_python_processes_with_different_hash_seeds():
    code = "from smanager.metrics.schedule import offset_of; print(repr(offset_of('cache', 10)))"
    seen = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=30, check=True, cwd=os.getcwd())
        seen.add(out.stdout.strip())
    assert seen == {repr(offset_of("cache", 10))}


@pytest.mark.parametrize("interval", INTERVALS)
def test_two_names_get_different_offsets_within_the_first_tenth(interval):
    cpu, mem = offset_of("cpu", interval), offset_of("mem", interval)
    assert cpu != mem
    assert 0 <= cpu < interval / 10 and 0 <= mem < interval / 10
    assert Schedule("cpu", interval).offset == cpu


def test_ticks_fall_on_the_offset_plus_multiples_of_ten():
    schedule = Schedule("load", 10)
    offset = offset_of("load", 10)
    assert schedule.first_tick(1234.5) == pytest.approx(offset + 1240)
    assert schedule.next_tick(offset + 1240) == pytest.approx(offset + 1250)
    assert schedule.next_tick(offset + 1249.9) == pytest.approx(offset + 1250)


@pytest.mark.parametrize("interval", INTERVALS)
def test_runs_start_on_aligned_ticks_one_interval_apart_whatever_the_interval(interval):
    schedule = Schedule("net", interval)
    now = 987_654.321  # about 11 days of uptime
    started = run_ticks(schedule, now, 50)
    assert len(started) == 50 and schedule.runs == 50 and schedule.skipped == 0
    assert all(on_grid(moment, schedule) for moment in started)
    assert started[0] >= now and started[0] - now < interval
    gaps = {round((b - a) / interval, 6) for a, b in zip(started, started[1:])}
    assert gaps == {1.0}


def test_a_slow_run_does_not_make_the_schedule_drift():
    schedule = Schedule("disk", 10)
    started = run_ticks(schedule, 0.0, 20, lag=0.3, duration=4.0)
    assert all(on_grid(moment - 0.3, schedule) for moment in started)
    assert started[-1] - started[0] == pytest.approx(190)


def test_a_tick_while_the_last_run_is_still_going_is_skipped_and_counted():
    schedule = Schedule("redis", 10)
    tick = schedule.first_tick(0.0)
    assert schedule.due(tick)
    schedule.start(tick)  # this run hangs for 25 s
    for _ in range(2):
        tick = schedule.next_tick(tick)
        assert not schedule.due(tick)
    schedule.finish(tick + 5)
    tick = schedule.next_tick(tick)
    assert schedule.due(tick)
    assert (schedule.runs, schedule.skipped) == (1, 2)
    assert schedule.last_duration == pytest.approx(25)


def test_an_early_wakeup_or_a_second_due_does_not_start_a_second_run():
    schedule = Schedule("mem", 10)
    tick = schedule.first_tick(100.0)
    assert not schedule.due(tick - 0.01)
    assert schedule.due(tick)
    assert not schedule.due(tick + 0.5)
    assert schedule.skipped == 0


def test_a_one_hour_pause_yields_one_run_and_counts_the_missed_ticks():
    schedule = Schedule("cpu", 10)
    tick = schedule.first_tick(0.0)
    assert schedule.due(tick)
    schedule.start(tick)
    schedule.finish(tick + 1)
    tick = schedule.next_tick(tick)
    woke = tick + 3600 + 0.2  # the machine was suspended for an hour
    assert schedule.due(woke)
    schedule.start(woke)
    schedule.finish(woke + 1)
    assert not schedule.due(woke + 1)
    following = schedule.next_tick(woke + 1)
    assert following == pytest.approx(tick + 3610)
    assert (schedule.runs, schedule.skipped) == (2, 360)


def test_next_tick_after_a_pause_is_the_next_future_one_and_counts_the_rest():
    schedule = Schedule("cpu", 10)
    tick = schedule.first_tick(0.0)
    woke = tick + 3600 + 0.2  # slept through every tick from the first one on
    assert schedule.next_tick(woke) == pytest.approx(tick + 3610)
    assert schedule.skipped == 361
    assert schedule.next_tick(woke) == pytest.approx(tick + 3610)
    assert schedule.skipped == 361


def test_monitor_list_counters_record_the_last_run():
    schedule = Schedule("tcp", 60)
    run_ticks(schedule, 500.0, 3, lag=0.1, duration=2.5)
    assert schedule.runs == 3 and not schedule.running
    assert on_grid(schedule.last_run_started - 0.1, schedule)
    assert schedule.last_duration == pytest.approx(2.5)


@pytest.mark.parametrize("interval", INTERVALS)
def test_stamps_are_the_wall_time_of_the_tick_on_the_wall_grid(interval):
    schedule = Schedule("load", interval)
    skew = 1_700_000_000.0 + 0.5 * interval  # wall - monotonic right on a rounding edge
    stamps = []
    tick = schedule.first_tick(5000.0)
    for jitter in [0.0, 1e-4, -1e-4, 0.0] * 5:
        now = tick + 0.02 * interval  # the loop wakes a little late
        assert schedule.due(now)
        schedule.start(now)
        stamps.append(schedule.stamp(now + skew + jitter * interval))
        schedule.finish(now)
        tick = schedule.next_tick(now)
    assert all(on_grid(stamp, schedule) for stamp in stamps)
    gaps = {round((b - a) / interval, 6) for a, b in zip(stamps, stamps[1:])}
    assert gaps == {1.0}
    assert abs(stamps[0] - (5000.0 + skew)) <= interval * 1.01


def test_a_wall_clock_jump_back_and_forward_is_reported_once_each():
    watch = ClockWatch(tolerance=10)
    wall = 1_700_000_000.0
    assert watch.feed(0.0, wall) is None
    assert watch.feed(10.0, wall + 10.004) is None  # NTP-sized drift is no jump
    assert watch.feed(20.0, wall + 20 - 3600) == pytest.approx(-3600)
    assert watch.feed(30.0, wall + 30 - 3600) is None
    assert watch.feed(40.0, wall + 40 - 3600) is None
    assert watch.feed(50.0, wall + 50 + 69) == pytest.approx(3669)
    assert watch.feed(60.0, wall + 60 + 69) is None


def test_stamps_follow_a_wall_clock_jump_and_stay_aligned_while_ticks_go_on():
    schedule = Schedule("cpu", 10)
    watch = ClockWatch(schedule.interval)
    wall_minus_monotonic = 1_700_000_000.0
    reports, stamps, started = [], [], []
    tick = schedule.first_tick(0.0)
    for step in range(12):
        if step == 4:
            wall_minus_monotonic -= 3600  # the clock is set back an hour
        if step == 8:
            wall_minus_monotonic += 7213  # then forward two hours and a bit
        now = tick + 0.01
        wall = now + wall_minus_monotonic
        jump = watch.feed(now, wall)
        if jump is not None:
            reports.append(round(jump))
        assert schedule.due(now)
        schedule.start(now)
        started.append(now)
        stamps.append(schedule.stamp(wall))
        schedule.finish(now)
        tick = schedule.next_tick(now)
    assert reports == [-3600, 7213]
    assert schedule.runs == 12 and schedule.skipped == 0
    assert all(on_grid(stamp, schedule) for stamp in stamps)
    assert all(abs(stamp - (moment - 0.01 + skew)) <= 5.1 for stamp, moment, skew in zip(
        stamps, started, [1.7e9] * 4 + [1.7e9 - 3600] * 4 + [1.7e9 + 3613] * 4))
    assert stamps[3] - stamps[0] == pytest.approx(30)
    assert stamps[4] - stamps[3] == pytest.approx(10 - 3600)
    assert stamps[8] - stamps[7] == pytest.approx(10 + 7210)


def test_a_schedule_refuses_an_interval_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        Schedule("cpu", 0)
