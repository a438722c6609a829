"""The state directory: one smanager at a time, and the record of the children it runs.

Rules:

- ``StateDB(dir)`` creates DIR (mode 0o700) and takes ``DIR/lock`` with an
  exclusive flock, or raises StateDirBusy naming the holder's pid (another
  process, or another StateDB in this one).  Children never inherit the lock.
- Each started child is recorded in ``DIR/proc.db`` (sqlite, WAL): pid, process
  group and the pid's start time.  A file sqlite cannot use is moved aside to
  ``proc.db.corrupt-<unix time>`` with one warning and a fresh one is made:
  the record is a safety net, never a reason not to start.
- After its process exits a pid names nobody; (pid, start time) does.  A leader
  whose start time differs from the record's is never signalled.  A group
  whose leader is gone is signalled only while it has members: the kernel does
  not reuse a pid while a process group with that id exists.
- A zombie counts as gone: it has exited, cannot be signalled or adopted, and
  waits only for a parent that may never reap it.
- ``sweep()``, once at start-up, kills (TERM and CONT, KILL after ``timeout``)
  or adopts what a previous smanager left, waiting with pidfds, never waitpid.
"""

import asyncio
import fcntl
import logging
import os
import signal
import sqlite3
import time
from dataclasses import astuple, dataclass

log = logging.getLogger("smanager.proc")

DB_NAME = "proc.db"
LOCK_NAME = "lock"
BUSY_TIMEOUT_MS = 5000
GROUP_POLL = 0.05  # seconds between two looks at a process group with no leader left
KILL_GRACE = 1.0  # seconds a group has to vanish after KILL before we report it alive
START_TIME_FIELD = 19  # field 22 of /proc/PID/stat, counted from field 3 (the state)
PGRP_FIELD = 2  # field 5
SCHEMA = """CREATE TABLE IF NOT EXISTS children (
    name TEXT PRIMARY KEY, pid INTEGER NOT NULL, pgid INTEGER NOT NULL,
    start_time INTEGER NOT NULL, argv0 TEXT NOT NULL, port INTEGER, started_at REAL NOT NULL)"""
COLUMNS = "name, pid, pgid, start_time, argv0, port, started_at"


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


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None if there is
    no such process.  The name may hold spaces and parentheses, so the fields
    start after the last ")"."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    return text.rpartition(b")")[2].split()


def process_start_time(pid: int) -> int | None:
    """When process PID started (clock ticks since boot); None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[START_TIME_FIELD])


def is_same_process(rec: Record) -> bool:
    """The record's leader is alive and is the process the record was made for."""
    return process_start_time(rec.pid) == rec.start_time


def _group_has_members(pgid):
    """Some process of group PGID has not exited.  killpg(pgid, 0) answers "no"
    cheaply; its "yes" counts zombies too, so /proc is read to be sure."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # members we may not signal: still members
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields and fields[0] not in (b"Z", b"X") and int(fields[PGRP_FIELD]) == pgid:
            return True
    return False


class StateDB:
    """The locked state directory and its table of running children."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self._lock_fd = _take_lock(state_dir)
        try:
            self._db = _open_or_replace(os.path.join(state_dir, DB_NAME))
        except BaseException:
            self._release_lock()
            raise

    def record(self, rec: Record) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO children ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         astuple(rec))

    def forget(self, name: str) -> None:
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


def _take_lock(state_dir):
    """DIR/lock, locked and holding our pid; StateDirBusy naming the holder if taken."""
    path = os.path.join(state_dir, LOCK_NAME)
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
        if verdict != "ok":
            raise sqlite3.DatabaseError(verdict)
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


# -- the sweep at start-up ---------------------------------------------------------------

async def sweep(records: list[Record], mode: str, *,
                timeout: float = 5.0) -> tuple[list[str], list[Record]]:
    """Deal with the children a previous smanager left (see the module's rules).
    Returns report lines for the log and the records adopted.  Groups are
    stopped concurrently, so start-up waits about ``timeout``, not one per record."""
    if mode not in ("kill", "adopt"):
        raise ValueError(f"orphans mode must be kill or adopt, not {mode!r}")
    outcomes = await asyncio.gather(*(_sweep_one(rec, mode, timeout) for rec in records))
    lines = [line for line, _ in outcomes if line]
    return lines, [rec for rec, (_, adopted) in zip(records, outcomes) if adopted]


async def _sweep_one(rec, mode, timeout):
    """(report line or None, adopted?) for one record."""
    who = f"{rec.name}: pid {rec.pid} ({rec.argv0})"
    try:
        # Opened before the start time is read: if that matches, the pidfd is
        # surely this process, and waiting on it cannot mistake a successor.
        leader = os.pidfd_open(rec.pid)
    except OSError:
        leader = None
    try:
        start_time = None if leader is None else process_start_time(rec.pid)
        if start_time is not None and start_time != rec.start_time:
            return f"{rec.name}: pid {rec.pid} now belongs to another process; left it alone", False
        if start_time is not None:
            if mode == "adopt":
                return f"{who} was left running by a previous smanager; adopted it", True
            how = await _stop_group(rec.pgid, leader, timeout)
            return f"{who} was left running by a previous smanager; {how}", False
        if not _group_has_members(rec.pgid):
            return None, False
        how = await _stop_group(rec.pgid, None, timeout)
        return f"{who} is gone but its process group {rec.pgid} was still running; {how}", False
    finally:
        if leader is not None:
            os.close(leader)


async def _stop_group(pgid, leader, timeout):
    """TERM and CONT to the group, KILL after TIMEOUT; says how it went."""
    try:
        os.killpg(pgid, signal.SIGTERM)
        os.killpg(pgid, signal.SIGCONT)  # a stopped process acts on TERM only once continued
    except ProcessLookupError:
        return "it exited by itself meanwhile"
    except OSError as error:
        return f"cannot signal process group {pgid}: {error.strerror.lower()}"
    if await _wait_gone(pgid, leader, timeout):
        return "stopped it with TERM"
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped it with TERM"  # the last one left just now
    except OSError as error:
        return f"cannot signal process group {pgid}: {error.strerror.lower()}"
    if await _wait_gone(pgid, None, KILL_GRACE):
        return f"killed it with KILL after {timeout:g} s"
    return f"process group {pgid} is still there after KILL"


async def _wait_gone(pgid, leader, seconds):
    """True once the leader (a pidfd, or None) has exited and the group has no
    members left, False if SECONDS pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if leader is not None:
        exited = loop.create_future()
        loop.add_reader(leader, lambda: exited.done() or exited.set_result(None))
        try:
            async with asyncio.timeout(seconds):
                await exited
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(leader)
    # The rest of the group are not our children and their pids are known only
    # by reading /proc (they may fork meanwhile), so no event says "the group is
    # empty": a short poll, bounded by the deadline, is the honest way.
    for _ in range(int(seconds / GROUP_POLL) + 2):
        if not _group_has_members(pgid):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(GROUP_POLL)
    return not _group_has_members(pgid)
