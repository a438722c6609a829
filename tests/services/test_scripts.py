"""scripts through the core: real scripts in a temporary directory, real runs, every wait bounded.

Scripts are small sh (or Python) files written by each test; Pyjojo's own
two echo.sh files are copied from tests/fixtures/scripts byte for byte.
Every run carries SMANAGER_PROGRAM=scripts:NAME, so conftest.py checks that
nothing a test ran outlives it.  Sockets, users, secrets and the 100-run
load are in test_scripts_real.py.
"""

import asyncio
import json
import os
import pwd
import re
import shutil
import sys
import tracemalloc
from pathlib import Path

import pytest
from helpers import (
    FIXTURES,
    SEP,
    TIMEOUT,
    ask_core,
    live_members,
    run_line,
    started_manager,
    until,
)

from smanager.config import bundled_services_dir
from smanager.supervise.child import BASE_ENV
from smanager.supervise.jojo import Script, ScriptParam
from smanager.supervise.runhistory import RunHistory
from smanager.supervise.scriptrun import ParamError, check_params
from smanager.wire.formats import Text

PYJOJO = FIXTURES / "scripts"
GATE = 'read -r _ < "$GATE"\n'  # a script waits here until the test writes a line to the fifo


class Gate:
    """A fifo the GATE line of a script waits on; ``open_once()`` lets one waiter on.
    The test holds it open read-write, so nothing blocks (the loop must not)."""

    def __init__(self, path):
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR)

    def __str__(self):
        return str(self.path)

    def open_once(self):
        os.write(self.fd, b"go\n")


@pytest.fixture
def gate(tmp_path):
    gate = Gate(tmp_path / "gate")
    yield gate
    os.close(gate.fd)


def write_script(folder, name, body, mode=0o755):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body)
    path.chmod(mode)
    return path


def sh(block, body):
    """A /bin/sh script: its jojo block (lines without the '# '), then BODY."""
    lines = "".join(f"# {line}\n" for line in ["-- jojo --", *block, "-- jojo --"])
    return f"#!/bin/sh\n{lines}{body}"


def options(tmp_path, **settings):
    return {"scripts": {"dir": str(tmp_path / "scripts"), "state_dir": str(tmp_path / "state"),
                        **settings}}


def scripts_manager(tmp_path, **settings):
    return started_manager(bundled_services_dir(), options=options(tmp_path, **settings))


def the_service(manager):
    return manager.catalog.services["scripts"].instance


async def body(manager, line):
    text = await ask_core(manager, line)
    assert text.endswith(SEP), text
    return text[: -len(SEP)]


class Ran:
    """What a streamed command sent: its chunks' values, its final value, its error, and
    the whole reply as text mode writes it."""

    def __init__(self, chunks, result, error, text):
        self.chunks, self.result, self.error, self.text = chunks, result, error, text

    @property
    def lines(self):
        return [line for chunk in self.chunks for line in chunk.value]


async def ran(manager, line):
    outcome = await run_line(manager, line)
    if outcome.stream is None:
        assert outcome.error is not None, outcome
        return Ran([], None, outcome.error, f"ERROR: {outcome.error}\n")
    chunks = []
    async with asyncio.timeout(TIMEOUT):
        async for chunk in outcome.stream:
            chunks.append(chunk)
    stream = outcome.stream
    text = b"".join(Text.chunk(chunk) for chunk in chunks) + Text.end(stream.error, stream.result)
    result = stream.result.value if stream.result is not None else None
    return Ran(chunks, result, stream.error, text.decode()[: -len(SEP)])


async def run_id(manager, line):
    """Start LINE (ending in bg=true); its run id."""
    done = await ran(manager, line)
    assert done.error is None, done.error
    return done.result["run"]


async def ended(manager, run):
    """The result of a live run, once recorded."""
    live = the_service(manager).runs.live.get(run)
    if live is not None:
        async with asyncio.timeout(TIMEOUT):
            await live.ended()
    return the_service(manager).runs.history.get(run)


def copy_pyjojo(tmp_path, which):
    folder = tmp_path / "scripts"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "echo.sh"
    shutil.copyfile(PYJOJO / which / "echo.sh", target)
    target.chmod(0o755)
    return target


