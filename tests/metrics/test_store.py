"""The sample store: real sqlite files in tmp_path, a fake wall clock, and a real
child process killed with SIGKILL while it writes."""

import contextlib
import logging
import math
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smanager.metrics.store import Retention, SampleStore

REPO = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000  # 2023-11-14 22:13:20 UTC
HOUR = 3600  # NOW is 2720 s past an hour, 20 s past a minute


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def open_store(tmp_path, clock):
    stores = []

    def open_store(name="metrics.db", **options):
        options.setdefault("clock", clock)
        options.setdefault("flush_every", 3600)  # tests flush when they mean to
        stores.append(SampleStore(tmp_path / name, **options))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def rows(path, statement, *args):
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(statement, args).fetchall()


# -- writing and reading back --------------------------------------------------------------

def test_flushed_samples_are_the_newest_of_each_series_matched_by_pattern(store):
    store.add("load.load1", 0.5, NOW - 20)
    store.add("load.load1", 0.75, NOW - 10)
    store.add("load.load5", 2, NOW - 10)
    store.add("mem.free", 1e9)  # at the clock's now
    store.flush()
    assert store.last() == [("load.load1", 0.75, NOW - 10), ("load.load5", 2.0, NOW - 10),
                            ("mem.free", 1e9, NOW)]
    assert store.last("load.*") == [("load.load1", 0.75, NOW - 10), ("load.load5", 2.0, NOW - 10)]
    assert store.last("Load.*") == []
    assert store.names() == ["load.load1", "load.load5", "mem.free"]
    assert store.written == 4


def test_the_writer_commits_every_flush_every_seconds_unasked(open_store):
    store = open_store(flush_every=0.05)
    store.add("load.load1", 1.0, NOW)
    deadline = time.monotonic() + 5
    while not store.last() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.last() == [("load.load1", 1.0, NOW)]


def test_timestamps_are_kept_as_whole_seconds(store):
    store.add("a", 1, NOW + 0.4)
    store.add("b", 1, NOW - 0.001)  # a tick computed in floating point
    store.flush()
    assert store.last() == [("a", 1.0, NOW), ("b", 1.0, NOW)]


def test_close_commits_what_is_queued(tmp_path, clock):
    store = SampleStore(tmp_path / "metrics.db", clock=clock, flush_every=3600)
    store.add("a", 1, NOW)
    store.close()
    assert rows(tmp_path / "metrics.db", "SELECT ts, value FROM samples") == [(NOW, 1.0)]
    assert not store.add("a", 2, NOW)


def test_a_batch_sqlite_refuses_is_logged_and_counted_and_the_writer_goes_on(store, monkeypatch,
                                                                            caplog):
    def disk_full(db, samples):
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr("smanager.metrics.rollup.write", disk_full)
        store.add("new.name", 1, NOW)
        store.flush()
    assert (store.failed, store.written) == (1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        "monitor: 1 sample(s) could not be stored: database or disk is full"]
    store.add("new.name", 2, NOW)  # its series, undone with the batch, is made again
    store.flush()
    assert store.last() == [("new.name", 2.0, NOW)]


def test_bad_samples_and_reads_are_refused_at_the_call(store):
    with pytest.raises(ValueError):
        store.add("", 1)
    with pytest.raises(ValueError):
        store.add("a", "many")
    with pytest.raises(ValueError, match="agg must be one of avg, min, max, sum, count"):
        store.get("a", NOW - 60, agg="median")
    with pytest.raises(ValueError, match="step"):
        store.get("a", NOW - 60, step=0)


# -- rollups ---------------------------------------------------------------------------

def test_rollups_hold_sum_count_min_max_per_minute_and_hour_across_boundaries(store, tmp_path):
    hour = NOW - NOW % HOUR
    values = {hour - 70: 1, hour - 50: 5, hour - 1: -2, hour: 10, hour + 30: 4, hour + 60: 7}
    for ts, value in values.items():
        store.add("x", value, ts)
    store.flush()
    assert rows(tmp_path / "metrics.db", "SELECT ts, sum, count, min, max FROM rollup_1m") == [
        (hour - 120, 1.0, 1, 1.0, 1.0), (hour - 60, 3.0, 2, -2.0, 5.0),
        (hour, 14.0, 2, 4.0, 10.0), (hour + 60, 7.0, 1, 7.0, 7.0)]
    assert rows(tmp_path / "metrics.db", "SELECT ts, sum, count, min, max FROM rollup_1h") == [
        (hour - HOUR, 4.0, 3, -2.0, 5.0), (hour, 21.0, 3, 4.0, 10.0)]


