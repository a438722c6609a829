"""The scripts service's run history: rows, results included, in the shared state.db
(real sqlite in tmp_path, time from a fake clock)."""

import logging
import os
import sqlite3
import stat

import pytest

from smanager.supervise.runhistory import RunHistory
from smanager.supervise.statedb import Record, StateDB

DAY = 86400
ECHO_RESULT = {"retcode": 0, "stdout": ["hi"], "stderr": [], "return_values": {"k": "v"}}


class FakeClock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def history(state_dir, clock):
    runs = RunHistory(str(state_dir), clock=clock)
    yield runs
    runs.close()


def finished_run(history, script="echo", retcode=0, signal=None, timed_out=False, result=None):
    run_id = history.begin(script, user="alice", params={})
    history.finish(run_id, retcode=retcode, signal=signal, timed_out=timed_out, truncated=False,
                   result=ECHO_RESULT if result is None else result)
    return run_id


def stored_results(state_dir):
    """The run ids whose result the database holds."""
    with sqlite3.connect(state_dir / "state.db") as db:
        return [run_id for (run_id,) in db.execute(
            "SELECT id FROM runs WHERE result IS NOT NULL ORDER BY id")]


def test_a_finished_run_reads_back_with_its_params_times_and_result(history, clock):
    run_id = history.begin("echo", user="alice", params={"text": "hi", "password": "FILTERED"})
    clock.now += 2.5
    history.finish(run_id, retcode=0, signal=None, timed_out=False, truncated=True,
                   result=ECHO_RESULT)

    assert history.get(run_id) == {
        "id": run_id, "script": "echo", "user": "alice",
        "params": {"text": "hi", "password": "FILTERED"},
        "started": 1_700_000_000.0, "ended": 1_700_000_002.5, "duration": 2.5,
        "retcode": 0, "signal": None, "timed_out": False, "truncated": True, "status": "ok",
        "result": ECHO_RESULT}


def test_the_state_directory_is_private(history, state_dir):
    finished_run(history)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700


def test_a_running_run_has_no_end_duration_or_result(history):
    run_id = history.begin("echo", user=None, params={})

    run = history.get(run_id)
    assert (run["status"], run["ended"], run["duration"], run["result"], run["user"]) == (
        "running", None, None, None, None)


def test_runs_lists_newest_first_and_at_most_n(history, clock):
    ids = []
    for _ in range(5):
        ids.append(finished_run(history))
        clock.now += 1

    assert [run["id"] for run in history.runs()] == ids[::-1]
    assert [run["id"] for run in history.runs(n=2)] == ids[:-3:-1]
    assert history.runs(n=0) == []
    assert history.runs(n=-1) == []
    assert "result" not in history.runs()[0]


def test_runs_of_one_script_leave_the_others_out(history):
    first_echo = finished_run(history, "echo")
    finished_run(history, "deploy")
    second_echo = finished_run(history, "echo")

    assert [run["id"] for run in history.runs("echo")] == [second_echo, first_echo]
    assert [run["script"] for run in history.runs("deploy")] == ["deploy"]
    assert history.runs("nothing") == []


def test_each_way_a_run_ends_has_its_status(history):
    ok = finished_run(history, retcode=0)
    failed = finished_run(history, retcode=3)
    killed = finished_run(history, retcode=None, signal=9)
    timed_out = finished_run(history, retcode=None, signal=15, timed_out=True)
    running = history.begin("echo", user="alice", params={})

    statuses = {run["id"]: run["status"] for run in history.runs()}
    assert statuses == {ok: "ok", failed: "failed", killed: "killed", timed_out: "timed out",
                        running: "running"}


def test_runs_a_dead_server_left_running_are_marked_lost_at_start_up(state_dir, clock):
    before = RunHistory(str(state_dir), clock=clock)
    done = finished_run(before)
    left = [before.begin("echo", user="alice", params={}) for _ in range(2)]
    before.close()  # the server dies here

    after = RunHistory(str(state_dir), clock=clock)
    try:
        assert after.mark_lost() == 2
        assert after.mark_lost() == 0
        statuses = {run["id"]: run["status"] for run in after.runs()}
        assert statuses == {done: "ok", left[0]: "lost", left[1]: "lost"}
    finally:
        after.close()


def test_prune_removes_runs_older_than_keep_days_with_their_results(history, clock, state_dir):
    old = finished_run(history)
    clock.now += 29 * DAY
    recent = finished_run(history)
    clock.now += 2 * DAY

    assert history.prune() == 1
    assert [run["id"] for run in history.runs()] == [recent]
    assert stored_results(state_dir) == [recent]
    assert history.get(old) is None