# -- Pyjojo's scripts, unchanged -----------------------------------------------------------

async def test_pyjojos_test_fixture_echo_runs_unchanged_and_sees_its_text_unquoted(tmp_path):
    copy_pyjojo(tmp_path, "pyjojo_test")
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run echo 'text=hello world'")
    # Its $TEXT is unquoted in the script, so the shell splits it; Pyjojo's double
    # quoting gave "'hello world'" here.
    assert done.result == {"retcode": 0, "stdout": ["echod text: + hello world"], "stderr": [],
                           "return_values": {}, "run": 1}
    assert done.text == "echod text: + hello world\nexit status 0\n"


async def test_pyjojos_readme_echo_shows_its_line_then_exit_status_and_return_values(tmp_path):
    copy_pyjojo(tmp_path, "pyjojo_readme")
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run echo 'text=hello world!'")
        assert done.text == ("echo'd text: hello world!\n"
                             "exit status 0\nreturn name=bob\nreturn age=99\n")
        assert [(line["stream"], line["text"]) for line in done.lines] == [
            ("out", "echo'd text: hello world!")]
        show = await body(manager, "scripts show echo")
        assert show.splitlines()[2:4] == ["description: echo text on the command line",
                                          "param text: text to echo"]


# -- running ---------------------------------------------------------------------------------

async def test_output_streams_stdout_as_written_and_stderr_marked_with_blank_lines_kept(tmp_path):
    write_script(tmp_path / "scripts", "talk.sh", sh(
        ["description: says things"],
        "echo one\necho\necho 'two' >&2\necho jojo_return_value a=1\nexit 3\n"))
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run talk")
    assert done.error is None  # a non-zero exit is a result, not an error
    assert done.result["retcode"] == 3 and done.result["stdout"] == ["one", ""]
    assert done.result["stderr"] == ["two"] and done.result["return_values"] == {"a": "1"}
    shown = done.text.splitlines()
    assert shown[-2:] == ["exit status 3", "return a=1"]
    assert sorted(shown[:-2]) == ["", "one", "stderr: two"]
    assert shown.index("one") < shown.index("")  # stdout in its own order


async def test_combined_output_is_one_stream_split_into_lines_never_on_spaces(tmp_path):
    write_script(tmp_path / "scripts", "both.sh", sh(
        ["output: combined"], "echo 'a b c'\necho 'd e' >&2\n"))
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run both")
    assert done.result["stdout"] in (["a b c", "d e"], ["d e", "a b c"])
    assert "stderr" not in done.result


async def test_values_reach_the_script_exactly_as_given_never_shell_quoted(tmp_path):
    write_script(tmp_path / "scripts", "say.sh", sh(["param: text"], 'printf "%s\\n" "$TEXT"\n'))
    value = """it's "quoted" $HOME `id` \\ and; spaces"""
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, f"scripts run say text={json.dumps(value)}")
    assert done.result["stdout"] == [value.replace('\\"', '"')]


