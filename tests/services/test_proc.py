"""proc end to end, through the core: real child programs, every wait bounded.

Each test is named after the bug it guards (supervisor's practice).  Programs
are small Python or sh one-liners; every one a test starts is stopped when
its manager stops (and the tests check that nothing of a group is left;
conftest.py checks that no supervised process outlives its test).
"""

import asyncio
import json
import sys

import pytest
from helpers import SEP, ask_core, live_members, started_manager, until

from smanager.config import bundled_services_dir

PY = sys.executable
QUICK = {"backoff": {"initial": 0.05, "factor": 2, "jitter": 0}, "start_secs": 0.2}


def program(command, **keys):
    return {"command": command, **QUICK, **keys}


def proc_options(tmp_path, **programs):
    return {"proc": {"state_dir": str(tmp_path / "state"), "programs": programs}}


def proc_manager(tmp_path, config_file=None, **programs):
    return started_manager(bundled_services_dir(), options=proc_options(tmp_path, **programs),
                           config_file=config_file)


async def body(manager, line):
    text = await ask_core(manager, line)
    assert text.endswith(SEP), text
    return text[: -len(SEP)]


async def value(manager, line):
    """The command's structured value (JSON mode's result)."""
    from helpers import run_line

    from smanager.core.runner import Outcome  # noqa: F401 - only for the type below
    outcome = await run_line(manager, line)
    assert outcome.error is None, outcome.error
    return getattr(outcome.value, "value", outcome.value)


def group_gone(pgid):
    return not live_members(pgid)


def the_program(manager, name):
    return manager.catalog.services["proc"].instance.supervisor.programs[name]


SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(1000)"]


async def test_start_waits_until_the_program_runs_and_stop_leaves_nothing_of_its_group(tmp_path):
    both = program(["sh", "-c", "sleep 1000 & sleep 1000"], autostart=False)
    async with proc_manager(tmp_path, pair=both) as manager:
        assert "pair: RUNNING (pid" in await body(manager, "proc start pair")
        pgid = the_program(manager, "pair").run.pgid
        assert not group_gone(pgid)
        assert "pair: STOPPED" in await body(manager, "proc stop pair")
        assert await until(lambda: group_gone(pgid))  # KILLed members die asynchronously


async def test_a_crash_loop_backs_off_with_growing_delays_then_gives_up(tmp_path):
    crash = program([PY, "-c", "import sys; sys.exit('boom')"],
                    give_up={"restarts": 4, "within": 60})
    async with proc_manager(tmp_path, crash=crash) as manager:
        assert await body(manager, "proc wait crash state=fatal timeout=10") == "crash: FATAL\n"
        exits = await value(manager, "proc why crash")
        assert [e["code"] for e in exits] == [1, 1, 1, 1]
        delays = [e["delay"] for e in exits[:-1]]
        assert delays == sorted(delays) and delays[0] < delays[-1]
        assert exits[-1]["outcome"] == "gave up: 4 failed starts within 60 s"
        assert exits[-1]["last_line"] == "boom"
        why = await body(manager, "proc why crash")
        assert "exited with status 1" in why and "gave up" in why and "now: FATAL" in why


async def test_start_says_why_a_program_did_not_start(tmp_path):
    bad = program([PY, "-c", "import sys; print('no config found', file=sys.stderr); sys.exit(2)"],
                  autostart=False)
    async with proc_manager(tmp_path, bad=bad) as manager:
        reply = await body(manager, "proc start bad")
        assert reply.startswith("ERROR: bad exited with status 2 after ")
        assert ": no config found; restarting in " in reply
        assert "\n" not in reply.rstrip("\n")


async def test_a_missing_command_is_fatal_with_the_os_error_in_why(tmp_path):
    missing = program(["/nonexistent/daemon"], give_up={"restarts": 2, "within": 60})
    async with proc_manager(tmp_path, missing=missing) as manager:
        await body(manager, "proc wait missing state=fatal timeout=10")
        why = await body(manager, "proc why missing")
        assert "could not start: /nonexistent/daemon: command not found" in why