def test_prune_keeps_only_the_newest_runs_of_each_script_in_batches(state_dir, clock):
    history = RunHistory(str(state_dir), keep_per_script=3, clock=clock)
    try:
        echoes = [finished_run(history, "echo") for _ in range(450)]  # more than one batch
        deploys = [finished_run(history, "deploy") for _ in range(2)]

        assert history.prune() == 447
        assert [run["id"] for run in history.runs(n=100)] == deploys[::-1] + echoes[:-4:-1]
        kept = echoes[-3:] + deploys
        assert stored_results(state_dir) == sorted(kept)
        assert history.prune() == 0
    finally:
        history.close()


def test_prune_never_removes_a_running_run(state_dir, clock):
    history = RunHistory(str(state_dir), keep_days=1, keep_per_script=1, clock=clock)
    try:
        running = history.begin("echo", user="alice", params={})
        finished_run(history)
        clock.now += 2 * DAY

        assert history.prune() == 1
        assert [run["id"] for run in history.runs()] == [running]
    finally:
        history.close()


def test_run_ids_are_not_reused_after_pruning_everything(state_dir, clock):
    history = RunHistory(str(state_dir), clock=clock)
    ids = [finished_run(history) for _ in range(3)]
    clock.now += 31 * DAY
    assert history.prune() == 3
    assert history.begin("echo", user="alice", params={}) == ids[-1] + 1
    history.close()

    reopened = RunHistory(str(state_dir), clock=clock)
    try:
        assert reopened.begin("echo", user="alice", params={}) == ids[-1] + 2
    finally:
        reopened.close()


def test_a_garbage_state_db_is_moved_aside_and_a_fresh_history_begun(state_dir, clock, caplog):
    state_dir.mkdir(parents=True)
    (state_dir / "state.db").write_bytes(b"this is not a database" * 100)

    with caplog.at_level(logging.WARNING):
        history = RunHistory(str(state_dir), clock=clock)
    try:
        assert len(list(state_dir.glob("state.db.corrupt-*"))) == 1
        assert any("unreadable" in record.getMessage() for record in caplog.records)
        run_id = finished_run(history)
        assert history.get(run_id)["status"] == "ok"
    finally:
        history.close()


def test_a_table_from_before_results_were_kept_in_it_gains_the_column(state_dir, clock):
    state_dir.mkdir(parents=True)
    with sqlite3.connect(state_dir / "state.db") as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, script TEXT NOT NULL, "
                   "user TEXT, params TEXT NOT NULL, started REAL NOT NULL, ended REAL, "
                   "retcode INTEGER, signal INTEGER, timed_out INTEGER NOT NULL DEFAULT 0, "
                   "truncated INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0)")
        db.execute("INSERT INTO runs (script, params, started, ended, retcode) "
                   "VALUES ('old', '{}', 1, 2, 0)")
    db.close()
    history = RunHistory(str(state_dir), clock=clock)
    try:
        assert history.get(1)["result"] is None and history.get(1)["status"] == "ok"
        assert history.get(finished_run(history))["result"] == ECHO_RESULT
    finally:
        history.close()


def test_state_db_and_run_history_share_the_directory_at_once(state_dir, clock):
    children = StateDB(str(state_dir))
    history = RunHistory(str(state_dir), clock=clock)
    try:
        children.record(Record(name="web", pid=1234, pgid=1234, start_time=5, argv0="web",
                               port=None, started_at=clock()))
        run_id = history.begin("echo", user="alice", params={})
        children.forget("web")
        children.record(Record(name="db", pid=99, pgid=99, start_time=7, argv0="db", port=5432,
                               started_at=clock()))
        history.finish(run_id, retcode=0, signal=None, timed_out=False, truncated=False,
                       result=ECHO_RESULT)

        assert [record.name for record in children.records()] == ["db"]
        assert history.get(run_id)["result"] == ECHO_RESULT
    finally:
        history.close()
        children.close()

    reopened = StateDB(str(state_dir))
    try:
        assert [record.port for record in reopened.records()] == [5432]
    finally:
        reopened.close()


