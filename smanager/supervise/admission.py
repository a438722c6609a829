"""Which script runs may start: per-script locks, then a global limit, both first come first served.

The rules:

1. ``async with admission.enter(script, lock, run_id):`` is one run's stay.
   First the script's lock, by the script's ``lock`` mode:
   "none" takes no lock; "wait" lets one run of the script in at a time, the
   others wait their turn in arrival order; "fail" refuses a second run while
   one holds the lock (running or still waiting for a slot) with
   ``Busy("busy: run 41 since 12:03:04")``: the holder's id and when it
   entered (``started_at_text``, else the local time HH:MM:SS at enter()).
2. Then a slot: at most ``max_concurrent`` runs are inside at once; the others
   wait in arrival order.  A slot or a lock that is freed goes straight to the
   first waiter, so nobody arriving later can take it first.
3. ``queued`` counts the runs waiting, for a lock or for a slot.  A run that
   would have to wait while ``max_queued`` runs already do is refused at once
   with ``Busy("busy: 100 runs are queued (max_queued = 100)")``.
4. Leaving, however it happens (the run's end, an exception, a cancelled
   waiter: the client left or pressed Ctrl-C), gives back what the run held
   and takes it out of any queue; a lock or slot handed to a waiter that was
   cancelled in the same moment is passed on, never lost.
5. ``set_limits(max_concurrent, max_queued)`` applies from now on: slots a
   higher max_concurrent adds go to the runs already waiting, first come
   first served; with a lower one, slots given back are retired until the
   runs inside are within it.

asyncio.Semaphore is not used: it knows nothing of the holders and queue
counts these rules need, and early 3.11 releases let a newcomer overtake a
woken waiter.
"""

import asyncio
import time
from collections import deque
from contextlib import asynccontextmanager

LOCK_MODES = ("none", "wait", "fail")


class Busy(Exception):
    """A run refused now (rules 1 and 3); the message is one line."""


class _ScriptLock:
    """Who holds one script's lock, and the runs waiting for it, in order."""

    def __init__(self, run_id, since):
        self.run_id = run_id
        self.since = since
        self.waiters = deque()     # (future, run_id, since)


class Admission:
    """Per-script locks and the global FIFO limit (see the module's rules)."""

    def __init__(self, max_concurrent=4, max_queued=100):
        if max_concurrent < 1 or max_queued < 0:
            raise ValueError("max_concurrent must be at least 1 and max_queued at least 0")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.running = 0
        self.queued = 0
        self._slot_waiters = deque()
        self._locks = {}

    def holder(self, script):
        """The id of the run holding ``script``'s lock, or None."""
        lock = self._locks.get(script)
        return lock.run_id if lock else None

    @asynccontextmanager
    async def enter(self, script, lock, run_id, *, started_at_text=None):
        if lock not in LOCK_MODES:
            raise ValueError(f"lock must be one of {', '.join(LOCK_MODES)}, not {lock!r}")
        since = started_at_text or time.strftime("%H:%M:%S")
        held = self._locks.get(script) if lock != "none" else None
        if held and lock == "fail":
            raise Busy(f"busy: run {held.run_id} since {held.since}")
        if held or self.running >= self.max_concurrent:
            self._refuse_if_full()
        self.queued += 1
        try:
            if lock != "none":
                await self._take_lock(script, run_id, since)
            try:
                await self._take_slot()
            except BaseException:
                if lock != "none":
                    self._give_lock(script)
                raise
        finally:
            self.queued -= 1
        try:
            yield
        finally:
            self._give_slot()
            if lock != "none":
                self._give_lock(script)

    def _refuse_if_full(self):
        if self.queued >= self.max_queued:
            raise Busy(f"busy: {self.queued} runs are queued (max_queued = {self.max_queued})")

    async def _take_lock(self, script, run_id, since):
        held = self._locks.get(script)
        if held is None:
            self._locks[script] = _ScriptLock(run_id, since)
            return
        turn = asyncio.get_running_loop().create_future()
        entry = (turn, run_id, since)
        held.waiters.append(entry)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_lock(script)    # handed over as we were cancelled: pass it on
            elif entry in held.waiters:    # else a handover already skipped it
                held.waiters.remove(entry)
            raise

    def _give_lock(self, script):
        lock = self._locks[script]
        while lock.waiters:
            turn, lock.run_id, lock.since = lock.waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._locks[script]

    async def _take_slot(self):
        if self.running < self.max_concurrent:    # else every slot is taken and waited for
            self.running += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_slot()    # handed over as we were cancelled: pass it on
            elif turn in self._slot_waiters:    # else a handover already skipped it
                self._slot_waiters.remove(turn)
            raise

    def set_limits(self, max_concurrent, max_queued):
        """New limits (rule 5)."""
        if max_concurrent < 1 or max_queued < 0:
            raise ValueError("max_concurrent must be at least 1 and max_queued at least 0")
        self.max_concurrent, self.max_queued = max_concurrent, max_queued
        while self.running < self.max_concurrent and self._slot_waiters:
            self.running += 1  # a new slot, handed to the first waiter (or freed again)
            self._give_slot()

    def _give_slot(self):
        """Hand the slot to the first waiter still waiting, or free it (retire it,
        while more runs are inside than max_concurrent)."""
        while self._slot_waiters and self.running <= self.max_concurrent:
            turn = self._slot_waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1