async def test_a_program_that_ignores_term_is_killed_after_its_stop_timeout(tmp_path):
    stubborn = program([PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                        "signal.SIG_IGN); print('ready', flush=True); time.sleep(1000)"],
                       stop_timeout=0.5)
    async with proc_manager(tmp_path, stubborn=stubborn) as manager:
        await body(manager, "proc wait stubborn timeout=10")
        pgid = the_program(manager, "stubborn").run.pgid
        assert await until(lambda: the_program(manager, "stubborn").output.last_text("out"))
        reply = await body(manager, "proc stop stubborn")
        assert "killed: still running 0.5 s after SIGTERM" in reply
        assert group_gone(pgid)


async def test_an_unknown_program_is_one_line_naming_close_names(tmp_path):
    async with proc_manager(tmp_path, webapp=program(SLEEPER, autostart=False)) as manager:
        reply = await body(manager, "proc status webap")
        assert reply == "ERROR: no program named 'webap' (did you mean webapp?)\n"


async def test_logs_keep_the_last_lines_and_bytes_that_are_not_utf8_are_replaced(tmp_path):
    writer = program([PY, "-c", "import sys, time; sys.stdout.buffer.write(b'one\\ntw\\xffo\\n');"
                      "sys.stdout.flush(); print('err line', file=sys.stderr, flush=True);"
                      "time.sleep(1000)"])
    async with proc_manager(tmp_path, writer=writer) as manager:
        program_ = the_program(manager, "writer")
        assert await until(lambda: len(program_.output.last(10, "both")) >= 3)
        text = await body(manager, "proc logs writer n=2 stream=out")
        assert text.splitlines()[-1].endswith("out tw\ufffdo")
        assert len(text.splitlines()) == 2
        assert "err line" in await body(manager, "proc logs writer stream=err")
        logs = (tmp_path / "state" / "logs" / "writer.out.log").read_bytes()
        assert logs == b"one\ntw\xffo\n"


async def test_port_auto_is_exported_and_a_tcp_ready_check_waits_for_the_listener(tmp_path):
    web = program([PY, "-m", "http.server", "$PORT", "--bind", "127.0.0.1"],
                  port="auto", ready="tcp:$PORT", ready_interval=0.1)
    async with proc_manager(tmp_path, web=web) as manager:
        assert await body(manager, "proc wait web timeout=20") == "web: RUNNING\n"
        port = the_program(manager, "web").port
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        rows = await value(manager, "proc list")
        assert rows[0]["port"] == port and rows[0]["state"] == "RUNNING"


async def test_a_dependent_starts_after_its_dependency_runs_and_stops_before_it(tmp_path):
    db = program(SLEEPER, ready="cmd:sleep 0.3", ready_interval=0.1)
    app = program(SLEEPER, depends_on=["db"])
    async with proc_manager(tmp_path, app=app, db=db) as manager:
        await body(manager, "proc wait app timeout=20")
        db_run, app_run = the_program(manager, "db").run, the_program(manager, "app").run
        assert db_run.started < app_run.started
        reply = await body(manager, "proc stop db")
        assert reply.splitlines() == ["app: STOPPED (stopped by SIGTERM)",
                                      "db: STOPPED (stopped by SIGTERM)"]


async def test_json_mode_values_are_structured(tmp_path):
    async with proc_manager(tmp_path, one=program(SLEEPER)) as manager:
        await body(manager, "proc wait one timeout=10")
        rows = await value(manager, "proc list")
        assert rows[0]["name"] == "one" and isinstance(rows[0]["pid"], int)
        status = await value(manager, "proc status one")
        assert status["state"] == "RUNNING" and status["pgid"] == rows[0]["pid"]
        json.dumps([rows, status])