def test_rollups_add_up_over_many_batches(store, tmp_path):
    minute = NOW - NOW % 60
    for ts in range(minute - 600, minute):
        store.add("x", ts % 7, ts)
        if ts % 13 == 0:
            store.flush()
    store.flush()
    expected = [(start, float(sum(ts % 7 for ts in range(start, start + 60))), 60,
                 float(min(ts % 7 for ts in range(start, start + 60))), 6.0)
                for start in range(minute - 600, minute, 60)]
    assert rows(tmp_path / "metrics.db", "SELECT ts, sum, count, min, max FROM rollup_1m") == expected


def test_a_repeated_sample_replaces_the_first_and_is_counted_once(store, tmp_path):
    minute = NOW - NOW % 60
    store.add("x", 1, minute)
    store.add("x", 9, minute + 1)
    store.add("x", 9, minute + 1)  # the same second twice in one batch
    store.flush()
    store.add("x", 5, minute)  # replaces the minute's minimum, in a later batch
    store.add("x", 3, minute + 2)  # new, in the same batch
    store.flush()
    store.add("x", math.nan, minute + 1)  # the maximum becomes a failed collection
    store.flush()
    assert rows(tmp_path / "metrics.db", "SELECT ts, value FROM samples") == [
        (minute, 5.0), (minute + 1, None), (minute + 2, 3.0)]
    for table in ("rollup_1m", "rollup_1h"):
        assert rows(tmp_path / "metrics.db", f"SELECT sum, count, min, max FROM {table}") == [
            (8.0, 2, 3.0, 5.0)]
    store.add("x", math.nan, minute)
    store.add("x", math.nan, minute + 2)
    store.flush()
    assert rows(tmp_path / "metrics.db", "SELECT count(*) FROM rollup_1m") == [(0,)]
    assert rows(tmp_path / "metrics.db", "SELECT count(*) FROM rollup_1h") == [(0,)]


def test_nan_is_stored_as_null_and_left_out_of_rollups(store, tmp_path):
    store.add("disk.used", 4, NOW - 10)
    store.add("disk.used", math.nan, NOW)  # the collector failed
    store.flush()
    assert rows(tmp_path / "metrics.db", "SELECT ts, value FROM samples") == [
        (NOW - 10, 4.0), (NOW, None)]
    assert rows(tmp_path / "metrics.db", "SELECT sum, count, min, max FROM rollup_1m") == [
        (4.0, 1, 4.0, 4.0)]
    assert store.last() == [("disk.used", None, NOW)]
    assert store.get("disk.used", NOW - 60, step=1, agg="count") == [(NOW - 10, 1)]


# -- reading the right tier ------------------------------------------------------------

@pytest.mark.parametrize("step, since_ago, tier", [
    (1, HOUR, "raw"), (59, 14 * 86400, "raw"), (10, 15 * 86400, "1m"), (60, HOUR, "1m"),
    (3599, 90 * 86400, "1m"), (60, 91 * 86400, "1h"), (3600, HOUR, "1h"), (86400, 86400, "1h")])
def test_the_tier_is_the_finest_no_wider_than_step_that_still_keeps_since(store, step, since_ago,
                                                                           tier):
    assert store.tier(NOW - since_ago, step) == tier


@pytest.fixture
def two_hours(store):
    """x = ts % 97 every 10 s for the two hours before NOW."""
    start = NOW - 2 * HOUR
    samples = {ts: float(ts % 97) for ts in range(start, NOW, 10)}
    for ts, value in samples.items():
        store.add("x", value, ts)
    store.flush()
    return samples


AGGS = {"avg": lambda values: sum(values) / len(values), "min": min, "max": max, "sum": sum,
        "count": len}


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("step", [30, 300, 7200])  # raw, 1m, 1h
def test_get_buckets_each_tier_with_each_agg(store, two_hours, agg, step):
    since = NOW - 2 * HOUR
    buckets = {}
    for ts, value in two_hours.items():
        buckets.setdefault(ts - ts % step, []).append(value)
    expected = [(start, pytest.approx(AGGS[agg](values))) for start, values in sorted(buckets.items())]
    assert store.get("x", since, NOW, step=step, agg=agg) == expected


