"""Running collectors on their schedules and handing their samples on.

Rules:

1. ``Collecting(sink)``: ``sink(name, value, stamp)`` takes every sample, named
   ``COLLECTOR.metric``, stamped with the wall-clock time of its tick
   (schedule.py rule 5).  ``add(collector)`` starts its loop, ``remove(name)``
   ends it; names are unique.
2. Each due tick starts the run as a task of its own, so a run that hangs never
   delays its collector's next tick check, nor any other collector.  A plain
   ``collect()`` runs in a daemon thread of its own (not the server's executor,
   which blocking commands share, and never a thread that would keep the
   process from exiting); an ``async def`` one on the loop.
3. Past ``time_limit`` the run is given up and an error recorded ("timed out
   after 5 s").  A thread cannot be stopped: its collector stays running until
   the thread returns, so its ticks are skipped and counted, and no collector
   ever has two threads.  An exception is an error too, logged with its
   traceback, shown as one line; so is a result that is not {name: number}.
4. Counters (a metric named in ``counters``, or whose last dotted part is:
   ``eth0.rx_bytes`` by ``rx_bytes``) become rates per second between two
   consecutive samples of the metric: none for the first, none when the total went down (what counts it
   restarted), none when the stamp did not move on.  Other values are floats
   (True is 1.0).  A NaN is kept: it says the metric could not be read.
5. ``collect_now(name)`` runs one collector at once (``monitor collect``),
   never beside its own run, its samples stamped when it ran (off the tick
   grid); it returns what was handed to the sink.
6. A jump of the wall clock against the monotonic one is logged once, and
   collection goes on (ClockWatch).
7. ``status()``: per collector, for ``monitor list``: interval, last run
   (wall), its duration, runs, skipped ticks, errors, the last error and when.
"""

import asyncio
import inspect
import logging
import math
import threading
import time

from .schedule import ClockWatch, Schedule

log = logging.getLogger("smanager.monitor")


class CollectError(Exception):
    """A run that gave nothing: timed out, raised, or returned something else; one line."""


class _Entry:
    """One collector with its schedule, its loop task and what it last did."""

    def __init__(self, collector):
        self.collector = collector
        self.schedule = Schedule(collector.name, float(collector.interval))
        self.clock = ClockWatch(float(collector.interval))
        self.loop_task = None
        self.previous = {}  # counter metric -> (total, stamp)
        self.last_run = None  # wall time
        self.errors = 0
        self.last_error = None  # (wall time, text)