async def test_the_environment_is_built_declared_parameters_path_lang_home_and_the_run(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SMANAGER_TEST_OWN_SECRET", "not for scripts")
    write_script(tmp_path / "scripts", "envdump.py",
                 f"#!{sys.executable}\n"
                 "# -- jojo --\n# param: text\n# param: opt\n# param: withdef (default=dflt)\n"
                 "# -- jojo --\nimport json, os\nprint(json.dumps(dict(os.environ)))\n")
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run envdump text=x")
    assert json.loads(done.result["stdout"][0]) == {
        **BASE_ENV, "HOME": pwd.getpwuid(os.getuid()).pw_dir,
        "SMANAGER_PROGRAM": "scripts:envdump", "SMANAGER_RUN": str(done.result["run"]),
        "TEXT": "x", "OPT": "", "WITHDEF": "dflt"}


async def test_a_script_runs_in_its_own_directory(tmp_path):
    write_script(tmp_path / "scripts" / "deploy", "where.sh", sh([], "pwd\n"))
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run deploy_where")
    assert done.result["stdout"] == [str(tmp_path / "scripts" / "deploy")]


async def test_a_script_that_cannot_start_is_a_failed_run_saying_why(tmp_path):
    write_script(tmp_path / "scripts", "noshebang", "echo no interpreter line\n")
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run noshebang")
        assert done.result["retcode"] == 127
        assert done.text.startswith("[could not start: ") and "Exec format error" in done.text
        assert done.text.splitlines()[-1].startswith("could not start: ")
        assert (await ended(manager, 1))["status"] == "failed"


# -- parameters: refused before anything runs or is recorded ----------------------------------

REFUSED = [
    ("scripts run mark txt=a", "script mark takes: text, count, mode (not txt)"),
    ("scripts run mark", "script mark needs text"),
    ("scripts run mark text=a count=12a", "script mark: count must match [0-9]+"),
    ("scripts run mark text=a mode=fast", "script mark: mode must match slow|careful"),
    ("scripts run mark text=a text=b", "text given twice"),
    ("scripts run mark text=a oops", "word 3 is not KEY=VALUE: a script's parameters are named"),
    ("scripts run mark text=a bg=maybe", "bg must be true or false, not 'maybe'"),
    (b"scripts run mark text=a\x00b", "script mark: text must not hold a line break or NUL"),
    ("scripts run", "which script? scripts run NAME [KEY=VALUE...] [bg=true]"),
]


@pytest.mark.parametrize("line, error", REFUSED, ids=[error for _, error in REFUSED])
async def test_a_bad_request_is_one_line_and_nothing_runs_or_is_recorded(tmp_path, line, error):
    write_script(tmp_path / "scripts", "mark.sh", sh(
        ["param: text (required)", "param: count (pattern=[0-9]+)",
         "param: mode (default=slow, pattern=slow|careful)"], f"touch {tmp_path}/ran\n"))
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, line)
        assert done.text == f"ERROR: {error}\n"
        assert await body(manager, "scripts runs") == "no runs\n"
    assert not (tmp_path / "ran").exists()


def test_values_with_a_line_break_or_nul_are_refused_and_defaults_filled():
    script = Script("s", "/s", None, (ScriptParam("a"), ScriptParam("b", default="d"),
                                      ScriptParam("c", pattern=re.compile("x|y"))), (), ())
    assert check_params(script, {"a": "v"}) == {"a": "v", "b": "d", "c": ""}
    for bad in ("one\ntwo", "one\rtwo", "nul\0"):
        with pytest.raises(ParamError, match="^script s: a must not hold a line break or NUL$"):
            check_params(script, {"a": bad})
    with pytest.raises(ParamError, match="^script s: c must match x|y$"):
        check_params(script, {"c": "xy"})  # the whole value must match, not a part


# -- listing ---------------------------------------------------------------------------------

async def test_tag_filters_every_any_and_none_as_pyjojo(tmp_path):
    for name, tags in [("a", "web, prod"), ("b", "web, staging"), ("c", "db, prod"), ("d", None)]:
        write_script(tmp_path / "scripts", f"{name}.sh",
                     sh([f"description: script {name}"] + ([f"tags: {tags}"] if tags else []), ""))
    async with scripts_manager(tmp_path) as manager:
        async def names(line):
            outcome = await run_line(manager, line)
            return [meta["name"] for meta in outcome.value.value]
        assert await names("scripts list") == ["a", "b", "c", "d"]
        assert await names("scripts list tags=web,prod") == ["a"]
        assert await names("scripts list any=staging,db") == ["b", "c"]
        assert await names("scripts list not=prod") == ["b", "d"]
        assert await names("scripts list tags=web not=staging") == ["a"]
        assert await body(manager, "scripts list tags=prod") == (
            "NAME  DESCRIPTION  TAGS\n"
            "a     script a     web,prod\n"
            "c     script c     db,prod\n")
        assert await body(manager, "scripts list nope=x") == (
            "ERROR: unknown parameter 'nope' (it takes: tags, any, not)\n")
        outcome = await run_line(manager, "scripts list tags=db")
        assert outcome.value.value == [{
            "filename": str(tmp_path / "scripts" / "c.sh"), "http_method": "post", "name": "c",
            "description": "script c", "params": [], "filtered_params": [],
            "tags": ["db", "prod"], "output": "split", "lock": False, "lock_mode": "none",
            "timeout": 300.0, "level": "operate"}]


