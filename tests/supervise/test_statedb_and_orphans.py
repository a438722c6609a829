"""The state directory's lock, the record of running children, and the sweep of
what a previous smanager left (real child processes, each stopped by its test)."""

import asyncio
import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from helpers import ROOT, TIMEOUT, until

from smanager.supervise.orphans import is_same_process, process_start_time, sweep
from smanager.supervise.statedb import Record, StateDB, StateDirBusy, boot_id


def is_alive(pid, born):
    """The process that had PID and started at BORN still runs.  (pid_max is often
    32,768 and the suite starts thousands of processes, so a dead process's pid may
    be another's a moment later: the start time tells them apart.)"""
    return born is not None and process_start_time(pid) == born


NO_SUCH_PID = 4194305  # above the largest pid_max Linux allows
BLOCK_TERM_AND_CONT = ("import signal, sys; "
                       "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCONT}); "
                       "print('ready', flush=True); sys.stdin.read()")


@pytest.fixture
def db(tmp_path):
    state = StateDB(str(tmp_path / "state"))
    yield state
    state.close()


@pytest.fixture
def spawn():
    """Start a program in its own session; every process a test starts or
    learns of (``also``) is killed at the end if it is still the same process."""
    started, known = [], []

    def start(*argv, read_line=False, env=None):
        child = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE if read_line else subprocess.DEVNULL,
                                 env=env)
        started.append(child)
        known.append((child.pid, process_start_time(child.pid)))
        return child

    def also(pid):
        known.append((pid, process_start_time(pid)))

    start.also = also
    yield start
    for pid, start_time in known:
        with contextlib.suppress(ProcessLookupError):
            process = os.pidfd_open(pid)  # then the start time: the pidfd is surely that process
            try:
                if process_start_time(pid) == start_time:
                    signal.pidfd_send_signal(process, signal.SIGKILL)
            finally:
                os.close(process)
    for child in started:
        child.stdin.close()
        if child.stdout:
            child.stdout.close()
        child.wait(TIMEOUT)


def record_of(pid, name="web", start_time=None, boot=None):
    """The record proc would have written for PID, a session leader."""
    return Record(name=name, pid=pid, pgid=pid, argv0="prog", port=None, started_at=time.time(),
                  start_time=process_start_time(pid) if start_time is None else start_time,
                  boot_id=boot_id() if boot is None else boot)


AS_PROC_STARTS_IT = {**os.environ, "SMANAGER_PROGRAM": "web"}  # the mark proc gives its programs


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def pending_group_signals(pid):
    """The signals sent to PID's process and still pending (it blocks them)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("ShdPnd:"))
    mask = int(line.split()[1], 16)
    return {signal.Signals(number) for number in range(1, 65) if mask & (1 << (number - 1))}


# -- the lock ------------------------------------------------------------------------------

def test_a_second_statedb_in_the_same_process_is_refused_naming_the_holder(db):
    with pytest.raises(StateDirBusy) as refused:
        StateDB(db.state_dir)
    assert str(refused.value) == (f"state directory {db.state_dir} is in use by another "
                                  f"smanager (pid {os.getpid()})")


def test_a_statedb_held_by_another_process_is_refused_until_it_lets_go(tmp_path, spawn):
    state_dir = str(tmp_path / "state")
    holder = spawn(sys.executable, "-c",
                   "import sys; sys.path.insert(0, sys.argv[1]);"
                   "from smanager.supervise.statedb import StateDB; StateDB(sys.argv[2]);"
                   "print('locked', flush=True); sys.stdin.read()",
                   str(ROOT), state_dir, read_line=True)
    assert holder.stdout.readline() == b"locked\n"
    with pytest.raises(StateDirBusy, match=rf"\(pid {holder.pid}\)$"):
        StateDB(state_dir)
    holder.stdin.close()
    assert holder.wait(TIMEOUT) == 0
    StateDB(state_dir).close()


def open_files_under(directory):
    """The files of DIRECTORY this process holds open."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor listdir used
            held.add(os.readlink(f"/proc/self/fd/{fd}"))
    return {name for name in held if os.path.dirname(name) == str(directory)}


def test_close_releases_every_file_and_may_be_called_twice(tmp_path):
    state_dir = tmp_path / "state"
    first = StateDB(str(state_dir))
    assert open_files_under(state_dir)
    first.close()
    first.close()
    assert open_files_under(state_dir) == set()
    StateDB(str(state_dir)).close()