class Collecting:
    """Every collector's loop (the rules above)."""

    def __init__(self, sink, *, wall=time.time):
        self.sink = sink
        self.wall = wall
        self.entries = {}  # name -> _Entry

    def add(self, collector):
        if collector.name in self.entries:
            raise ValueError(f"a collector named {collector.name} is already collecting")
        entry = self.entries[collector.name] = _Entry(collector)
        entry.loop_task = asyncio.get_running_loop().create_task(
            self._loop(entry), name=f"collector {collector.name}")

    def remove(self, name):
        entry = self.entries.pop(name)
        entry.loop_task.cancel()

    async def close(self):
        tasks = [entry.loop_task for entry in self.entries.values()]
        self.entries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def collect_now(self, name):
        """Run collector NAME now (rule 5); the samples given to the sink."""
        entry = self.entries[name]
        if entry.schedule.running:
            raise CollectError(f"{name} is collecting already")
        loop = asyncio.get_running_loop()
        entry.schedule.start(loop.time())
        wall_now = self.wall()
        return await self._run(entry, wall_now, wall_now)  # stamped when it ran: off the grid

    def status(self):
        rows = []
        for name, entry in sorted(self.entries.items()):
            schedule = entry.schedule
            rows.append({"name": name, "interval": schedule.interval, "last_run": entry.last_run,
                         "duration": schedule.last_duration, "runs": schedule.runs,
                         "skipped": schedule.skipped, "errors": entry.errors,
                         "running": schedule.running,
                         "last_error": entry.last_error[1] if entry.last_error else None,
                         "last_error_at": entry.last_error[0] if entry.last_error else None})
        return rows

    async def _loop(self, entry):
        loop = asyncio.get_running_loop()
        schedule = entry.schedule
        tick = schedule.first_tick(loop.time())
        runs = set()
        try:
            while True:
                await asyncio.sleep(max(0.0, tick - loop.time()))
                now, wall_now = loop.time(), self.wall()
                jump = entry.clock.feed(now, wall_now)
                if jump is not None:
                    log.warning("%s: the wall clock jumped %+.1f s; collecting goes on",
                                entry.collector.name, jump)
                if schedule.due(now):
                    schedule.start(now)
                    run = loop.create_task(self._run(entry, schedule.stamp(wall_now), wall_now))
                    runs.add(run)
                    run.add_done_callback(runs.discard)
                tick = schedule.next_tick(loop.time())
        finally:
            for run in runs:
                run.cancel()

    async def _run(self, entry, stamp, wall_now):
        """One run, from its start to its samples in the sink (rules 3 and 4)."""
        loop = asyncio.get_running_loop()
        schedule, collector = entry.schedule, entry.collector
        entry.last_run = wall_now
        work = self._start(collector, loop)
        try:
            async with asyncio.timeout(collector.time_limit):
                result = await asyncio.shield(work)
            return self._hand_on(entry, _checked(result), stamp)
        except TimeoutError:
            if isinstance(work, asyncio.Task):
                work.cancel()  # a coroutine can be stopped; a thread cannot (rule 3)
            self._failed(entry, f"timed out after {collector.time_limit:g} s")
        except CollectError as exc:
            self._failed(entry, str(exc))
        except Exception as exc:  # noqa: BLE001 - a collector's bug: logged, shown, survived
            log.error("collector %s failed", collector.name, exc_info=exc)
            self._failed(entry, f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
        finally:
            if work.done():
                schedule.finish(loop.time())
            else:  # still stuck: its collector stays running until it returns (rule 3),
                # but nobody waits for it (not `monitor collect`, not the server's exit)
                work.add_done_callback(lambda _: schedule.finish(loop.time()))
        return {}

    @staticmethod
    def _start(collector, loop):
        """The run's future: the coroutine's task, or a daemon thread's result."""
        if inspect.iscoroutinefunction(collector.collect):
            return loop.create_task(collector.collect())
        future = loop.create_future()

        def work():
            try:
                outcome = (collector.collect(), None)
            except BaseException as exc:  # noqa: BLE001 - carried to the loop as the result
                outcome = (None, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop has closed meanwhile: nobody waits for it
                pass

        threading.Thread(target=work, name=f"collector {collector.name}", daemon=True).start()
        return future

    def _hand_on(self, entry, values, stamp):
        given = {}
        for metric, value in values.items():
            if _is_counter(metric, entry.collector.counters):
                value = _rate(entry.previous, metric, value, stamp)
                if value is None:
                    continue
            name = f"{entry.collector.name}.{metric}"
            given[name] = value
            self.sink(name, value, stamp)
        return given

    def _failed(self, entry, text):
        entry.errors += 1
        entry.last_error = (self.wall(), text)


def _is_counter(metric, counters):
    """METRIC is named in COUNTERS, or its last dotted part is (eth0.rx_bytes by rx_bytes)."""
    return metric in counters or metric.rpartition(".")[2] in counters


def _settle(future, result, error):
    if future.done():  # given up on meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _checked(result):
    """{metric: float} from what collect() returned (rule 4); CollectError if not that."""
    if not isinstance(result, dict):
        raise CollectError(f"collect() returned {type(result).__name__}, not a dict")
    values = {}
    for metric, value in result.items():
        if not isinstance(metric, str) or not metric:
            raise CollectError(f"metric name {metric!r} is not a name")
        try:
            values[metric] = float(value)
        except (TypeError, ValueError):
            raise CollectError(f"{metric}: {value!r} is not a number") from None
    return values


def _rate(previous, metric, total, stamp):
    """The rate per second of a counter since its last sample, or None (rule 4)."""
    before = previous.get(metric)
    previous[metric] = (total, stamp)
    if before is None or math.isnan(total) or math.isnan(before[0]):
        return None
    last, elapsed = before[0], stamp - before[1]
    if total < last or elapsed <= 0:
        return None
    return (total - last) / elapsed