async def test_unusable_scripts_are_listed_with_why_and_the_others_work(tmp_path):
    folder = tmp_path / "scripts"
    write_script(folder, "good.sh", sh(["description: fine"], "echo fine\n"))
    write_script(folder, "broken.sh", "#!/bin/sh\n# -- jojo --\n# description: never closed\n")
    write_script(folder, "noexec.sh", sh(["description: no exec bit"], ""), mode=0o644)
    write_script(folder, "pathy.sh", sh(["param: path"], ""))
    write_script(folder, "notes.txt", "just notes, no block\n", mode=0o644)  # not a script at all
    async with scripts_manager(tmp_path) as manager:
        assert await body(manager, "scripts list") == (
            "NAME  DESCRIPTION  TAGS\n"
            "good  fine         -\n"
            "unusable: broken: line 2: the block opened here is never closed by '# -- jojo --'\n"
            "unusable: noexec: not executable\n"
            "unusable: pathy: parameter 'path' would replace $PATH, which smanager sets\n")
        assert (await ran(manager, "scripts run good")).result["stdout"] == ["fine"]
        assert (await ran(manager, "scripts run noexec")).text == (
            "ERROR: script noexec cannot be used: not executable\n")
        assert await body(manager, "scripts show broken") == (
            "ERROR: script broken cannot be used: line 2: the block opened here is never "
            "closed by '# -- jojo --'\n")


async def test_an_unknown_script_is_one_line_naming_close_ones(tmp_path):
    for name in ("deploy", "deploy_web", "backup"):
        write_script(tmp_path / "scripts", f"{name}.sh", sh([], ""))
    async with scripts_manager(tmp_path) as manager:
        assert (await ran(manager, "scripts run deplyo")).text == (
            "ERROR: no script named 'deplyo' (did you mean deploy, deploy_web?)\n")
        assert await body(manager, "scripts show zzz") == (
            "ERROR: no script named 'zzz'; try 'scripts list'\n")


# -- locks and the queue ----------------------------------------------------------------------

async def test_lock_fail_refuses_a_second_run_while_one_runs(tmp_path, gate):
    write_script(tmp_path / "scripts", "once.sh", sh(["lock: fail", "param: gate"], GATE))
    async with scripts_manager(tmp_path) as manager:
        first = await run_id(manager, f"scripts run once gate={gate} bg=true")
        refused = (await ran(manager, f"scripts run once gate={gate}")).text
        assert re.fullmatch(rf"ERROR: busy: run {first} since \d\d:\d\d:\d\d\n", refused)
        gate.open_once()
        assert (await ended(manager, first))["status"] == "ok"
        second = await run_id(manager, f"scripts run once gate={gate} bg=true")
        assert second == first + 1  # the refused run took no id and left no row
        gate.open_once()
        assert (await ended(manager, second))["status"] == "ok"


async def test_lock_wait_runs_one_at_a_time_in_arrival_order(tmp_path):
    write_script(tmp_path / "scripts", "serial.sh", sh(
        ["lock: True", "param: log"],  # Pyjojo's "lock: True" is "wait"
        'echo "start $SMANAGER_RUN" >> "$LOG"; sleep 0.2; echo "end $SMANAGER_RUN" >> "$LOG"\n'))
    log = tmp_path / "log"
    async with scripts_manager(tmp_path) as manager:
        ids = [await run_id(manager, f"scripts run serial log={log} bg=true") for _ in range(3)]
        statuses = (await body(manager, "scripts runs")).split()
        assert statuses.count("queued") == 2 and statuses.count("running") == 1
        for run in ids:
            assert (await ended(manager, run))["status"] == "ok"
    assert log.read_text().split("\n")[:-1] == [f"{what} {run}" for run in ids
                                                 for what in ("start", "end")]