def test_the_state_directory_is_private_and_the_lock_file_holds_only_our_pid(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    (state_dir / "proc.lock").write_text("4194304 left by a longer-lived pid\n")
    state = StateDB(str(tmp_path / "new" / "state"))
    state.close()
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "state").st_mode) == 0o700
    state = StateDB(str(state_dir))
    try:
        assert (state_dir / "proc.lock").read_text() == f"{os.getpid()}\n"
    finally:
        state.close()


# -- the records ---------------------------------------------------------------------------

def test_records_survive_a_reopen_and_are_replaced_by_name(tmp_path):
    state_dir = str(tmp_path / "state")
    web = Record("web", 100, 100, 5555, "/usr/bin/web", 8080, 1700000000.5)
    worker = Record("worker", 200, 200, 6666, "worker", None, 1700000001.0)
    state = StateDB(state_dir)
    state.record(web)
    state.record(worker)
    state.record(web := Record("web", 300, 300, 7777, "/usr/bin/web", 8081, 1700000002.0))
    state.close()
    state = StateDB(state_dir)
    try:
        assert state.records() == [web, worker]
        state.forget("worker")
        state.forget("never-recorded")
        assert state.records() == [web]
    finally:
        state.close()


def test_a_corrupt_database_is_moved_aside_with_one_warning_and_replaced(tmp_path, caplog):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.db").write_bytes(b"this is not a database\n" * 200)
    with caplog.at_level(logging.WARNING, logger="smanager.proc"):
        state = StateDB(str(state_dir))
    try:
        assert state.records() == []
        state.record(Record("web", 1, 1, 1, "web", None, 0.0))
        assert [rec.name for rec in state.records()] == ["web"]
    finally:
        state.close()
    [aside] = state_dir.glob("state.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database\n")
    assert [r.getMessage() for r in caplog.records if r.name == "smanager.proc"] == [
        (f"state database {state_dir / 'state.db'} is unreadable (file is not a database); "
         f"moved it to {aside} and started afresh")]


# -- telling processes apart ---------------------------------------------------------------

def test_the_start_time_is_read_after_the_last_parenthesis_of_the_name(tmp_path, spawn):
    odd_name = tmp_path / "a) b ("
    odd_name.symlink_to("/bin/sleep")
    child = spawn(str(odd_name), "1000")
    named = spawn("sleep", "1000")
    assert abs(process_start_time(child.pid) - process_start_time(named.pid)) < 500
    with open(f"/proc/{child.pid}/stat", "rb") as stat_file:
        assert b"(a) b ()" in stat_file.read()


def test_a_zombie_and_a_missing_pid_have_no_start_time(spawn):
    child = spawn("true")
    assert process_start_time(NO_SUCH_PID) is None
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert process_start_time(child.pid) is None


def test_a_record_is_the_same_process_only_with_the_same_start_time(spawn):
    child = spawn("sleep", "1000")
    assert is_same_process(record_of(child.pid))
    assert not is_same_process(record_of(child.pid, start_time=process_start_time(child.pid) + 1))
    assert not is_same_process(record_of(NO_SUCH_PID, start_time=1))


# -- the sweep -----------------------------------------------------------------------------

async def test_sweep_kill_stops_a_leftover_leader_with_term(spawn):
    child = spawn("sleep", "1000")
    lines, adopted = await sweep([record_of(child.pid)], "kill")
    assert child.wait(TIMEOUT) == -signal.SIGTERM
    assert adopted == []
    assert lines == [(f"web: pid {child.pid} (prog) was left running by a previous smanager; "
                      "stopped it with TERM")]


async def test_sweep_kill_stops_every_member_of_the_group_before_returning(spawn):
    child = spawn("sh", "-c", "sleep 1000 & echo $!; exec sleep 1000", read_line=True)
    member = int(child.stdout.readline())
    spawn.also(member)
    born = process_start_time(member)
    await sweep([record_of(child.pid)], "kill")
    assert not is_alive(member, born)
    assert child.wait(TIMEOUT) == -signal.SIGTERM


async def test_sweep_kill_continues_a_stopped_group_so_term_can_end_it(spawn):
    child = spawn("sleep", "1000")
    os.kill(child.pid, signal.SIGSTOP)
    await asyncio.to_thread(os.waitid, os.P_PID, child.pid, os.WSTOPPED | os.WNOWAIT)
    lines, _ = await sweep([record_of(child.pid)], "kill", timeout=1.0)
    assert lines[0].endswith("stopped it with TERM")
    assert child.wait(TIMEOUT) == -signal.SIGTERM


async def test_sweep_kill_uses_kill_when_term_is_ignored(spawn):
    child = spawn("sh", "-c", "trap '' TERM; echo ready; exec sleep 1000", read_line=True)
    assert child.stdout.readline() == b"ready\n"
    lines, _ = await sweep([record_of(child.pid)], "kill", timeout=0.3)
    assert child.wait(TIMEOUT) == -signal.SIGKILL
    assert lines == [(f"web: pid {child.pid} (prog) was left running by a previous smanager; "
                      "killed it with KILL after 0.3 s")]


