"""Collectors run on their schedules with real time (short intervals): samples
named and stamped, counters as rates, a hanging or failing collector never
holding up the others.  Every wait is bounded; samples are waited for, not slept for."""

import asyncio
import logging
import math
import threading
import time

import pytest

from smanager import Collector
from smanager.metrics.collecting import CollectError, Collecting

TIMEOUT = 5
TICK = 0.05


class Samples:
    """A sink that keeps every sample and lets a test wait for them."""

    def __init__(self):
        self.got = []
        self.arrived = asyncio.Condition()

    def __call__(self, name, value, stamp):
        self.got.append((name, value, stamp))
        asyncio.get_running_loop().create_task(self._tell())

    async def _tell(self):
        async with self.arrived:
            self.arrived.notify_all()

    async def of(self, name, count):
        """The first COUNT samples of NAME, once they have come."""
        async with asyncio.timeout(TIMEOUT), self.arrived:
            await self.arrived.wait_for(lambda: len(self.named(name)) >= count)
        return self.named(name)[:count]

    def named(self, name):
        return [(value, stamp) for got, value, stamp in self.got if got == name]


class Steady(Collector):
    interval = TICK

    def collect(self):
        return {"value": 7, "flag": True}


class Totals(Collector):
    interval = TICK
    counters = {"bytes"}

    def __init__(self, totals):
        super().__init__()
        self.totals = iter(totals)

    def collect(self):
        return {"bytes": next(self.totals), "gauge": 1}


class Hangs(Collector):
    interval = TICK
    timeout = 0.1

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def collect(self):
        self.gate.wait(TIMEOUT)  # a stuck read, as a dead NFS mount gives
        return {"late": 1}


class Raises(Collector):
    interval = TICK

    def collect(self):
        raise OSError("connection refused")


class Lies(Collector):
    interval = TICK

    def collect(self):
        return {"load": "high"}


class Sleeps(Collector):
    interval = TICK
    timeout = 0.1

    async def collect(self):
        await asyncio.sleep(3600)


@pytest.fixture
async def collecting():
    sink = Samples()
    running = Collecting(sink)
    running.sink_samples = sink
    yield running
    await running.close()


async def test_samples_are_named_after_the_collector_and_stamped_one_interval_apart(collecting):
    collecting.add(Steady())
    got = await collecting.sink_samples.of("steady.value", 3)
    assert [value for value, _ in got] == [7.0, 7.0, 7.0]
    steps = [round((b - a) / TICK) for (_, a), (_, b) in zip(got, got[1:])]
    assert steps == [1, 1]
    assert (await collecting.sink_samples.of("steady.flag", 1))[0][0] == 1.0


async def test_counters_become_rates_none_first_and_none_after_a_reset(collecting):
    collecting.add(Totals([100, 110, 130, 5, 15]))
    rates = [value for value, _ in await collecting.sink_samples.of("totals.bytes", 3)]
    assert rates[0] == pytest.approx(10 / TICK, rel=1e-4)
    assert rates[1] == pytest.approx(20 / TICK, rel=1e-4)
    assert rates[2] == pytest.approx(10 / TICK, rel=1e-4)  # 5 -> 15: the reset at 5 gave none
    assert len(collecting.sink_samples.named("totals.gauge")) >= 4


async def test_a_hanging_collector_times_out_skips_its_ticks_and_holds_up_nobody(collecting):
    gate = threading.Event()
    collecting.add(Hangs(gate))
    collecting.add(Steady())
    try:
        await collecting.sink_samples.of("steady.value", 8)
        [hung] = [row for row in collecting.status() if row["name"] == "hangs"]
        assert hung["last_error"] == "timed out after 0.1 s" and hung["running"]
        assert hung["runs"] == 1 and hung["skipped"] >= 3
        stuck = [thread for thread in threading.enumerate() if thread.name == "collector hangs"]
        assert len(stuck) == 1  # never a second thread for it
    finally:
        gate.set()
    assert collecting.sink_samples.named("hangs.late") == []  # given up on: never stored


async def test_a_collector_that_raises_records_one_line_and_keeps_its_schedule(collecting, caplog):
    with caplog.at_level(logging.ERROR, logger="smanager.monitor"):
        collecting.add(Raises())
        collecting.add(Steady())
        await collecting.sink_samples.of("steady.value", 4)
    [row] = [row for row in collecting.status() if row["name"] == "raises"]
    assert row["last_error"] == "OSError: connection refused" and row["errors"] >= 2
    assert row["runs"] - row["errors"] in (0, 1)  # every run failed, one may be under way
    assert "collector raises failed" in caplog.text and "Traceback" in caplog.text


async def test_a_result_that_is_not_numbers_is_an_error_naming_the_metric(collecting):
    lies = Lies()
    lies.interval = 3600  # its own ticks stay out of the way: this test runs it by hand
    collecting.add(lies)
    with pytest.raises(KeyError):
        await collecting.collect_now("nosuch")
    assert await collecting.collect_now("lies") == {}
    assert collecting.status()[0]["last_error"] == "load: 'high' is not a number"


async def test_an_async_collector_past_its_limit_is_cancelled(collecting):
    collecting.add(Sleeps())
    async with asyncio.timeout(TIMEOUT):
        while not collecting.status()[0]["errors"]:
            await asyncio.sleep(TICK)
    row = collecting.status()[0]
    assert row["last_error"] == "timed out after 0.1 s" and not row["running"]


async def test_collect_now_runs_at_once_and_never_beside_its_own_run(collecting):
    gate = threading.Event()
    steady = Steady()
    steady.interval = 3600  # its own ticks stay out of the way: this test runs it by hand
    collecting.add(steady)
    assert await collecting.collect_now("steady") == {"steady.value": 7.0, "steady.flag": 1.0}
    collecting.add(Hangs(gate))
    try:
        async with asyncio.timeout(TIMEOUT):
            while not collecting.status()[0]["running"]:
                await asyncio.sleep(TICK / 5)
        with pytest.raises(CollectError, match="hangs is collecting already"):
            await collecting.collect_now("hangs")
    finally:
        gate.set()


async def test_a_wall_clock_jump_is_logged_once_and_collecting_goes_on(caplog):
    shift = [0.0]
    sink = Samples()
    collecting = Collecting(sink, wall=lambda: time.time() + shift[0])
    try:
        with caplog.at_level(logging.WARNING, logger="smanager.monitor"):
            collecting.add(Steady())
            await sink.of("steady.value", 2)
            shift[0] = -3600.0  # the clock set back an hour
            before = len(sink.named("steady.value"))
            await sink.of("steady.value", before + 3)
        jumps = [r.getMessage() for r in caplog.records if "jumped" in r.getMessage()]
        assert jumps == ["steady: the wall clock jumped -3600.0 s; collecting goes on"]
        stamps = [stamp for _, stamp in sink.named("steady.value")]
        assert stamps[-1] < stamps[0]  # the samples follow the wall clock
    finally:
        await collecting.close()


def test_a_nan_total_gives_no_rate():
    from smanager.metrics.collecting import _rate
    previous = {}
    assert _rate(previous, "x", 10.0, 1.0) is None
    assert _rate(previous, "x", math.nan, 2.0) is None
    assert _rate(previous, "x", 30.0, 3.0) is None
    assert _rate(previous, "x", 40.0, 4.0) == 10.0