async def test_the_queue_is_bounded_and_a_killed_queued_run_never_starts(tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate", "param: mark"],
                                                     'touch "$MARK"\n' + GATE))
    async with scripts_manager(tmp_path, max_concurrent=1, max_queued=1) as manager:
        first = await run_id(manager, f"scripts run wait gate={gate} mark={tmp_path}/1 bg=true")
        queued = await run_id(manager, f"scripts run wait gate={gate} mark={tmp_path}/2 bg=true")
        assert (await ran(manager, f"scripts run wait gate={gate} mark={tmp_path}/3")).text == (
            "ERROR: busy: 1 runs are queued (max_queued = 1)\n")
        assert re.fullmatch(rf"run {queued}: stopped before it started: scripts kill by \S+\n",
                            await body(manager, f"scripts kill {queued}"))
        gate.open_once()
        assert (await ended(manager, first))["status"] == "ok"
        assert (await ended(manager, queued))["status"] == "killed"
        assert len((await run_line(manager, "scripts runs")).value.value) == 2
    assert (tmp_path / "1").exists() and not (tmp_path / "2").exists()


# -- stopping -------------------------------------------------------------------------------

async def test_a_timeout_stops_the_whole_group_a_background_grandchild_included(tmp_path):
    write_script(tmp_path / "scripts", "hang.sh", sh(
        ["timeout: 0.5", "param: pids"],
        'sleep 1000 &\necho $! > "$PIDS"\necho started\nsleep 1000\n'))
    pids = tmp_path / "pids"
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, f"scripts run hang pids={pids}")
        grandchild = int(pids.read_text())
        assert done.text.splitlines() == [
            "started", "[timed out after 0.5 s; stopped by SIGTERM]", "timed out after 0.5 s"]
        assert done.result["timed_out_after"] == 0.5 and done.result["retcode"] < 0
        row = await ended(manager, done.result["run"])
        assert row["status"] == "timed out" and row["timed_out"] is True
    assert await until(lambda: not Path(f"/proc/{grandchild}").exists()
                       or not live_members(os.getpgid(grandchild)))


async def test_a_grandchild_holding_stdout_does_not_keep_the_run_alive(tmp_path):
    write_script(tmp_path / "scripts", "leave.sh", sh([], "sleep 1000 &\necho bye\n"))
    async with scripts_manager(tmp_path) as manager:
        async with asyncio.timeout(TIMEOUT):
            done = await ran(manager, "scripts run leave")
        assert done.result["stdout"] == ["bye"] and done.result["retcode"] == 0


# -- output ----------------------------------------------------------------------------------

async def test_output_past_the_cap_is_cut_marked_and_shown_as_truncated(tmp_path):
    write_script(tmp_path / "scripts", "chatty.sh", sh(
        [], "i=0; while [ $i -lt 100 ]; do echo \"line $i of some length\"; i=$((i+1)); done\n"
            "echo jojo_return_value last=$i\n"))
    async with scripts_manager(tmp_path, output_cap=1000) as manager:
        done = await ran(manager, "scripts run chatty")
        assert done.result["truncated"] is True and done.result["return_values"] == {"last": "100"}
        assert sum(len(line) + 1 for line in done.result["stdout"]) <= 1000
        assert "[output truncated at 1 kB]" in done.text.splitlines()
        assert done.text.splitlines()[-2:] == ["output truncated", "return last=100"]
        assert "line 99 of some length" in done.text  # followers get every line
        assert (await body(manager, "scripts runs")).splitlines()[1].endswith("ok (truncated)")


async def test_ten_megabytes_without_a_newline_cost_bounded_memory_and_are_cut(tmp_path):
    write_script(tmp_path / "scripts", "flood.sh", sh(
        [], "head -c 10000000 /dev/zero | tr '\\0' x\n"))
    async with scripts_manager(tmp_path) as manager:
        tracemalloc.start()
        try:
            done = await ran(manager, "scripts run flood")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    (line,) = done.result["stdout"]
    assert line == "x" * 65536 + f" [line cut: {10_000_000 - 65536} more bytes]"
    assert peak < 4_000_000, peak


# -- history -------------------------------------------------------------------------------------

