"""The monitor's sample store: one sqlite file, one writer thread, readers beside it.

Rules:

- ``SampleStore(path)`` keeps its own file (the monitor uses STATE_DIR/metrics.db),
  never proc's state.db: samples are written all the time, in batches, and
  proc's one-row records must never wait behind them for sqlite's single write
  lock, nor share a WAL that they make grow.  WAL, synchronous=NORMAL: a commit
  survives a kill -9 of this process (not a power cut).  A file sqlite cannot
  use is moved aside and replaced (rollup.open_or_replace): never a reason not
  to start.
- ``add(name, value, ts=None)`` never blocks and takes no lock (call it from the
  event loop): it queues the sample, or drops and counts it (``dropped``) when
  about ``max_queued`` wait.  ts is wall-clock seconds (default: the clock), kept
  rounded to a whole second; a NaN value (a failed collection) is kept as None.
- The writer thread alone writes.  It commits what is queued every
  ``flush_every`` seconds, and as soon as WAKE_AT wait, at most BATCH_ROWS samples
  per transaction, raw rows and rollups together (rollup.py).  A later sample for
  the same name and second replaces the earlier.  A sample older than the raw
  retention is refused (``too_old``): its minute may be gone from ``samples``, so
  the rollups could not be kept exact.  A batch sqlite refuses is logged and
  counted (``failed``), never retried.  ``written`` counts committed samples.
  The WAL is kept near WAL_LIMIT_BYTES even while readers never pause.
- ``flush()``, ``prune(now)`` and ``close()`` block until the writer has done them
  (in order with the samples queued before): call them from a thread.  Without
  ``close()`` the samples of the last flush interval are lost, as after a kill -9.
- Reads use their own connections (a small pool): each is one statement, so no
  read holds a snapshot the WAL checkpoint must wait for, and none waits for the
  writer.  ``last`` gives the newest raw sample of each series; ``get`` reads the
  tier that fits (``tier``) and gives (bucket start, value) for buckets with values.
"""

import collections
import fnmatch
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from smanager.metrics import rollup

log = logging.getLogger("smanager.monitor")

DAY = 86400
LARGEST = 1e300  # a larger value is kept as None: rollup sums of it would overflow to inf
WAKE_AT = 1000  # samples queued that wake the writer before its flush_every
BATCH_ROWS = 5000  # at most, per transaction: a backlog is written in few commits
IDLE_READERS = 4
WAL_LIMIT_BYTES = 6 * 2**20  # sqlite's autocheckpoint keeps it near 4 MB when it can
AGGREGATES = {  # agg: (over raw values, over rollup rows)
    "avg": ("avg(value)", "sum(sum) / sum(count)"), "min": ("min(value)", "min(min)"),
    "max": ("max(value)", "max(max)"), "sum": ("sum(value)", "sum(sum)"),
    "count": ("count(value)", "sum(count)")}
TIERS = {"raw": ("samples", 1), "1m": ("rollup_1m", 60), "1h": ("rollup_1h", 3600)}


@dataclass(frozen=True)
class Retention:
    """How long each tier keeps rows, in seconds (netdata's tiers)."""

    raw: float = 14 * DAY
    minute: float = 90 * DAY
    hour: float = 730 * DAY

    def __post_init__(self):
        if not 3600 <= self.raw <= self.minute <= self.hour:
            raise ValueError("retention must be raw <= minute <= hour, raw at least an hour")

    def cutoffs(self, now: float) -> dict:
        """The oldest second each table keeps; whole minutes and hours, as rollup.py needs."""
        raw, minute, hour = int(now - self.raw), int(now - self.minute), int(now - self.hour)
        return {"samples": raw - raw % 60, "rollup_1m": minute - minute % 3600,
                "rollup_1h": hour - hour % 3600}


class _Request:
    """Work for the writer thread, done in order with the samples queued before it."""

    def __init__(self, work):
        self.work = work
        self.done = threading.Event()
        self.result = self.error = None


