"""One log file of a child's stream, rotated by size (rules 4 and 5 of output.py)."""

import logging
import os
from contextlib import suppress

log = logging.getLogger("smanager.proc")


class LogFile:
    """One stream's log file (rules 4 and 5).  fd None: closed, or failing."""

    def __init__(self, name, path, max_bytes, backups):
        self._name, self.path = name, path
        self._max_bytes, self._backups = max_bytes, backups
        self._fd = None
        self._size = 0
        self._failing = False
        self.ends_line = True   # the file's last byte is LF, so a note starts a line
        self.open()

    def open(self):
        try:
            directory = os.path.dirname(self.path) or "."
            if not os.path.lexists(directory):   # something else there fails at open, clearly
                os.makedirs(directory, mode=0o750, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o640)
            self._size = os.fstat(self._fd).st_size
        except OSError as error:
            self._fail(error)
            return
        if self._failing:
            log.info("proc %s: writing %s again", self._name, self.path)
        self._failing = False
        self.ends_line = True

    def close(self):
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._failing = False

    def write(self, data):
        if self._fd is None and not self._failing:
            return
        if self._max_bytes and self._size and self._size + len(data) > self._max_bytes:
            self._rotate()
        self._size += len(data)
        if self._fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as error:
            self._fail(error)
            return
        self.ends_line = data.endswith(b"\n")

    def _rotate(self):
        failing = self._failing
        self.close()
        self._failing, self._size = failing, 0
        names = [self.path] + [f"{self.path}.{i}" for i in range(1, self._backups + 1)]
        try:
            for older, newer in zip(reversed(names), reversed(names[:-1])):
                with suppress(FileNotFoundError):
                    os.replace(newer, older)
            if not self._backups:
                with suppress(FileNotFoundError):
                    os.unlink(self.path)
        except OSError as error:
            self._fail(error)
            return
        self.open()

    def _fail(self, error):
        if self._fd is not None:
            self.close()
        if not self._failing:
            log.warning("proc %s: cannot write %s (%s); keeping its output in memory only",
                        self._name, self.path, error.strerror or error)
        self._failing = True
