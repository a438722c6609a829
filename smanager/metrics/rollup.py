"""The sample database: its file and tables, and how a batch of samples and a prune
change them.

Rules:

- ``open_or_replace(path)`` is statedb's opener for these tables: WAL,
  synchronous=NORMAL, quick_check; a file sqlite cannot use (not a database,
  corrupt, our tables with other columns) is moved aside to
  PATH.corrupt-<unix time> with one warning, and a fresh one is
  made.  An error that is not the file's (no directory, no permission) is raised.

- ``samples`` holds raw values, ``rollup_1m`` and ``rollup_1h`` hold the sum,
  count, min and max of each series' values per minute and per hour, keyed by
  the bucket's first second.  Times are whole seconds since the epoch.
- A sample's value None (a failed collection) is kept in ``samples`` and never
  rolled up: a rollup row counts values only, and a bucket of None alone has none.
- ``write(db, samples)`` runs inside the caller's transaction, so the raw rows
  and the rollups commit together.  A sample for a (series, ts) already stored
  replaces it, and the rollups then hold the new value, never both: the minutes
  it touched are summed again from ``samples``, their hours from ``rollup_1m``.
  That is exact as long as samples older than the raw retention are refused
  (the caller does) and ``prune`` cuts raw rows at a whole minute and minute rows
  at a whole hour.
- ``prune(db, cutoffs)`` deletes rows older than each table's cutoff, at most
  PRUNE_BATCH rows per statement (each its own short transaction: readers and
  the WAL never wait behind one big delete), forgets series left without rows,
  and truncates the WAL.
"""

import functools
import itertools
import logging
import os
import sqlite3
import time

log = logging.getLogger("smanager.monitor")

BUSY_TIMEOUT_MS = 5000
FILES_FAULT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}  # and errors without a code: ours

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE IF NOT EXISTS samples (series INTEGER NOT NULL, ts INTEGER NOT NULL,
        value REAL, PRIMARY KEY (series, ts)) WITHOUT ROWID""",
    *(f"""CREATE TABLE IF NOT EXISTS {table} (series INTEGER NOT NULL, ts INTEGER NOT NULL,
        sum REAL NOT NULL, count INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
        PRIMARY KEY (series, ts)) WITHOUT ROWID""" for table in ("rollup_1m", "rollup_1h")),
)
COLUMNS = {"series": ("id", "name"), "samples": ("series", "ts", "value"),
           "rollup_1m": ("series", "ts", "sum", "count", "min", "max"),
           "rollup_1h": ("series", "ts", "sum", "count", "min", "max")}
ROLLUPS = (("rollup_1m", 60), ("rollup_1h", 3600))
PRUNE_BATCH = 5000
# A batch goes to sqlite as few statements of CHUNK rows each (multi-row VALUES), not
# one executemany step per row: the sqlite3 module lets go of the GIL around each step,
# and a busy event loop hands it back only every switch interval (5 ms), which starved
# the writer to a few hundred rows a second under a push flood.  Fewer, bigger steps
# are also faster alone (about 780,000 rows/s here, against 490,000 for executemany).
CHUNK = 500
INSERT = "INSERT OR IGNORE INTO samples VALUES "
MERGE = """INSERT INTO {} (series, ts, sum, count, min, max) VALUES """
UPSERT = """ ON CONFLICT (series, ts) DO UPDATE SET sum = sum + excluded.sum,
    count = count + excluded.count, min = min(min, excluded.min), max = max(max, excluded.max)"""


def _open(path):
    """PATH as the writer's connection, checked: sqlite3.DatabaseError if unusable."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":  # sqlite lists every damaged page: the first says enough
            raise sqlite3.DatabaseError(verdict.splitlines()[0][:200])
        create(db)  # checks before it changes: a file moved aside is as it was found
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives our own kill -9
    except BaseException:
        db.close()
        raise
    return db


def open_or_replace(path: str) -> sqlite3.Connection:
    """statedb._open_or_replace for this file's tables: one sqlite cannot use is moved
    aside and replaced; an error that is not the file's (a missing
    directory, no permission, a full disk) is raised."""
    try:
        return _open(path)
    except sqlite3.DatabaseError as error:
        code = getattr(error, "sqlite_errorcode", None)
        if not os.path.exists(path) or (code is not None and code & 0xFF not in FILES_FAULT):
            raise
        aside = f"{path}.corrupt-{int(time.time())}"
        os.replace(path, aside)  # (its -wal and -shm went when sqlite closed it, as statedb's)
        log.warning("monitor database %s is unreadable (%s); moved it to %s and started afresh",
                    path, error, aside)
    return _open(path)


def create(db: sqlite3.Connection) -> None:
    """Make the tables, or DatabaseError (before any change) if one of ours has other columns."""
    for table, columns in COLUMNS.items():
        found = tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        if found and found != columns:
            raise sqlite3.DatabaseError(f"table {table} has columns {', '.join(found)}")
    for statement in SCHEMA:
        db.execute(statement)


