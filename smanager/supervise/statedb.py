"""The state directory: one smanager at a time, and the record of the children it runs.

Rules:

- ``StateDB(dir)`` creates DIR (mode 0o700) and takes ``DIR/proc.lock`` with an
  exclusive flock, or raises StateDirBusy naming the holder's pid (another
  process, or another StateDB in this one).  Children never inherit the lock.
- Each started child is recorded in ``DIR/state.db`` (sqlite, WAL): pid, process
  group and the pid's start time.  A file sqlite cannot use is moved aside to
  ``state.db.corrupt-<unix time>`` with one warning and a fresh one is made:
  the record is a safety net, never a reason not to start.
- What a record is used for after a kill -9 is in orphans.py.
"""

import fcntl
import logging
import os
import sqlite3
import time
from dataclasses import astuple, dataclass

log = logging.getLogger("smanager.proc")

DB_NAME = "state.db"  # shared: other bundled services keep their tables here too
LOCK_NAME = "proc.lock"
BUSY_TIMEOUT_MS = 5000
SCHEMA = """CREATE TABLE IF NOT EXISTS children (
    name TEXT PRIMARY KEY, pid INTEGER NOT NULL, pgid INTEGER NOT NULL,
    start_time INTEGER NOT NULL, argv0 TEXT NOT NULL, port INTEGER, started_at REAL NOT NULL,
    boot_id TEXT NOT NULL DEFAULT '')"""
COLUMNS = "name, pid, pgid, start_time, argv0, port, started_at, boot_id"


class StateDirBusy(Exception):
    """Another StateDB holds the directory's lock."""


@dataclass(frozen=True)
class Record:
    """One running child: who it is, and how to know it is still the same process."""

    name: str
    pid: int
    pgid: int
    start_time: int  # clock ticks since boot, from /proc/PID/stat
    argv0: str
    port: int | None
    started_at: float  # wall time, for people
    boot_id: str = ""  # the boot it ran in: after a reboot every pid names someone else


def boot_id() -> str:
    """This boot's id (Linux): pids and start times mean something only within it."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class StateDB:
    """The locked state directory and its table of running children."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self._lock_fd = take_lock(state_dir)
        try:
            self._db = _open_or_replace(os.path.join(state_dir, DB_NAME))
        except BaseException:
            self._release_lock()
            raise

    def record(self, rec: Record) -> None:
        if self._db is None:  # closed: the server is going; a late end needs no record
            return
        self._db.execute(f"INSERT OR REPLACE INTO children ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         astuple(rec))

    def forget(self, name: str) -> None:
        if self._db is None:
            return
        self._db.execute("DELETE FROM children WHERE name = ?", (name,))

    def records(self) -> list[Record]:
        rows = self._db.execute(f"SELECT {COLUMNS} FROM children ORDER BY name")
        return [Record(*row) for row in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def _release_lock(self):
        if self._lock_fd is not None:
            # Unlocked first: a child forked but not yet exec'd shares the description.
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def take_lock(state_dir, name=LOCK_NAME):
    """DIR/NAME, locked and holding our pid; StateDirBusy naming the holder if taken."""
    path = os.path.join(state_dir, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inheritable (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateDirBusy(f"state directory {state_dir} is in use by another smanager "
                           f"(pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open_db(path):
    """PATH as our database, checked: sqlite.Error if it is not one sqlite can use."""
    db = sqlite3.connect(path, isolation_level=None)  # autocommit: each write is durable alone
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL survives our own crash; enough here
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":  # sqlite lists every damaged page: the first says enough
            raise sqlite3.DatabaseError(verdict.splitlines()[0][:200])
        db.execute(SCHEMA)
        db.execute(f"SELECT {COLUMNS} FROM children LIMIT 0")  # an older table fails here
    except BaseException:
        db.close()
        raise
    return db


def _open_or_replace(path):
    """The database at PATH; one sqlite cannot use is moved aside and replaced.
    (Its -wal and -shm need no care: sqlite removes them when it closes the file.)"""
    try:
        return _open_db(path)
    except sqlite3.DatabaseError as error:
        if not os.path.exists(path):
            raise  # not the file's fault
        aside = f"{path}.corrupt-{int(time.time())}"
        os.replace(path, aside)
        log.warning("state database %s is unreadable (%s); moved it to %s and started afresh",
                    path, error, aside)
    return _open_db(path)