def test_an_unreadable_result_is_answered_with_none_and_logged(history, state_dir, caplog):
    unreadable = finished_run(history)
    with sqlite3.connect(state_dir / "state.db") as db:
        db.execute("UPDATE runs SET result = ? WHERE id = ?", ('{"retcode": 0, "std', unreadable))
    db.close()

    with caplog.at_level(logging.WARNING, logger="smanager.scripts"):
        assert history.get(unreadable)["result"] is None
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        f"cannot read the result of run {unreadable}"]
    assert history.get(unreadable)["status"] == "ok"
    assert history.get(12345) is None


def test_a_large_unicode_result_round_trips_byte_for_byte(history):
    lines = [f"ligne {n}: été ✓ 日本語 \U0001f600" for n in range(40_000)]  # about 1.5 MB
    result = {"retcode": 0, "stdout": lines, "stderr": ["bad byte \udcff kept as written"],
              "return_values": {"clé": "välue"}}

    run_id = finished_run(history, result=result)

    assert history.get(run_id)["result"] == result


def test_finishing_an_unknown_run_is_an_error_and_writes_nothing(history, state_dir):
    with pytest.raises(KeyError, match="no run 5 in the history"):
        history.finish(5, retcode=0, signal=None, timed_out=False, truncated=False,
                       result=ECHO_RESULT)
    assert stored_results(state_dir) == []


@pytest.mark.parametrize("limits", [{"keep_days": 0}, {"keep_per_script": 0}])
def test_a_history_that_would_keep_nothing_is_refused(state_dir, limits):
    with pytest.raises(ValueError, match="at least one day and one run"):
        RunHistory(str(state_dir), **limits)


class Deferred:
    """A defer() that keeps the flush it is given until the test calls it."""

    def __init__(self):
        self.asked = []

    def __call__(self, flush):
        self.asked.append(flush)
        return self

    def cancel(self):
        self.asked.clear()

    def run(self):
        self.asked.pop()()


def committed(state_dir):
    """What another connection (another process) sees: (id, ended is set)."""
    with sqlite3.connect(state_dir / "state.db") as db:
        rows = db.execute("SELECT id, ended IS NOT NULL FROM runs ORDER BY id").fetchall()
    db.close()
    return rows


def test_deferred_writes_are_committed_together_once_per_batch(state_dir, clock):
    defer = Deferred()
    history = RunHistory(str(state_dir), clock=clock, defer=defer)
    try:
        first = finished_run(history)
        second = history.begin("echo", user=None, params={})
        assert len(defer.asked) == 1  # one flush asked for the whole batch
        assert committed(state_dir) == []
        defer.run()
        assert committed(state_dir) == [(first, 1), (second, 0)]
    finally:
        history.close()


def test_a_read_sees_every_write_before_it_though_the_batch_is_not_due(state_dir, clock):
    defer = Deferred()
    history = RunHistory(str(state_dir), clock=clock, defer=defer)
    try:
        run_id = finished_run(history)
        assert history.get(run_id)["result"] == ECHO_RESULT
        assert defer.asked == []  # the read flushed: nothing left to do
    finally:
        history.close()


def test_close_commits_what_is_kept_and_ids_go_on_from_it(state_dir, clock):
    history = RunHistory(str(state_dir), clock=clock, defer=Deferred())
    run_id = finished_run(history)
    history.close()
    assert committed(state_dir) == [(run_id, 1)]
    reopened = RunHistory(str(state_dir), clock=clock)
    try:
        assert reopened.begin("echo", user=None, params={}) == run_id + 1
    finally:
        reopened.close()


def test_a_batch_sqlite_refuses_is_logged_and_dropped_and_the_next_one_committed(
        state_dir, clock, caplog):
    defer = Deferred()
    history = RunHistory(str(state_dir), clock=clock, defer=defer)
    try:
        taken = history.begin("echo", user=None, params={})
        with sqlite3.connect(state_dir / "state.db") as other:  # another writer took the id
            other.execute("INSERT INTO runs (id, script, params, started) VALUES (?, 'x', '{}', 0)",
                          (taken,))
        other.close()
        with caplog.at_level(logging.ERROR, logger="smanager.scripts"):
            defer.run()
        assert "1 write(s) to the run history were lost" in caplog.text
        later = finished_run(history)
        defer.run()
        assert committed(state_dir) == [(taken, 0), (later, 1)]
    finally:
        history.close()


def test_finishing_a_run_twice_is_an_error(history):
    run_id = finished_run(history)
    with pytest.raises(KeyError):
        history.finish(run_id, retcode=0, signal=None, timed_out=False, truncated=False,
                       result=ECHO_RESULT)
