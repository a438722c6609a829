"""proc under concurrent and awkward requests: each test pins a bug an
independent review found (two stops at once, a start that is stopped, a removed
session, an idle proc given programs, dependents, broken tables, signals)."""

import asyncio
import json
import os
import sys

from helpers import SEP, ask_core, live_members, run_line, started_manager, until

from smanager.config import bundled_services_dir, read_file

PY = sys.executable
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(1000)"]
STUBBORN = [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('up', flush=True); time.sleep(1000)"]


def program(command, **keys):
    return {"command": command, "start_secs": 0.2,
            "backoff": {"initial": 0.05, "jitter": 0}, **keys}


def manager_of(tmp_path, config_file=None, **programs):
    options = {"proc": {"state_dir": str(tmp_path / "state"), "programs": programs}}
    return started_manager(bundled_services_dir(), options=options, config_file=config_file)


def proc_of(manager):
    return manager.catalog.services["proc"].instance


async def ask(manager, line):
    text = await ask_core(manager, line)
    assert text.endswith(SEP), text
    return text[: -len(SEP)]


async def value(manager, line):
    outcome = await run_line(manager, line)
    assert outcome.error is None, outcome.error
    return getattr(outcome.value, "value", outcome.value)


async def test_two_stops_at_once_both_wait_until_the_program_is_really_gone(tmp_path):
    async with manager_of(tmp_path, stubborn=program(STUBBORN, stop_timeout=0.5)) as manager:
        await ask(manager, "proc wait stubborn timeout=10")
        pgid = proc_of(manager).supervisor.programs["stubborn"].run.pgid
        loop = asyncio.get_running_loop()
        began = loop.time()
        replies = await asyncio.gather(ask(manager, "proc stop stubborn"),
                                       ask(manager, "proc stop stubborn"))
        assert loop.time() - began >= 0.5  # neither answered before the KILL
        assert all("STOPPED" in reply for reply in replies)
        assert await until(lambda: not live_members(pgid))


async def test_a_start_that_is_stopped_meanwhile_says_so_at_once(tmp_path):
    slow = program(SLEEPER, autostart=False, ready="cmd:sleep 30", ready_interval=0.1)
    async with manager_of(tmp_path, slow=slow) as manager:
        start = asyncio.ensure_future(ask(manager, "proc start slow timeout=20"))
        prog = proc_of(manager).supervisor.programs["slow"]
        assert await until(lambda: prog.run is not None)
        await ask(manager, "proc stop slow")
        reply = await asyncio.wait_for(start, 5)
        assert reply == "ERROR: slow was stopped while it started\n"


async def test_a_session_removed_while_it_starts_leaves_no_process(tmp_path):
    options = {"proc": {"state_dir": str(tmp_path / "state"), "templates": {
        "t": {"command": SLEEPER, "start_secs": 0.5}}}}
    async with started_manager(bundled_services_dir(), options=options) as manager:
        run = asyncio.ensure_future(ask(manager, "proc run t"))
        supervisor = proc_of(manager).supervisor
        assert await until(lambda: "t-1" in supervisor.programs)
        removed, started = await asyncio.gather(ask(manager, "proc rm t-1"), run)
        assert removed.startswith("t-1: removed")
        assert started.startswith("ERROR: ")
        assert await ask(manager, "proc rm t-1") == (
            "ERROR: no session named 't-1'; try 'proc list'\n")


async def test_a_failed_session_is_removed_and_a_removed_one_leaves_no_logs(tmp_path):
    options = {"proc": {"state_dir": str(tmp_path / "state"), "templates": {
        "bad": {"command": [PY, "-c", "import sys; sys.exit('no way')"], "start_secs": 0.2,
                "give_up": {"restarts": 1}},
        "good": {"command": SLEEPER, "start_secs": 0.2}}}}
    async with started_manager(bundled_services_dir(), options=options) as manager:
        reply = await ask(manager, "proc run bad")
        assert reply.startswith("ERROR: session bad-1 did not start and is removed: ")
        assert await value(manager, "proc list") == []
        session = (await ask(manager, "proc run good")).strip()
        logs = tmp_path / "state" / "logs"
        assert (logs / f"{session}.out.log").exists()
        await ask(manager, f"proc rm {session}")
        assert not list(logs.glob(f"{session}.*")) and not list(logs.glob("bad-1.*"))


async def test_restarting_a_program_starts_again_what_depends_on_it(tmp_path):
    async with manager_of(tmp_path, web=program(SLEEPER),
                          worker=program(SLEEPER, depends_on=["web"])) as manager:
        await ask(manager, "proc wait worker timeout=10")
        reply = await ask(manager, "proc restart web")
        assert reply.splitlines()[-1] == "started again: worker"
        assert await ask(manager, "proc wait worker timeout=10") == "worker: RUNNING\n"


async def test_an_idle_proc_given_programs_by_update_takes_its_state_directory(tmp_path):
    config = tmp_path / "smanager.toml"
    config.write_text(f'[service.proc]\nstate_dir = "{tmp_path / "state"}"\n')
    options = read_file(config)["service"]
    async with started_manager(bundled_services_dir(), options=options,
                               config_file=str(config)) as manager:
        config.write_text(config.read_text() + f"[service.proc.programs.one]\n"
                          f"command = {json.dumps(SLEEPER)}\nstart_secs = 0.2\n")
        assert await ask(manager, "proc update") == "one: added\n"
        await ask(manager, "proc wait one timeout=10")
        pid = proc_of(manager).supervisor.programs["one"].run.pid
        assert (tmp_path / "state" / "proc.lock").exists()
        await ask(manager, "restart proc")
        assert proc_of(manager).supervisor.programs["one"].run.pid == pid


async def test_a_broken_table_keeps_the_program_running_as_it_was(tmp_path):
    config = tmp_path / "smanager.toml"
    good = f"[service.proc.programs.web]\ncommand = {json.dumps(SLEEPER)}\nstart_secs = 0.2\n"
    config.write_text(f'[service.proc]\nstate_dir = "{tmp_path / "state"}"\n{good}')
    options = read_file(config)["service"]
    async with started_manager(bundled_services_dir(), options=options,
                               config_file=str(config)) as manager:
        await ask(manager, "proc wait web timeout=10")
        pid = proc_of(manager).supervisor.programs["web"].run.pid
        config.write_text(config.read_text().replace("start_secs", "start_sec"))
        reply = await ask(manager, "proc update")
        assert "problem: program web: kept running as it was configured" in reply
        assert "web: removed" not in reply
        assert proc_of(manager).supervisor.programs["web"].run.pid == pid


async def test_a_new_proc_that_cannot_read_its_table_keeps_the_programs(tmp_path):
    config = tmp_path / "smanager.toml"
    config.write_text(f'[service.proc]\nstate_dir = "{tmp_path / "state"}"\n'
                      f"[service.proc.programs.web]\ncommand = {json.dumps(SLEEPER)}\n"
                      "start_secs = 0.2\n")
    options = read_file(config)["service"]
    async with started_manager(bundled_services_dir(), options=options,
                               config_file=str(config)) as manager:
        await ask(manager, "proc wait web timeout=10")
        pid = proc_of(manager).supervisor.programs["web"].run.pid
        config.write_text("[service]\nproc = 5\n")
        await ask(manager, "restart proc")
        assert proc_of(manager).supervisor.programs["web"].run.pid == pid
        config.write_bytes(b"[service.proc]\nstate_dir = '\xff'\n")
        await ask(manager, "restart proc")
        assert proc_of(manager).supervisor.programs["web"].run.pid == pid


async def test_signal_all_reaches_the_running_and_names_the_rest(tmp_path):
    async with manager_of(tmp_path, up=program(SLEEPER),
                          down=program(SLEEPER, autostart=False)) as manager:
        await ask(manager, "proc wait up timeout=10")
        reply = await ask(manager, "proc signal all USR2")
        assert reply.splitlines() == [
            "up: sent SIGUSR2", "failed: down is STOPPED: there is no process to signal"]


async def test_a_stop_signal_sent_on_purpose_is_not_undone(tmp_path):
    async with manager_of(tmp_path, one=program(SLEEPER)) as manager:
        await ask(manager, "proc wait one timeout=10")
        pid = proc_of(manager).supervisor.programs["one"].run.pid
        await ask(manager, "proc signal one STOP")

        def state():
            with open(f"/proc/{pid}/stat", "rb") as handle:
                return handle.read().rsplit(b")", 1)[1].split()[0]
        assert await until(lambda: state() == b"T")
        await asyncio.sleep(0.1)  # long enough for a CONT, had one been sent, to land
        assert state() == b"T"
        await ask(manager, "proc signal one CONT")


async def test_a_cmd_readiness_check_runs_as_the_program_does(tmp_path):
    seen = tmp_path / "seen"
    check = f"sh -c 'echo \"$SMANAGER_PROGRAM $PWD $MARK\" > {seen}'"
    one = program(SLEEPER, ready=f"cmd:{check}", env={"MARK": "mine"}, cwd=str(tmp_path))
    os.environ["SMANAGER_TEST_LEAK"] = "no"
    try:
        async with manager_of(tmp_path, one=one) as manager:
            await ask(manager, "proc wait one timeout=10")
    finally:
        del os.environ["SMANAGER_TEST_LEAK"]
    assert seen.read_text() == f"one {tmp_path} mine\n"


async def test_the_time_to_stop_counts_sessions_too(tmp_path):
    options = {"proc": {"state_dir": str(tmp_path / "state"), "templates": {
        "slow": {"command": STUBBORN, "start_secs": 0.2, "stop_timeout": 30}}}}
    async with started_manager(bundled_services_dir(), options=options) as manager:
        before = proc_of(manager).hook_timeout
        await ask(manager, "proc run slow")
        assert proc_of(manager).hook_timeout >= 30 > before
        await ask(manager, "proc signal slow-1 KILL")