async def test_runs_and_log_show_the_history_and_runs_a_dead_server_left_are_lost(tmp_path):
    write_script(tmp_path / "scripts", "hi.sh", sh(["param: who"], 'echo "hi $WHO"\necho err >&2\n'))
    left = RunHistory(str(tmp_path / "state"))
    dead = left.begin("hi", user="bob", params={"who": "x"})  # its server was killed -9
    left.close()
    async with scripts_manager(tmp_path) as manager:
        run = (await ran(manager, "scripts run hi who=you")).result["run"]
        await ended(manager, run)
        rows = (await run_line(manager, "scripts runs")).value.value
        assert [(row["id"], row["status"]) for row in rows] == [(run, "ok"), (dead, "lost")]
        assert [row["id"] for row in (await run_line(manager, "scripts runs hi n=1")).value.value] \
            == [run]
        log = (await body(manager, f"scripts log {run}")).splitlines()
        assert re.fullmatch(rf"run {run} hi who=you by -: ok, \d+\.\ds, started [-\d: ]+", log[0])
        assert log[1:] == ["hi you", "stderr: err", "exit status 0"]
        assert (await run_line(manager, f"scripts log {run}")).value.value["result"]["stdout"] \
            == ["hi you"]
        assert await body(manager, "scripts log 999") == "ERROR: no run 999\n"
        assert (await ran(manager, f"scripts tail {dead}")).text == (
            f"ERROR: run {dead} is lost: its output was not kept\n")


async def test_log_of_a_live_run_shows_its_output_so_far(tmp_path, gate):
    write_script(tmp_path / "scripts", "slow.sh", sh(["param: gate"], "echo begun\n" + GATE))
    async with scripts_manager(tmp_path) as manager:
        run = await run_id(manager, f"scripts run slow gate={gate} bg=true")
        live = the_service(manager).runs.live[run]
        assert await until(lambda: live.output.stdout == ["begun"])
        log = (await body(manager, f"scripts log {run}")).splitlines()
        assert log[0].startswith(f"run {run} slow gate={gate} by -: running, started ")
        assert log[1:] == ["begun"]
        gate.open_once()
        assert (await ended(manager, run))["status"] == "ok"


# -- the service's life ------------------------------------------------------------------------

async def test_without_dir_the_service_is_idle_and_touches_no_disk(tmp_path):
    state = tmp_path / "state"
    async with started_manager(bundled_services_dir(),
                               options={"scripts": {"state_dir": str(state)}}) as manager:
        idle = "no script directories are configured (set dir in [service.scripts])"
        assert await body(manager, "scripts list") == idle + "\n"
        assert (await ran(manager, "scripts run x")).text == f"ERROR: {idle}\n"
        assert await body(manager, "scripts runs") == f"ERROR: {idle}\n"
        assert the_service(manager).runs is None
    assert not state.exists()


async def test_an_unknown_key_fails_the_start_in_one_line_naming_it(tmp_path):
    async with started_manager(bundled_services_dir(),
                               options={"scripts": {"dri": str(tmp_path)}}) as manager:
        reason = manager.catalog.failures["scripts"].reason
    assert reason == 'failed to start: CommandError: scripts: unknown key "dri" (did you mean "dir"?)'


async def test_reload_and_restart_read_the_directory_again_and_live_runs_survive(tmp_path, gate):
    folder = tmp_path / "scripts"
    write_script(folder, "slow.sh", sh(["param: gate"], "echo begun\n" + GATE))
    write_script(folder, "gone.sh", sh([], ""))
    async with scripts_manager(tmp_path) as manager:
        run = await run_id(manager, f"scripts run slow gate={gate} bg=true")
        write_script(folder, "new.sh", sh([], "echo new\n"))
        (folder / "gone.sh").unlink()
        assert await body(manager, "scripts reload") == "2 scripts\nadded: new\nremoved: gone\n"
        write_script(folder, "newer.sh", sh([], ""))
        await manager.restart("scripts")
        assert "newer" in await body(manager, "scripts list")
        assert the_service(manager).runs.running(run) is not None  # taken over, still running
        assert re.fullmatch(rf"run {run}: killed by SIGTERM\n",
                            await body(manager, f"scripts kill {run}"))
        assert (await ended(manager, run))["status"] == "killed"
