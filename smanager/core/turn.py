"""A service's turn: its plain (threaded) commands run one at a time.

A command that overruns its time limit, or is interrupted, cannot be stopped:
its thread runs on and keeps the turn until it really ends, so "one at a time"
holds even then.  Meanwhile the turn knows it was left, so a new command for
the service is told so at once instead of waiting in silence.
"""

import asyncio
import time


class Turn:
    def __init__(self):
        self.lock = asyncio.Lock()
        self.holder = None  # the Call holding the turn (its label is worked out only if asked)
        self.since = 0.0  # when it took it (monotonic)
        self.left = None  # "interrupted" or "timed out": its caller stopped waiting

    def taken(self, call):
        self.holder, self.since, self.left = call, time.monotonic(), None

    def release(self):
        self.holder, self.left = None, None
        self.lock.release()

    def running_for(self):
        return time.monotonic() - self.since
