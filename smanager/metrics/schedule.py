"""When each collector runs: aligned ticks on the monotonic clock, skips, clock jumps.

Rules:

1. Nothing here reads a clock.  Callers pass `now` (monotonic: the event loop's
   `loop.time()`) and `wall_now` (`time.time()`), so tests drive it with numbers.
2. Each collector has a fixed offset, `offset_of(name, interval)`: the crc32 of
   its name scaled into [0, 10 % of the interval).  It is the same in every run
   and every Python process (`hash()` is salted per process), and it spreads
   collectors that share an interval over the first tenth of it.
3. Ticks are monotonic times where (tick - offset) is a whole multiple of the
   interval (telegraf's round_interval): a slow run never makes the schedule
   drift, and a wall-clock jump never moves it.
4. The loop: `first_tick(now)` once; then at each wake-up `due(now)` -- on True
   call `start(now)` and, when the run ends, `finish(now)` -- and sleep until
   `next_tick(now)`.  A tick that comes while a run is still going is skipped
   and counted.  A loop that wakes late (a blocked loop, a suspended machine)
   runs only the latest tick that has passed and counts the earlier ones as
   skipped; `next_tick` always returns a future tick.  So there is never a
   burst of catch-up runs.
5. Sample timestamps are wall-clock times on the wall-clock grid: `stamp(wall_now)`,
   given the wall time read together with the `now` passed to `start`, is the
   wall time of the tick being run, rounded to the nearest offset + k * interval.
   The rounding (a whole number of intervals between the two clocks) is kept
   until the clocks move apart by more than about half an interval, so stamps
   step by exactly one interval per tick: jitter cannot repeat or skip one.
6. `ClockWatch` notices the wall clock jumping against the monotonic one and
   reports each jump once; the caller logs it and goes on collecting.
"""

import math
import zlib

OFFSET_SPREAD = 0.1  # offsets fall in the first tenth of the interval
# Slack, as a share of the interval, for placing a time on the grid: a tick
# computed as offset + k * interval may come back a hair off the `now` it equals
# (relative float error grows with uptime / interval).
GRID_SLACK = 1e-6
# The stamp's rounding moves only once the clocks drift past half an interval
# plus this share of one, so clock pairs read microseconds apart cannot make
# consecutive stamps flip between two grid points.
STAMP_HYSTERESIS = 0.01


def offset_of(name, interval):
    """The fixed offset of collector NAME within its INTERVAL, in [0, interval / 10)."""
    return zlib.crc32(name.encode()) / 2**32 * interval * OFFSET_SPREAD


class Schedule:
    """The ticks of one collector, and what happened at them (for `monitor list`)."""

    def __init__(self, name, interval):
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.name = name
        self.interval = interval
        self.offset = offset_of(name, interval)
        self.runs = 0                 # runs started
        self.skipped = 0              # ticks not run: a run was still going, or the loop slept past them
        self.running = False
        self.last_run_started = None  # monotonic
        self.last_duration = None     # seconds, of the last finished run
        self._settled = None          # index of the last tick either run or counted as skipped
        self._run_index = None        # index of the tick the latest run stands for
        self._wall_shift = None       # whole intervals from the monotonic grid to the wall grid

    def _time_of(self, index):
        return self.offset + index * self.interval

    def _index_at_or_before(self, now):
        return math.floor((now - self.offset) / self.interval + GRID_SLACK)

    def first_tick(self, now):
        """The first tick at or after NOW; ticks before it are nobody's business."""
        index = math.ceil((now - self.offset) / self.interval - GRID_SLACK)
        self._settled = index - 1
        return self._time_of(index)

    def due(self, now):
        """Whether to start a run now.  Decides the latest tick at or before NOW once:
        False before it comes, for a second call, or when a run is still going
        (then the tick is counted as skipped).  Ticks the loop slept through are
        counted as skipped too."""
        latest = self._index_at_or_before(now)
        if latest <= self._settled:
            return False
        self.skipped += latest - self._settled - 1
        self._settled = latest
        if self.running:
            self.skipped += 1
            return False
        return True

    def next_tick(self, after):
        """The first tick after AFTER.  Passed ticks not yet decided by `due` are
        counted as skipped: after a long pause this is one future tick, not a
        catch-up of every missed one."""
        following = self._index_at_or_before(after) + 1
        if following - 1 > self._settled:
            self.skipped += following - 1 - self._settled
            self._settled = following - 1
        return self._time_of(following)

    def start(self, now):
        """A run begins; it stands for the latest tick at or before NOW."""
        self.running = True
        self.runs += 1
        self.last_run_started = now
        self._run_index = self._index_at_or_before(now)

    def finish(self, now):
        self.running = False
        self.last_duration = now - self.last_run_started

    def stamp(self, wall_now):
        """The wall-clock timestamp of the current run's samples (see rule 5)."""
        skew = wall_now - self.last_run_started  # wall minus monotonic: both read at start
        drift = abs(skew - (self._wall_shift or 0) * self.interval)
        if self._wall_shift is None or drift > (0.5 + STAMP_HYSTERESIS) * self.interval:
            self._wall_shift = round(skew / self.interval)
        return self._time_of(self._run_index + self._wall_shift)


class ClockWatch:
    """Tells when the wall clock jumps against the monotonic one, once per jump.

    Feed it the (monotonic, wall) pair read at each tick.  `feed` returns None,
    or the jump in seconds (positive: the wall clock moved forward) when
    wall - monotonic has moved by more than TOLERANCE since the last anchor --
    the first pair, or the pair that reported the last jump.  Pass the
    collector's interval as the tolerance: less than that cannot move a stamp
    by a tick.
    """

    def __init__(self, tolerance):
        self.tolerance = tolerance
        self.skew = None  # wall - monotonic at the anchor

    def feed(self, now, wall_now):
        skew = wall_now - now
        if self.skew is None:
            self.skew = skew
            return None
        jump = skew - self.skew
        if abs(jump) <= self.tolerance:
            return None
        self.skew = skew  # re-anchor, so the same jump is never reported twice
        return jump