async def test_sweep_adopt_keeps_a_leftover_leader_without_signalling_it(spawn):
    child = spawn(sys.executable, "-c", BLOCK_TERM_AND_CONT, read_line=True)
    assert child.stdout.readline() == b"ready\n"
    rec = record_of(child.pid)
    lines, adopted = await sweep([rec], "adopt")
    assert adopted == [rec]
    assert lines == [(f"web: pid {child.pid} (prog) was left running by a previous smanager; "
                      "adopted it")]
    assert pending_group_signals(child.pid) == set()


@pytest.mark.parametrize("mode", ["kill", "adopt"])
async def test_sweep_stops_a_group_whose_leader_is_gone_in_either_mode(spawn, mode):
    child = spawn("sh", "-c", "sleep 1000 & echo $!", read_line=True, env=AS_PROC_STARTS_IT)
    member = int(child.stdout.readline())
    spawn.also(member)
    born = process_start_time(member)
    rec = record_of(child.pid)
    assert child.wait(TIMEOUT) == 0  # the leader is gone; its group lives on
    # $! is known at the fork: on a busy machine the member may still be in
    # execve, whose environment reads empty for a moment (as no leftover
    # group's member is after a restart).  Sweep once it runs sleep.
    assert await until(lambda: command_line(member) == b"sleep\x001000\x00", TIMEOUT)
    lines, adopted = await sweep([rec], mode)
    assert lines == [(f"web: pid {child.pid} (prog) is gone but its process group {child.pid} "
                      "was still running; stopped it with TERM")]  # first: it says which branch
    assert not is_alive(member, born)
    assert adopted == []


async def test_sweep_leaves_alone_a_leaderless_group_that_carries_no_mark_of_ours(spawn):
    # A daemon that forked twice and lost its leader, whose group id happens to be
    # an old record's pgid: the id alone proves nothing.
    child = spawn("sh", "-c", "sleep 1000 & echo $!", read_line=True)
    member = int(child.stdout.readline())
    spawn.also(member)
    assert child.wait(TIMEOUT) == 0
    lines, _ = await sweep([record_of(child.pid)], "kill")
    assert process_start_time(member) is not None
    assert lines == [f"web: pid {child.pid} (prog) is gone, and process group {child.pid} "
                     "holds no process of ours; left it alone"]


async def test_sweep_forgets_records_from_before_a_reboot_without_signalling(spawn):
    child = spawn(sys.executable, "-c", BLOCK_TERM_AND_CONT, read_line=True)
    assert child.stdout.readline() == b"ready\n"
    lines, adopted = await sweep([record_of(child.pid, boot="another-boot")], "kill")
    assert pending_group_signals(child.pid) == set() and adopted == []
    assert lines == [f"web: pid {child.pid} (prog) was recorded before the machine restarted; "
                     "forgot it"]


@pytest.mark.parametrize("mode", ["kill", "adopt"])
async def test_sweep_leaves_alone_a_pid_that_now_belongs_to_another_process(spawn, mode):
    stranger = spawn(sys.executable, "-c", BLOCK_TERM_AND_CONT, read_line=True)
    assert stranger.stdout.readline() == b"ready\n"
    rec = record_of(stranger.pid, start_time=process_start_time(stranger.pid) - 1)
    lines, adopted = await sweep([rec], mode)
    assert pending_group_signals(stranger.pid) == set()  # kill() marks them pending at once
    assert adopted == []
    assert lines == [f"web: pid {stranger.pid} now belongs to another process; left it alone"]


async def test_sweep_reports_nothing_for_a_child_that_is_wholly_gone():
    assert await sweep([record_of(NO_SUCH_PID, start_time=1)], "kill") == ([], [])


async def test_sweep_stops_many_groups_at_once_not_one_timeout_after_another(spawn):
    children = [spawn("sh", "-c", "trap '' TERM; echo ready; exec sleep 1000", read_line=True)
                for _ in range(3)]
    for child in children:
        assert child.stdout.readline() == b"ready\n"
    began = time.monotonic()
    lines, _ = await sweep([record_of(c.pid, name=f"p{i}") for i, c in enumerate(children)],
                           "kill", timeout=0.5)
    assert time.monotonic() - began < 1.4
    assert [line.rpartition("; ")[2] for line in lines] == ["killed it with KILL after 0.5 s"] * 3
    assert [child.wait(TIMEOUT) for child in children] == [-signal.SIGKILL] * 3