async def test_update_restarts_only_the_programs_whose_configuration_changed(tmp_path):
    config = tmp_path / "smanager.toml"

    def write(second_arg):
        config.write_text(f"""
[service.proc]
state_dir = "state"
[service.proc.programs.keep]
command = {json.dumps(SLEEPER)}
start_secs = 0.2
[service.proc.programs.change]
command = ["sleep", "{second_arg}"]
start_secs = 0.2
""")
    write("1000")
    from smanager.config import read_file
    options = read_file(config)["service"]
    async with started_manager(bundled_services_dir(), options=options,
                               config_file=str(config)) as manager:
        await body(manager, "proc wait keep timeout=10")
        await body(manager, "proc wait change timeout=10")
        keep_pid = the_program(manager, "keep").run.pid
        change_pid = the_program(manager, "change").run.pid
        write("2000")
        assert await body(manager, "proc update") == "change: changed, restarted\n"
        await body(manager, "proc wait change timeout=10")
        assert the_program(manager, "keep").run.pid == keep_pid
        assert the_program(manager, "change").run.pid != change_pid


async def test_restarting_the_proc_service_keeps_its_programs_running(tmp_path):
    async with proc_manager(tmp_path, one=program(SLEEPER)) as manager:
        await body(manager, "proc wait one timeout=10")
        pid = the_program(manager, "one").run.pid
        assert "restarted: proc" in await body(manager, "restart proc")
        assert the_program(manager, "one").run.pid == pid
        assert (await value(manager, "proc list"))[0]["state"] == "RUNNING"


async def test_stopping_the_server_stops_every_program(tmp_path):
    async with proc_manager(tmp_path, one=program(SLEEPER), two=program(SLEEPER)) as manager:
        await body(manager, "proc wait one timeout=10")
        await body(manager, "proc wait two timeout=10")
        groups = [the_program(manager, name).run.pgid for name in ("one", "two")]
    assert all(group_gone(pgid) for pgid in groups)


async def test_sessions_from_a_template_check_their_parameters(tmp_path):
    options = proc_options(tmp_path)
    options["proc"]["templates"] = {"echo": {
        "command": [PY, "-c", "import sys, time; print(sys.argv[1], flush=True); time.sleep(99)",
                    "$word"], "start_secs": 0.2,
        "params": {"word": {"pattern": "[a-z]+"}}}}
    async with started_manager(bundled_services_dir(), options=options) as manager:
        assert await body(manager, "proc run echo word=Hello") == (
            "ERROR: template echo: parameter word must match [a-z]+\n")
        session = (await body(manager, "proc run echo word=hello")).strip()
        assert session == "echo-1"
        program_ = the_program(manager, session)
        assert await until(lambda: program_.output.last_text("out") == "hello")
        assert (await value(manager, "proc list"))[0]["name"] == "echo-1"
        pgid = program_.run.pgid
        assert await body(manager, "proc rm echo-1") == "echo-1: removed (stopped by SIGTERM)\n"
        assert group_gone(pgid)


@pytest.mark.parametrize("line, error", [
    ("proc signal one NOPE", "ERROR: no signal named 'NOPE' (try HUP, TERM, USR1, 15)\n"),
    ("proc wait one state=asleep", "ERROR: state must be one of running, ready, stopped, "
                                   "exited, fatal, backoff, starting, stopping, not 'asleep'\n"),
    ("proc logs one stream=both2", "ERROR: stream must be out, err or both, not 'both2'\n"),
])
async def test_bad_arguments_are_one_line(tmp_path, line, error):
    async with proc_manager(tmp_path, one=program(SLEEPER, autostart=False)) as manager:
        assert await body(manager, line) == error


async def test_signal_reaches_the_program(tmp_path):
    trap = program(["sh", "-c", "trap 'echo got-usr1' USR1; while :; do sleep 0.05; done"])
    async with proc_manager(tmp_path, trap=trap) as manager:
        await body(manager, "proc wait trap timeout=10")
        assert await body(manager, "proc signal trap USR1") == "trap: sent SIGUSR1\n"
        prog = the_program(manager, "trap")
        assert await until(lambda: prog.output.last_text("out") == "got-usr1")
        await body(manager, "proc stop trap")
        assert await body(manager, "proc signal trap HUP") == (
            "ERROR: trap is STOPPED: there is no process to signal\n")
