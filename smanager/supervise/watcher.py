"""How the event loop learns that a child exited, on Python 3.11.

Python 3.11's default child watcher starts one thread per child, blocked in
``waitpid(pid)``: 200 supervised programs are 200 threads (about 3 MB of RSS
and 1.6 GB of address space that ``top`` shows).  Python 3.12 and later use
a pidfd per child on Linux instead, in whichever loop spawned it.  This is
that watcher for 3.11: a pidfd registered with the *running* loop, so it
also works for loops in other threads (3.11's own PidfdChildWatcher is tied
to one loop).  It waits only for the pid it was given -- never ``waitpid(-1)``
-- so children spawned any other way are left to whoever spawned them.

``install()`` is idempotent and does nothing where it is not needed (3.12+)
or cannot work (no pidfd_open: not Linux, or a kernel before 5.3).
"""

import asyncio
import logging
import os
import sys
import warnings

log = logging.getLogger("smanager.proc")


class RunningLoopPidfdWatcher(asyncio.AbstractChildWatcher):
    def __init__(self):
        self._callbacks = {}  # pid -> (loop, pidfd, callback, args)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def is_active(self):
        return True

    def close(self):
        for pid in list(self._callbacks):
            self.remove_child_handler(pid)

    def attach_loop(self, loop):
        pass  # each child is watched by the loop that spawned it

    def add_child_handler(self, pid, callback, *args):
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._reap, pid)
        self._callbacks[pid] = loop, pidfd, callback, args

    def remove_child_handler(self, pid):
        entry = self._callbacks.pop(pid, None)
        if entry is None:
            return False
        loop, pidfd, _, _ = entry
        loop._remove_reader(pidfd)
        os.close(pidfd)
        return True

    def _reap(self, pid):
        loop, pidfd, callback, args = self._callbacks.pop(pid)
        loop._remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere: its status is lost
            log.warning("child %d was reaped by someone else; its status is unknown", pid)
            returncode = 255
        callback(pid, returncode, *args)


def install():
    """Use RunningLoopPidfdWatcher for this process's asyncio children (3.11 only)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(asyncio.get_child_watcher(), RunningLoopPidfdWatcher):
            return
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return  # a kernel without pidfds: keep the threaded watcher
        asyncio.set_child_watcher(RunningLoopPidfdWatcher())
