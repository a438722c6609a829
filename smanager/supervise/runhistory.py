"""The history of script runs: a row per run, result included, in the state database.

Rules:

- ``RunHistory(dir)`` creates DIR (mode 0o700) and keeps its table ``runs`` in
  DIR/state.db, the database proc's StateDB uses: both may be open at once (WAL;
  every write is one short autocommit statement).  A database sqlite cannot use
  is moved aside and replaced, exactly as StateDB does.
- ``begin`` gives a run id that is never given again, even after pruning
  (AUTOINCREMENT, and the ids are counted here from the highest ever given).
  Params are stored as given: the caller masks secrets first.
- ``finish`` records the end and the result (a Pyjojo-shaped dict, as JSON) in
  the same row: a run is never ended without its result.  An id not begun here,
  or finished already, is a KeyError.  ``get`` answers ``"result": None`` for a
  run without one (running, lost) or one that cannot be read back.
- Writes are kept and committed together by ``flush()``: at once without
  ``defer``; with it, ``defer(flush)`` is asked once per batch (the scripts
  service passes "in 50 ms"), so a trivial run's two writes leave its path and
  a busy minute costs a commit per batch, not two per run.  Every read flushes
  first, so it sees every write made before it.  A kill -9 loses at most one
  batch: runs the history then never shows (a record for people, not a ledger).
  A batch sqlite refuses is logged and dropped, never retried forever.
- A run's status is "running", "ok" (retcode 0), "failed" (other retcode),
  "killed" (a signal), "timed out" (killed at its timeout), or "lost" (still
  running when the server that started it died; ``mark_lost`` at start-up).
- ``prune`` removes runs begun more than keep_days ago and those beyond the newest
  keep_per_script of each script, never a running one, in batches.
"""

import json
import logging
import os
import sqlite3
import time

from smanager.supervise import statedb

log = logging.getLogger("smanager.scripts")

# StateDB's own opener, private there: one way to open state.db and recover a broken one.
open_or_replace = statedb._open_or_replace