def write(db: sqlite3.Connection, samples: dict) -> None:
    """Store SAMPLES, {(series id, ts): value or None}, and roll them up."""
    rows = [(series, ts, value) for (series, ts), value in samples.items()]
    db.execute("SAVEPOINT batch")
    changes = db.total_changes
    _many(db, INSERT, rows)
    if db.total_changes - changes == len(rows):  # the usual case: every sample is new
        db.execute("RELEASE batch")
        _merge(db, rows)
        return
    # Some replace stored samples: undo, and sort the new from the replacing.
    db.execute("ROLLBACK TO batch")
    db.execute("RELEASE batch")
    new, replacing = [], []
    for row in rows:
        stored = db.execute("SELECT 1 FROM samples WHERE series = ? AND ts = ?", row[:2]).fetchone()
        (replacing if stored else new).append(row)
    _many(db, INSERT, new)
    _merge(db, new)
    db.executemany("UPDATE samples SET value = ? WHERE series = ? AND ts = ?",
                   [(value, series, ts) for series, ts, value in replacing])
    _sum_again(db, {(series, ts - ts % 60) for series, ts, _ in replacing})


def _merge(db, rows):
    """Add ROWS' values to the rollups, summed here first: one upsert per bucket."""
    minutes = {}
    for series, ts, value in rows:
        if value is None:
            continue
        bucket = minutes.get((series, ts - ts % 60))
        if bucket is None:
            minutes[series, ts - ts % 60] = [value, 1, value, value]
        else:
            bucket[0] += value
            bucket[1] += 1
            bucket[2] = min(bucket[2], value)
            bucket[3] = max(bucket[3], value)
    hours = {}
    for (series, minute), (total, count, low, high) in minutes.items():
        bucket = hours.get((series, minute - minute % 3600))
        if bucket is None:
            hours[series, minute - minute % 3600] = [total, count, low, high]
        else:
            bucket[0] += total
            bucket[1] += count
            bucket[2] = min(bucket[2], low)
            bucket[3] = max(bucket[3], high)
    for (table, _), buckets in zip(ROLLUPS, (minutes, hours)):
        _many(db, MERGE.format(table), [(*key, *bucket) for key, bucket in buckets.items()],
              UPSERT)


def _many(db, head, rows, tail=""):
    """ROWS written by HEAD + VALUES (...), ... + TAIL, CHUNK rows a statement."""
    for start in range(0, len(rows), CHUNK):
        part = rows[start:start + CHUNK]
        db.execute(_statement(head, len(part), len(part[0]), tail),
                   list(itertools.chain.from_iterable(part)))


@functools.lru_cache(maxsize=32)
def _statement(head, count, width, tail):
    row = "(" + ", ".join("?" * width) + ")"
    return head + ", ".join([row] * count) + tail


def _sum_again(db, minutes):
    """Rebuild the rollup rows of MINUTES, {(series, minute)}, and of their hours."""
    for series, minute in minutes:
        db.execute("DELETE FROM rollup_1m WHERE series = ? AND ts = ?", (series, minute))
        db.execute("INSERT INTO rollup_1m SELECT series, ?, sum(value), count(value), min(value), "
                   "max(value) FROM samples WHERE series = ? AND ts >= ? AND ts < ? "
                   "AND value IS NOT NULL GROUP BY series", (minute, series, minute, minute + 60))
    for series, hour in {(series, minute - minute % 3600) for series, minute in minutes}:
        db.execute("DELETE FROM rollup_1h WHERE series = ? AND ts = ?", (series, hour))
        db.execute("INSERT INTO rollup_1h SELECT series, ?, sum(sum), sum(count), min(min), "
                   "max(max) FROM rollup_1m WHERE series = ? AND ts >= ? AND ts < ? "
                   "GROUP BY series", (hour, series, hour, hour + 3600))


def prune(db: sqlite3.Connection, cutoffs: dict) -> tuple[int, list[str]]:
    """Delete rows older than CUTOFFS, {table: ts}; (rows removed, names of series forgotten).
    DB is in autocommit mode: each statement commits alone."""
    removed = 0
    ids = [series for (series,) in db.execute("SELECT id FROM series")]
    for table, cutoff in cutoffs.items():
        for series in ids:
            # The PRUNE_BATCH-th oldest expired row bounds each delete, found through the key.
            while deleted := db.execute(
                    f"DELETE FROM {table} WHERE series = ?1 AND ts <= (SELECT ts FROM {table} "
                    "WHERE series = ?1 AND ts < ?2 ORDER BY ts LIMIT 1 OFFSET ?3)",
                    (series, cutoff, PRUNE_BATCH - 1)).rowcount:
                removed += deleted
            removed += db.execute(f"DELETE FROM {table} WHERE series = ? AND ts < ?",
                                  (series, cutoff)).rowcount
    empty = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {table} WHERE series = series.id)"
                         for table in ("samples", "rollup_1m", "rollup_1h"))
    forgotten = [name for (name,) in db.execute(f"DELETE FROM series WHERE {empty} RETURNING name")]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return removed, forgotten