def test_past_the_raw_retention_reads_come_from_the_rollups_in_their_rows(store, two_hours,
                                                                            clock):
    def totals(width):
        buckets = {}
        for ts, value in two_hours.items():
            buckets[ts - ts % width] = buckets.get(ts - ts % width, 0) + value
        return sorted(buckets.items())

    clock.now = NOW + 30 * 86400
    assert store.prune() == len(two_hours)
    assert store.get("x", NOW - 2 * HOUR, NOW, step=10, agg="sum") == totals(60)
    clock.now = NOW + 100 * 86400
    assert store.get("x", NOW - 2 * HOUR, NOW, step=10, agg="sum") == totals(HOUR)
    assert store.get("x", NOW - 2 * HOUR, NOW, step=10, agg="count") == [
        (start, len([ts for ts in two_hours if start <= ts < start + HOUR]))
        for start, _ in totals(HOUR)]
    assert store.get("nothing", NOW - HOUR, NOW) == []


# -- bounds --------------------------------------------------------------------------------

def test_a_full_queue_drops_and_counts(open_store):
    store = open_store(max_queued=10)
    accepted = [store.add("x", i, NOW - 100 + i) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert store.dropped == 5
    store.flush()
    assert store.written == 10
    assert [value for _, value in store.get("x", NOW - 100, NOW, step=1, agg="max")] == list(range(10))


def test_samples_older_than_the_raw_retention_are_refused_and_counted(store, tmp_path):
    store.add("x", 1, NOW - 15 * 86400)
    store.add("x", 2, NOW)
    store.flush()
    assert (store.too_old, store.written) == (1, 1)
    assert rows(tmp_path / "metrics.db", "SELECT value FROM samples") == [(2.0,)]


def test_retention_prunes_each_tier_at_its_age(open_store, tmp_path, clock):
    store = open_store(retention=Retention(raw=2 * HOUR, minute=86400, hour=7 * 86400))
    start = NOW - NOW % HOUR
    for ts in range(start, start + HOUR, 60):  # one hour: 60 samples, 60 minutes, 1 hour
        clock.now = ts
        store.add("x", 1, ts)
        store.add("gone", 1, ts) if ts == start else None
    store.flush()
    table_rows = lambda: store.size_report()["rows"]  # noqa: E731
    assert table_rows() == {"series": 2, "samples": 61, "rollup_1m": 61, "rollup_1h": 2}
    clock.now = start + 2 * HOUR + 90  # the first minute's raw rows are past 2 hours
    assert store.prune() == 2
    assert table_rows() == {"series": 2, "samples": 59, "rollup_1m": 61, "rollup_1h": 2}
    assert store.prune(start + 3 * HOUR) == 59
    assert table_rows() == {"series": 2, "samples": 0, "rollup_1m": 61, "rollup_1h": 2}
    assert store.prune(start + 86400 + HOUR // 2) == 0  # minute rows go by whole hours
    assert store.prune(start + 86400 + 2 * HOUR) == 61
    assert table_rows() == {"series": 2, "samples": 0, "rollup_1m": 0, "rollup_1h": 2}
    assert store.prune(start + 8 * 86400) == 2
    assert table_rows() == {"series": 0, "samples": 0, "rollup_1m": 0, "rollup_1h": 0}
    assert store.names() == []
    store.add("x", 5, clock.now)  # a forgotten name comes back as a new series
    store.flush()
    assert store.last() == [("x", 5.0, clock.now)]
    assert os.path.getsize(tmp_path / "metrics.db-wal") < 64 * 1024


def test_a_prune_deletes_in_batches_to_the_end(store, tmp_path, clock):
    for ts in range(NOW - 12_000, NOW):
        store.add("x", 1, ts)
    store.flush()
    assert store.prune(NOW + 14 * 86400) == 12_000 - 20  # the last minute is kept whole
    assert store.size_report()["rows"]["samples"] == 20


# -- the file ------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["not a database", "another program's samples table"])
def test_a_corrupt_file_is_moved_aside_with_one_warning_and_replaced(tmp_path, clock, caplog,
                                                                    damage):
    path = tmp_path / "metrics.db"
    if damage == "not a database":
        path.write_bytes(b"this is not a database\n" * 200)
        (tmp_path / "metrics.db-wal").write_bytes(b"a stray log")
        reason = "file is not a database"
    else:
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE samples (name TEXT, value REAL)")
        reason = "table samples has columns name, value"
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="smanager.monitor"):
        store = SampleStore(path, clock=clock)
    try:
        store.add("x", 1, NOW)
        store.flush()
        assert store.last() == [("x", 1.0, NOW)]
    finally:
        store.close()
    [aside] = tmp_path.glob("metrics.db.corrupt-*")
    assert aside.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.db", aside.name]
    assert [r.getMessage() for r in caplog.records] == [
        f"monitor database {path} is unreadable ({reason}); moved it to {aside} and started afresh"]


def test_an_error_that_is_not_the_files_is_raised_and_nothing_is_moved(tmp_path):
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        SampleStore(tmp_path / "no such directory" / "metrics.db")
    (tmp_path / "metrics.db").mkdir()  # there, but sqlite cannot open it
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        SampleStore(tmp_path / "metrics.db")
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.db"]


def test_readers_during_writes_see_whole_batches_and_the_wal_stays_bounded(open_store, tmp_path):
    store = open_store(clock=time.time, flush_every=0.05)
    path = tmp_path / "metrics.db"
    first = int(time.time()) - 20_000
    writing = threading.Event()
    writing.set()
    problems, largest_wal = [], [0]

    def read():
        db = sqlite3.connect(path)
        seen = 0
        try:
            while writing.is_set():
                # One statement, one snapshot: raw rows and rollups committed together.
                raw, minute, hour = db.execute(
                    "SELECT (SELECT count(*) FROM samples), (SELECT total(count) FROM rollup_1m), "
                    "(SELECT total(count) FROM rollup_1h)").fetchone()
                counted = sum(count for _, count in store.get("s0", first, step=20_000, agg="count"))
                if not raw == minute == hour or counted < seen:
                    problems.append((raw, minute, hour, counted, seen))
                seen = counted
                store.last("s1*")
                largest_wal[0] = max(largest_wal[0], os.path.getsize(f"{path}-wal"))
        except Exception as error:
            problems.append(error)
        finally:
            db.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for second in range(10_000):
            for series in range(20):
                store.add(f"s{series}", second, first + second)
            if second % 1000 == 999:
                store.flush()  # keeps the queue from overflowing
    finally:
        writing.clear()
        for reader in readers:
            reader.join(30)
    assert problems == []
    assert (store.written, store.dropped) == (200_000, 0)
    assert sum(count for _, count in store.get("s0", first, step=20_000, agg="count")) == 10_000
    assert 0 < largest_wal[0] < 8 * 2**20  # checkpointed: unchecked it passes 14 MB here


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from smanager.metrics.store import SampleStore
store = SampleStore(sys.argv[2], flush_every=0.2)
start = int(time.time())
print("start", start, flush=True)
reported = written = 0
while True:
    for _ in range(200):
        if not store.add("kill.test", written, start + written):
            sys.exit("dropped a sample")
        written += 1
    time.sleep(0.002)
    if store.written != reported:
        reported = store.written
        print("committed", reported, flush=True)
"""


def test_after_kill_9_during_writes_every_committed_sample_is_intact(tmp_path):
    path = tmp_path / "metrics.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO), str(path)],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines, pending = [], b""
    try:
        deadline = time.monotonic() + 30
        while len(lines) < 41 and time.monotonic() < deadline:  # start and 40 commits
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            chunk = os.read(child.stdout.fileno(), 4096) if ready else b""
            if ready and not chunk:
                break  # the child ended
            pending += chunk
            *complete, pending = pending.split(b"\n")
            lines += [line.decode() for line in complete]
        os.kill(child.pid, signal.SIGKILL)  # mid-stream: it is still adding
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(lines) == 41, lines
    start = int(lines[0].split()[1])
    committed = int(lines[-1].split()[1])
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT count(*), min(ts), max(ts), sum(value = ts - ?) FROM samples "
                          "WHERE ts < ?", (start, start + committed)).fetchone() == (
            committed, start, start + committed - 1, committed)
        stored = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        for table in ("rollup_1m", "rollup_1h"):  # the rollups of exactly what was committed
            assert db.execute(f"SELECT sum(count) FROM {table}").fetchone() == (stored,)
