"""What happens to one supervised program: its state, restarts, backoff and giving up.

Pure: no I/O, no clock, no randomness of its own.  Callers pass ``now``
(monotonic seconds) and ``wall`` (time.time()); ``rng`` is injected.

Rules:

1. The states are closed (State) and every change goes through TRANSITIONS;
   asking for any other change raises RuntimeError naming both states: that is
   the caller's bug, not the program's.
2. ``start()`` (an admin start or autostart) is the only way out of FATAL and
   the only thing that clears the failed-start count, the backoff streak and
   the restart total.
3. An exit while STOPPING is a stop.  An exit while STARTING (a spawn error or
   a failed readiness check included) is a failed start.  An exit is expected
   when no signal killed it, its status is in ok_exit_codes and no error came
   with it.
4. restart = "always" restarts every exit, "on-failure" every unexpected one,
   "never" none; an exit that is not restarted leaves the program EXITED.
5. A failed start that would be restarted gives up (FATAL) instead when it
   makes give_up.restarts failed starts within the last give_up.within seconds
   (``now - t < within``); give_up None never gives up.  An exit after RUNNING
   is never a failed start, so it never gives up.
6. The streak (consecutive restarts) ends when the program was up at least
   backoff.reset_after seconds.  A program that had reached RUNNING restarts at
   once on the first exit of a streak, as supervisor and systemd do; every other
   restart waits initial * factor**k, capped at max, times
   (1 + jitter * (2 * rng() - 1)), k counting the streak's waits so far.
   So a crash loop from the first start waits 1, 2, 4, 8 s ... and a healthy
   program that dies restarts now, then after 1, 2, 4 s if it keeps dying.
7. Exit.describe() shows an error that came with no child (uptime 0, no
   status) as "could not start: ERROR", and one after a spawn (a readiness
   failure) as given.
"""

import enum
import random
from collections import deque
from dataclasses import dataclass
from signal import Signals

from .spec import RESTARTS, Backoff, GiveUp


class State(enum.Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


TRANSITIONS = {
    State.STOPPED: {State.STARTING},
    State.STARTING: {State.RUNNING, State.STOPPING, State.BACKOFF, State.EXITED, State.FATAL},
    State.RUNNING: {State.STOPPING, State.BACKOFF, State.EXITED},
    State.BACKOFF: {State.STARTING, State.STOPPED},
    State.STOPPING: {State.STOPPED},
    State.EXITED: {State.STARTING},
    State.FATAL: {State.STARTING},
}
DEFAULT_BACKOFF, DEFAULT_GIVE_UP = Backoff(), GiveUp()
WITH_A_CHILD = (State.STARTING, State.RUNNING, State.STOPPING)


@dataclass(frozen=True)
class Exit:
    """One end of a child (or of a start that never got one), as history keeps it."""

    wall: float  # when (time.time())
    uptime: float  # seconds since spawn; 0 when no child was spawned
    code: int | None  # exit status
    signal: int | None  # the signal that killed it
    error: str | None  # a spawn error or a readiness failure, as one line
    during: str  # "STARTING", "RUNNING" or "STOPPING"
    outcome: str  # "restarting in 2.1 s", "stopped", "gave up: ..."
    delay: float | None  # the delay chosen, when restarting
    last_line: str | None  # the program's last stderr line, when the caller had one

    def describe(self):
        """One line: how it ended.  No child and no status means it could not start."""
        if self.error is not None:
            never_ran = self.uptime == 0 and self.code is None and self.signal is None
            return f"could not start: {self.error}" if never_ran else self.error
        after = f"after {self.uptime:.1f} s"
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)} {after}"
        if self.code is not None:
            return f"exited with status {self.code} {after}"
        return f"exited (status unknown) {after}"


def signal_name(number):
    try:
        return Signals(number).name
    except ValueError:
        return f"signal {number}"