class SampleStore:
    def __init__(self, path, *, clock=time.time, retention: Retention = Retention(),
                 flush_every: float = 5.0, max_queued: int = 100_000):
        self.path = os.fspath(path)
        self.retention = retention
        self.flush_every = flush_every
        self.max_queued = max_queued
        self.dropped = self.too_old = self.failed = self.written = 0
        self._clock = clock
        self._queue = collections.deque()  # (name, value, ts) and _Request; append is atomic
        self._wake = threading.Event()
        self._count_lock = threading.Lock()  # for dropped only: taken when the queue is full
        self._idle_readers = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._db = rollup.open_or_replace(self.path)
        self._ids = dict(self._db.execute("SELECT name, id FROM series"))
        self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                        name=f"metrics writer {self.path}")
        self._writer.start()

    # -- writing -------------------------------------------------------------------------

    def add(self, name: str, value: float, ts: float | None = None) -> bool:
        """Queue one sample; False if it was dropped (queue full, or closed)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric name must be a non-empty string, not {name!r}")
        value = float(value)
        ts = round(self._clock() if ts is None else ts)
        if self._closed or len(self._queue) >= self.max_queued:
            with self._count_lock:
                self.dropped += 1
            return False
        # NaN (a failed collection) and values no sum of them could hold are kept as None.
        self._queue.append((name, value if abs(value) <= LARGEST else None, ts))
        if len(self._queue) >= WAKE_AT and not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        """Samples waiting for the writer."""
        return len(self._queue)

    def flush(self) -> None:
        """Return once every sample queued before the call is committed."""
        if not self._closed:
            self._ask(lambda: None)

    def prune(self, now: float | None = None) -> int:
        """Delete what each tier keeps no longer at NOW; the number of rows removed."""
        cutoffs = self.retention.cutoffs(self._clock() if now is None else now)
        return self._ask(lambda: self._prune(cutoffs))

    def close(self) -> None:
        """Commit what is queued, stop the writer, close every connection."""
        if not self._closed:
            self._ask(self._stop)
            self._closed = True  # after: the stop request is asked like any other
            self._writer.join()
        with self._readers_lock:
            idle, self._idle_readers = self._idle_readers, []
        for db in idle:
            db.close()

    def _ask(self, work):
        if self._closed:
            raise RuntimeError(f"the sample store {self.path} is closed")
        request = _Request(work)
        self._queue.append(request)
        self._wake.set()
        while not request.done.wait(1.0):
            if not self._writer.is_alive():
                raise RuntimeError(f"the sample store {self.path} has no writer")
        if request.error is not None:
            raise request.error
        return request.result

    def _write_forever(self):
        deadline = time.monotonic() + self.flush_every
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            deadline = time.monotonic() + self.flush_every
            if not self._write_queued():
                return

    def _write_queued(self):
        """Commit everything queued, BATCH_ROWS at a time, doing requests in their turn;
        False once the stop request is done."""
        queue, batch = self._queue, []
        while queue:
            item = queue.popleft()
            if type(item) is not _Request:
                batch.append(item)
                if len(batch) >= BATCH_ROWS:
                    self._commit(batch)
                    batch = []
                continue
            self._commit(batch)
            batch = []
            try:
                item.result = item.work()
            except Exception as error:  # the asker's to handle: handed over, the writer goes on
                item.error = error
            item.done.set()
            if item.work == self._stop:
                return False
        self._commit(batch)
        return True

    def _stop(self):
        self._db.close()

    def _prune(self, cutoffs):
        removed, forgotten = rollup.prune(self._db, cutoffs)
        for name in forgotten:
            del self._ids[name]
        return removed

    def _commit(self, batch):
        if not batch:
            return
        oldest = self.retention.cutoffs(self._clock())["samples"]
        db, samples, kept = self._db, {}, 0
        try:
            db.execute("BEGIN IMMEDIATE")
            for name, value, ts in batch:
                if ts < oldest:
                    self.too_old += 1
                    continue
                series = self._ids.get(name)
                if series is None:
                    (series,) = db.execute("INSERT INTO series (name) VALUES (?) RETURNING id",
                                           (name,)).fetchone()
                    self._ids[name] = series
                samples[series, ts] = value  # the later of two for one second wins
                kept += 1
            rollup.write(db, samples)
            db.execute("COMMIT")
            self.written += kept
            if os.stat(self.path + "-wal").st_size > WAL_LIMIT_BYTES:
                # Readers one after another can keep sqlite's own checkpoint from ever
                # restarting the WAL: this one waits (busy_timeout) for the readers of the
                # moment to finish, then empties it.
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as error:
            log.error("monitor: %d sample(s) could not be stored: %s", len(batch), error)
            self.failed += len(batch)
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._ids = dict(db.execute("SELECT name, id FROM series"))  # new ids were undone

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [name for (name,) in self._read("SELECT name FROM series ORDER BY name")]

    def last(self, pattern: str | None = None) -> list[tuple[str, float | None, int]]:
        """(name, value, ts) of the newest raw sample of each series whose name matches
        PATTERN (fnmatch, case-sensitive); value None for a failed collection."""
        # GLOB is fnmatchcase's language but for [!...] (GLOB says [^...]): filtered
        # in sqlite, so a pattern over 100,000 series reads only the series it names.
        rows = self._read("SELECT name, value, ts FROM series JOIN samples ON series = id "
                          "AND ts = (SELECT max(ts) FROM samples WHERE series = id) "
                          "WHERE name GLOB ? ORDER BY name",
                          ((pattern or "*").replace("[!", "[^"),))
        return [row for row in rows if pattern is None or fnmatch.fnmatchcase(row[0], pattern)]

    def tier(self, since: float, step: int, now: float | None = None) -> str:
        """The tier a read from SINCE in STEP-second buckets comes from ("raw", "1m",
        "1h"): the finest no wider than STEP that still keeps SINCE, else the hour tier."""
        age = (self._clock() if now is None else now) - since
        if step < 60 and age <= self.retention.raw:
            return "raw"
        if step < 3600 and age <= self.retention.minute:
            return "1m"
        return "1h"

    def get(self, name: str, since: float, until: float | None = None, step: int = 60,
            agg: str = "avg") -> list[tuple[int, float]]:
        """AGG of NAME's values in buckets of STEP seconds from the one holding SINCE to
        UNTIL (default now), from the fitting tier; buckets without values are left out.
        Rows of a tier wider than STEP make buckets of their own width."""
        if agg not in AGGREGATES:
            raise ValueError(f"agg must be one of {', '.join(AGGREGATES)}, not {agg!r}")
        if int(step) != step or step < 1:
            raise ValueError(f"step must be a whole number of seconds, at least 1, not {step!r}")
        step = int(step)
        until = self._clock() if until is None else until
        tier = self.tier(since, step)
        table, width = TIERS[tier]
        expression = AGGREGATES[agg][0 if tier == "raw" else 1]
        since = int(since)
        first = min(since - since % step, since - since % width)  # the row holding SINCE too
        return self._read(
            f"SELECT ts - ts % ?1 AS bucket, {expression} FROM {table} "
            "WHERE series = (SELECT id FROM series WHERE name = ?2) AND ts >= ?3 AND ts <= ?4"
            f"{' AND value IS NOT NULL' if tier == 'raw' else ''} GROUP BY bucket ORDER BY bucket",
            (step, name, first, int(until)))

    def size_report(self) -> dict:
        """Bytes on disk (the file and its WAL) and rows per table."""
        def size(path):
            try:
                return os.stat(path).st_size
            except FileNotFoundError:
                return 0
        rows = {table: self._read(f"SELECT count(*) FROM {table}")[0][0] for table in rollup.COLUMNS}
        return {"db_bytes": size(self.path), "wal_bytes": size(self.path + "-wal"), "rows": rows}

    def _read(self, statement, arguments=()):
        """All rows of one statement, on an idle reader connection (or a new one)."""
        with self._readers_lock:
            db = self._idle_readers.pop() if self._idle_readers else None
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {rollup.BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA query_only = 1")
        try:
            return db.execute(statement, arguments).fetchall()
        finally:
            with self._readers_lock:
                keep = not self._closed and len(self._idle_readers) < IDLE_READERS
                if keep:
                    self._idle_readers.append(db)
            if not keep:
                db.close()