SQLITE_MAX = 2**63 - 1  # sqlite's largest integer: a bigger one cannot even be asked for
PRUNE_BATCH = 200  # rows per DELETE: proc's writes never wait long behind ours
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, script TEXT NOT NULL, user TEXT,
        params TEXT NOT NULL, started REAL NOT NULL, ended REAL, retcode INTEGER,
        signal INTEGER, timed_out INTEGER NOT NULL DEFAULT 0,
        truncated INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0, result TEXT)""",
    "CREATE INDEX IF NOT EXISTS runs_by_script ON runs (script, id)",
    "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started)",
)
COLUMNS = "id, script, user, params, started, ended, retcode, signal, timed_out, truncated, lost"
NOT_RUNNING = "(ended IS NOT NULL OR lost)"


class RunHistory:
    """The runs table of DIR/state.db."""

    def __init__(self, state_dir: str, *, keep_days: float = 30, keep_per_script: int = 1000,
                 clock=time.time, defer=None):
        if not keep_days > 0 or keep_per_script < 1:
            raise ValueError("run history must keep at least one day and one run per script")
        self.keep_days = keep_days
        self.keep_per_script = keep_per_script
        self._clock = clock
        self._defer = defer
        self._writes = []  # (statement, arguments) not yet committed
        self._flush_soon = None  # what defer gave, while a flush is due
        self._unfinished = set()  # ids begun here and not finished
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self._db = open_or_replace(os.path.join(state_dir, statedb.DB_NAME))
        try:
            for statement in SCHEMA:
                self._db.execute(statement)
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(runs)")]
            if "result" not in columns:  # a table from before results were kept in it
                self._db.execute("ALTER TABLE runs ADD COLUMN result TEXT")
            self._next_id = 1 + max(
                self._db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = 'runs'")
                .fetchone()[0] or 0,
                self._db.execute("SELECT max(id) FROM runs").fetchone()[0] or 0)
        except BaseException:
            self.close()
            raise

    def begin(self, script: str, *, user: str | None, params: dict[str, str]) -> int:
        run_id, self._next_id = self._next_id, self._next_id + 1
        self._write("INSERT INTO runs (id, script, user, params, started) VALUES (?, ?, ?, ?, ?)",
                    (run_id, script, user, json.dumps(params), self._clock()))
        self._unfinished.add(run_id)
        return run_id

    def finish(self, run_id: int, *, retcode: int | None, signal: int | None, timed_out: bool,
               truncated: bool, result: dict) -> None:
        if run_id not in self._unfinished:
            raise KeyError(f"no run {run_id} in the history")
        self._unfinished.discard(run_id)
        # A lone surrogate in a string becomes the JSON escape \udcXX, which reads back as itself.
        text = json.dumps(result, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
        self._write("UPDATE runs SET ended = ?, retcode = ?, signal = ?, timed_out = ?, "
                    "truncated = ?, result = ? WHERE id = ?",
                    (self._clock(), retcode, signal, timed_out, truncated, text, run_id))

    def flush(self) -> None:
        """Commit the writes kept so far, in one transaction."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        writes, self._writes = self._writes, []
        if not writes or self._db is None:
            return
        try:
            self._db.execute("BEGIN")
            for statement, arguments in writes:
                self._db.execute(statement, arguments)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            log.exception("scripts: %d write(s) to the run history were lost", len(writes))
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _write(self, statement, arguments):
        self._writes.append((statement, arguments))
        if self._defer is None:
            self.flush()
        elif self._flush_soon is None:
            self._flush_soon = self._defer(self.flush)

    def runs(self, script: str | None = None, n: int = 20) -> list[dict]:
        self.flush()
        limit = min(max(n, 0), SQLITE_MAX)  # sqlite reads a negative LIMIT as "no limit"
        if script is None:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE script = ? "
                                    "ORDER BY id DESC LIMIT ?", (script, limit))
        return [_run_of(row) for row in rows]

    def get(self, run_id: int) -> dict | None:
        if not 0 < run_id <= SQLITE_MAX:  # ids are positive sqlite integers
            return None
        self.flush()
        row = self._db.execute(f"SELECT {COLUMNS}, result FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
        if row is None:
            return None
        run = _run_of(row[:-1])
        run["result"] = _result_of(run_id, row[-1])
        return run

    def mark_lost(self) -> int:
        self.flush()
        return self._db.execute(f"UPDATE runs SET lost = 1 WHERE NOT {NOT_RUNNING}").rowcount

    def prune(self) -> int:
        self.flush()
        cutoff = self._clock() - self.keep_days * 86400
        removed = self._remove_all(
            f"SELECT id FROM runs WHERE started < ? AND {NOT_RUNNING} LIMIT ?", (cutoff,))
        scripts = [script for (script,) in self._db.execute("SELECT DISTINCT script FROM runs")]
        for script in scripts:
            # Running rows count among the newest kept, so they are never beyond them.
            removed += self._remove_all(f"SELECT id FROM runs WHERE script = ? AND {NOT_RUNNING} "
                                        "AND id < (SELECT min(id) FROM (SELECT id FROM runs "
                                        "WHERE script = ? ORDER BY id DESC LIMIT ?)) LIMIT ?",
                                        (script, script, self.keep_per_script))
        return removed

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _remove_all(self, select_ids, args):
        """Every run SELECT_IDS (ending in LIMIT ?) finds, a batch at a time; how many."""
        removed = 0
        while ids := [run_id for (run_id,) in self._db.execute(select_ids, (*args, PRUNE_BATCH))]:
            marks = ", ".join("?" * len(ids))
            self._db.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids)
            removed += len(ids)
        return removed


def _run_of(row):
    """A row as the dict callers see, with its status."""
    run_id, script, user, params, started, ended, retcode, signal, timed_out, truncated, lost = row
    if lost:
        status = "lost"
    elif ended is None:
        status = "running"
    elif timed_out:
        status = "timed out"  # before "killed": a run past its timeout ends by a signal
    elif signal is not None:
        status = "killed"
    else:
        status = "ok" if retcode == 0 else "failed"
    return {"id": run_id, "script": script, "user": user, "params": json.loads(params),
            "started": started, "ended": ended,
            "duration": None if ended is None else ended - started, "retcode": retcode,
            "signal": signal, "timed_out": bool(timed_out), "truncated": bool(truncated),
            "status": status}


def _result_of(run_id, text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        log.warning("cannot read the result of run %d: %s", run_id, error)
        return None