class Policy:
    """The state machine of one program; every method is one event."""

    def __init__(self, *, restart="on-failure", ok_exit_codes=frozenset({0}), backoff=DEFAULT_BACKOFF,
                 give_up=DEFAULT_GIVE_UP, rng=random.random, history=20):
        self.configure(restart=restart, ok_exit_codes=ok_exit_codes, backoff=backoff,
                       give_up=give_up)
        self.rng = rng
        self.state = State.STOPPED
        self.next_start_at = None
        self.started_at = None  # None while STARTING until spawned()
        self.history = deque(maxlen=history)
        self.restarts = 0  # made since the last start()
        self.failed_starts = deque()  # their `now`, oldest first, pruned to the window
        self.streak = 0  # restarts since the program last stayed up reset_after
        self.waits = 0  # of those, the ones that waited: the k of the next wait

    def configure(self, *, restart, ok_exit_codes, backoff, give_up):
        """New settings; the state, history and counts stay."""
        if restart not in RESTARTS:
            raise ValueError(f"restart must be one of {', '.join(RESTARTS)}, not {restart!r}")
        self.restart = restart
        self.ok_exit_codes = frozenset(ok_exit_codes)
        self.backoff = backoff
        self.give_up = give_up

    def start(self, now):
        """An admin start or autostart: a fresh run, forgiving past failures."""
        self._go(State.STARTING)
        self.failed_starts.clear()
        self.streak = self.waits = self.restarts = 0
        self.next_start_at = self.started_at = None

    def spawned(self, now):
        """The child exists (a stop may have come while it was being spawned)."""
        self._require("spawned", State.STARTING, State.STOPPING)
        self.started_at = now

    def ready(self, now):
        """It counts as started."""
        self._go(State.RUNNING)

    def stop(self):
        """Stop it.  True when a child is there to stop (the caller stops it);
        False when there is none, or it is already STOPPING."""
        if self.state in (State.STARTING, State.RUNNING):
            self._go(State.STOPPING)
            return True
        if self.state is State.BACKOFF:
            self._go(State.STOPPED)
            self.next_start_at = None
        return False

    def due(self, now):
        """Start again if the backoff delay is over; True when it did."""
        if self.state is not State.BACKOFF or now < self.next_start_at:
            return False
        self._go(State.STARTING)
        self.restarts += 1
        self.next_start_at = self.started_at = None
        return True

    def exited(self, now, wall, *, code=None, signal=None, error=None, last_line=None):
        """The child is gone, or never came: decide what next and record it."""
        self._require("exited", *WITH_A_CHILD)
        during = self.state
        uptime = 0.0 if self.started_at is None else now - self.started_at
        delay = None
        if during is State.STOPPING:
            self._go(State.STOPPED)
            outcome = "stopped"
        else:
            if during is State.STARTING:
                self._count_failed_start(now)
            expected = signal is None and error is None and code in self.ok_exit_codes
            if not self._restarts(expected):
                self._go(State.EXITED)
                outcome = f"not restarted (restart = {self.restart})"
            elif during is State.STARTING and self._gives_up():
                self._go(State.FATAL)
                outcome = (f"gave up: {len(self.failed_starts)} failed starts"
                           f" within {self.give_up.within:g} s")
            else:
                delay = self._delay(uptime, reached_running=during is State.RUNNING)
                self._go(State.BACKOFF)
                self.next_start_at = now + delay
                outcome = "restarting now" if delay == 0 else f"restarting in {delay:.1f} s"
        record = Exit(wall=wall, uptime=uptime, code=code, signal=signal, error=error,
                      during=during.value, outcome=outcome, delay=delay, last_line=last_line)
        self.history.append(record)
        return record

    def row(self, now=None):
        """What status shows.  failed_starts: in the window ending at `now`, or at the newest one."""
        if self.give_up is None:
            failed = 0
        else:
            failed = sum(now is None or now - t < self.give_up.within for t in self.failed_starts)
        return {
            "state": self.state.value,
            "restarts": self.restarts,
            "last_exit": self.history[-1].describe() if self.history else None,
            "next_start_at": self.next_start_at,
            "failed_starts": failed,
        }

    def _restarts(self, expected):
        return self.restart == "always" or (self.restart == "on-failure" and not expected)

    def _count_failed_start(self, now):
        if self.give_up is None:
            return  # no window to count in, and a list that would only grow
        self.failed_starts.append(now)
        while now - self.failed_starts[0] >= self.give_up.within:
            self.failed_starts.popleft()

    def _gives_up(self):
        return self.give_up is not None and len(self.failed_starts) >= self.give_up.restarts

    def _delay(self, uptime, *, reached_running):
        """The wait before this restart (rule 6); it moves the streak on."""
        settings = self.backoff
        if uptime >= settings.reset_after:
            self.streak = self.waits = 0
        self.streak += 1
        if reached_running and self.streak == 1:
            return 0.0
        try:
            base = min(settings.initial * settings.factor ** self.waits, settings.max)
        except OverflowError:  # factor ** k passes a float's range after ~1000 straight waits
            base = settings.max
        self.waits += 1
        return base * (1 + settings.jitter * (2 * self.rng() - 1))

    def _go(self, new):
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.state.value} -> {new.value} is not a transition")
        self.state = new

    def _require(self, event, *states):
        if self.state not in states:
            wanted = " or ".join(s.value for s in states)
            raise RuntimeError(f"{event}() while {self.state.value}; it needs {wanted}")
