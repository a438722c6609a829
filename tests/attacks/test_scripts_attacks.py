"""Attacks on the scripts service: smuggled parameters, escaping names, abusive output,
scripts that will not stop, racing kills and restarts, broken settings, levels and secrets.
Whatever is thrown: a one-line error, every wait bounded, no traceback for the client, the
server still serving, no script process left (checked after each test)."""

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import pytest
from helpers import (
    TIMEOUT,
    LineClient,
    json_lines,
    make_users,
    of_this_run,
    reset,
    run_line,
    started_manager,
    supervised,
    until,
)
from services.test_scripts import (
    GATE,
    Gate,
    body,
    ended,
    ran,
    run_id,
    scripts_manager,
    sh,
    the_service,
    write_script,
)
from services.test_scripts_real import say, write_config, write_scripts

from smanager.config import bundled_services_dir

SECRET = "hunter2-s3cret"


def ours():
    return {pid for pid, (program, _) in supervised().items()
            if program.startswith("scripts:") and of_this_run(pid)}


@pytest.fixture
def gate(tmp_path):
    held = Gate(tmp_path / "gate")
    yield held
    os.close(held.fd)


@pytest.fixture(autouse=True)
async def no_script_left_behind():
    before = ours()
    yield
    assert await until(lambda: not ours() - before), ours() - before


def absent(text, *secrets):
    return all(secret not in text for secret in secrets) and "Traceback" not in text


# -- parameters --------------------------------------------------------------------------------

SMUGGLED = [
    ("TEXT=x", "script say takes: text, pw, count (not TEXT)"),
    ("PATH=/evil", "script say takes: text, pw, count (not PATH)"),
    ("HOME=", "script say takes: text, pw, count (not HOME)"),
    ("SMANAGER_RUN=7", "script say takes: text, pw, count (not SMANAGER_RUN)"),
    ("session=x", "script say takes: text, pw, count (not session)"),
    ("name_and_params=x", "script say takes: text, pw, count (not name_and_params)"),
    ("=value", "word 2 is not KEY=VALUE: a script's parameters are named"),
    ("'te xt=1'", "script say takes: text, pw, count (not te xt)"),
    ("tëxt=1", "script say takes: text, pw, count (not tëxt)"),
    (b"'te\x00xt=1'", "script say takes: text, pw, count (not te?xt)"),
    (b"'text=a\rb'", "script say: text must not hold a line break or NUL"),
    (f"pw={SECRET}\x00", "script say: pw must not hold a line break or NUL"),
    (f"PW={SECRET}", "script say takes: text, pw, count (not PW)"),
    (f"count={SECRET}", "script say: count must match [0-9]+"),
    (SECRET, "word 2 is not KEY=VALUE: a script's parameters are named"),
]


@pytest.mark.parametrize("word, error", SMUGGLED, ids=[repr(word) for word, _ in SMUGGLED])
async def test_a_smuggled_parameter_is_refused_in_one_line_that_never_echoes_a_value(
        tmp_path, caplog, word, error):
    write_script(tmp_path / "scripts", "say.sh", sh(
        ["param: text", "param: pw (secret)", "param: count (pattern=[0-9]+)"],
        f"touch {tmp_path}/ran\n"))
    line = (b"scripts run say " + word) if isinstance(word, bytes) else f"scripts run say {word}"
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, line)
        assert done.text == f"ERROR: {error}\n"
        assert await body(manager, "scripts runs") == "no runs\n"
    assert absent(done.text + caplog.text, SECRET)
    assert not (tmp_path / "ran").exists()


async def test_values_reach_the_script_verbatim_and_a_megabyte_one_fails_in_one_line(tmp_path):
    write_script(tmp_path / "scripts", "say.sh", sh(["param: text"], 'printf "%s\\n" "$TEXT"\n'))
    async with scripts_manager(tmp_path) as manager:
        for value in ["$(touch pwned) `touch pwned`; rm -rf x && \"q\" 'q' | >", "-n", "--", "*"]:
            done = await ran(manager, f"scripts run say text={json.dumps(value)}")
            assert done.result["stdout"] == [value.replace('\\"', '"')]
        done = await ran(manager, "scripts run say text=" + "x" * 1_000_000)
        assert done.text.splitlines()[-1].endswith("/say.sh: Argument list too long")
        assert done.result["retcode"] == 127 and len(done.text) < 1000
        assert (await ran(manager, "scripts run say text=ok")).result["stdout"] == ["ok"]
    assert not (tmp_path / "scripts" / "pwned").exists()


async def test_bg_given_twice_is_refused_like_any_other_repeated_key(tmp_path):
    write_script(tmp_path / "scripts", "say.sh", sh([], "echo hi\n"))
    async with scripts_manager(tmp_path) as manager:
        assert (await ran(manager, "scripts run say bg=true bg=false")).text == (
            "ERROR: bg given twice\n")


async def test_a_pattern_that_could_stall_the_server_makes_its_script_unusable_at_once(
        tmp_path, server_process):
    write_scripts(tmp_path, match=sh(["param: v (pattern=(a+)+)"], "echo matched\n"))
    smanager = server_process("--config", write_config(tmp_path))
    evil = await LineClient.connect(smanager.port)
    try:
        refused = await evil.ask(f"scripts run match v={'a' * 30}!", 2.0)
        assert refused.startswith("ERROR: script match cannot be used: line 3: pattern of 'v': "
                                  "a repeat inside a repeat") and "aaa" not in refused
        assert "unusable: match: " in await evil.ask("scripts list", 2.0)
    finally:
        await evil.close()


# -- names and files ---------------------------------------------------------------------------

async def test_names_cannot_reach_outside_the_directory_and_changed_files_fail_to_start(tmp_path):
    folder = tmp_path / "scripts"
    for name in ("gone", "noexec", "isdir", "fifo", "ok"):
        write_script(folder, f"{name}.sh", sh([], "echo hi\n"))
    os.symlink("/nonexistent/target", folder / "dangling.sh")
    os.symlink("/bin/echo", folder / "outside")  # the admin's choice, as in Pyjojo: it runs
    async with scripts_manager(tmp_path) as manager:
        assert (await ran(manager, "scripts run outside")).result["stdout"] == [""]
        for name in ("../scripts/ok", str(folder / "ok.sh"), "/bin/sh", "ok.sh", ""):
            done = await ran(manager, f"scripts run {json.dumps(name)}")
            assert re.fullmatch(r"ERROR: no script named '.*'(; try 'scripts list'| \(did .*)\n",
                                done.text), done.text
        assert (await ran(manager, "scripts run dangling")).text == (
            "ERROR: script dangling cannot be used: unreadable: No such file or directory\n")
        (folder / "gone.sh").unlink()  # after the scan: the service still believes in them
        (folder / "noexec.sh").chmod(0o644)
        (folder / "isdir.sh").unlink()
        (folder / "isdir.sh").mkdir()
        (folder / "fifo.sh").unlink()
        os.mkfifo(folder / "fifo.sh")
        for name in ("gone", "noexec", "isdir", "fifo"):
            done = await asyncio.wait_for(ran(manager, f"scripts run {name}"), TIMEOUT)
            assert done.result["retcode"] == 127, done.text
            assert done.text.splitlines()[-1].startswith("could not start: ")
            assert absent(done.text)
        assert (await ran(manager, "scripts run ok")).result["stdout"] == ["hi"]
        assert (await body(manager, "scripts reload")).splitlines()[0] == "2 scripts"


# -- output ------------------------------------------------------------------------------------

async def test_binary_bare_carriage_returns_and_separator_lines_cannot_break_the_reply(tmp_path):
    write_script(tmp_path / "scripts", "junk.sh", sh([], (
        "printf 'a\\377\\376b\\000c\\n'\nprintf 'one\\rtwo\\rthree'\n"
        "printf '\\n%s\\n' '--------------------------------------------------'\n"
        "printf ' --------------------------------------------------\\r\\n'\n"
        "head -c 300000 /dev/zero | tr '\\0' e >&2\necho after\n")))
    async with scripts_manager(tmp_path) as manager:
        done = await ran(manager, "scripts run junk")
    out = done.result["stdout"]
    assert out[0] == "a\ufffd\ufffdb\x00c" and out[1] == "one\rtwo\rthree"
    assert out[2:] == ["-" * 50, " " + "-" * 50, "after"]
    assert "-" * 50 not in done.text.splitlines() and ("-" * 51) in done.text.splitlines()
    assert done.result["stderr"] == ["e" * 65536 + " [line cut: 234464 more bytes]"]
    assert "after" in done.text.splitlines() and done.text.endswith("\nexit status 0\n")


async def test_a_return_value_updated_many_times_keeps_its_last_value(tmp_path):
    write_script(tmp_path / "scripts", "progress.sh", sh([], (
        'i=0; while [ $i -lt 300 ]; do echo "jojo_return_value done=$i"; i=$((i+1)); done\n'
        "echo jojo_return_value status=finished\n")))
    async with scripts_manager(tmp_path, output_cap=1000) as manager:
        done = await ran(manager, "scripts run progress")
    assert done.result["return_values"] == {"done": "299", "status": "finished"}


async def test_return_values_are_bounded_and_malformed_ones_are_output(tmp_path):
    write_script(tmp_path / "scripts", "many.sh", sh([], (
        'i=0; while [ $i -lt 2000 ]; do echo "jojo_return_value k$i=v"; i=$((i+1)); done\n'
        "echo jojo_return_value\necho 'jojo_return_value =x'\necho 'jojo_return_value novalue'\n")))
    async with scripts_manager(tmp_path, output_cap=1000) as manager:
        done = await ran(manager, "scripts run many")
    values = done.result["return_values"]
    assert done.result["truncated"] is True and sum(len(k) + len(v) for k, v in values.items()) <= 1000
    assert done.result["stdout"] == ["jojo_return_value", "jojo_return_value =x",
                                     "jojo_return_value novalue"]


# -- scripts that will not stop ----------------------------------------------------------------

async def test_scripts_that_close_their_output_or_ignore_term_are_still_stopped(tmp_path):
    write_script(tmp_path / "scripts", "mute.sh", sh(["timeout: 0.5"], "exec >&- 2>&- <&-\nsleep 1000\n"))
    write_script(tmp_path / "scripts", "stubborn.sh", sh(
        ["timeout: 0.3"], "trap '' TERM\necho set\nwhile :; do sleep 1; done\n"))
    async with scripts_manager(tmp_path) as manager:
        mute, stubborn = await asyncio.wait_for(asyncio.gather(
            ran(manager, "scripts run mute"), ran(manager, "scripts run stubborn")), 3 * TIMEOUT)
    assert mute.text.splitlines() == ["[timed out after 0.5 s; stopped by SIGTERM]",
                                      "timed out after 0.5 s"]
    assert stubborn.text.splitlines() == [
        "set", "[timed out after 0.3 s; killed: still running 5 s after SIGTERM]",
        "timed out after 0.3 s"]
    assert stubborn.result["retcode"] == -signal.SIGKILL


async def test_a_setsid_daemon_escapes_the_group_and_outlives_its_run_documented(tmp_path):
    """A known limit, pinned: a run owns its process group, and setsid leaves it.
    The run still ends, PIPE_GRACE after the leader, though the daemon holds stdout."""
    pid = tmp_path / "pid"
    write_script(tmp_path / "scripts", "daemon.sh", sh(["param: pid", "timeout: 5"], (
        "setsid sh -c 'echo $$ > \"$PID.new\"; mv \"$PID.new\" \"$PID\"; exec sleep 1000' &\n"
        'while [ ! -s "$PID" ]; do sleep 0.01; done\necho detached\n')))
    async with scripts_manager(tmp_path) as manager:
        done = await asyncio.wait_for(ran(manager, f"scripts run daemon pid={pid}"), TIMEOUT)
    daemon = int(pid.read_text())
    try:
        assert done.result["stdout"] == ["detached"] and done.result["retcode"] == 0
        assert Path(f"/proc/{daemon}").exists()  # escaped: smanager does not know of it
    finally:
        os.kill(daemon, signal.SIGKILL)


async def test_stdin_is_empty_without_secrets_and_closed_after_them(tmp_path):
    write_script(tmp_path / "scripts", "reader.sh", sh(["param: pw (secret)"], "cat\necho eof\n"))
    async with scripts_manager(tmp_path) as manager:
        bare = await asyncio.wait_for(ran(manager, "scripts run reader"), TIMEOUT)
        fed = await asyncio.wait_for(ran(manager, f"scripts run reader pw={SECRET}"), TIMEOUT)
    assert bare.result["stdout"] == ["PW=", "eof"]  # a declared secret is always handed over
    assert fed.result["stdout"] == [f"PW={SECRET}", "eof"]


# -- concurrency -------------------------------------------------------------------------------

async def test_two_kills_at_once_both_answer_and_the_run_ends_once(tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate"], GATE))
    async with scripts_manager(tmp_path) as manager:
        run = await run_id(manager, f"scripts run wait gate={gate} bg=true")
        both = await asyncio.wait_for(asyncio.gather(
            body(manager, f"scripts kill {run}"), body(manager, f"scripts kill {run}")), TIMEOUT)
        assert both == [f"run {run}: killed by SIGTERM\n"] * 2
        assert await body(manager, f"scripts kill {run}") == (
            f"ERROR: run {run} has already ended: killed\n")
        assert [row["status"] for row in the_service(manager).runs.history.runs()] == ["killed"]


async def test_a_kill_at_any_step_of_starting_ends_the_run_and_frees_its_slot(tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate"], "echo up\n" + GATE))
    async with scripts_manager(tmp_path, max_concurrent=1) as manager:
        service = the_service(manager)
        for steps in range(12):  # before its task runs, while spawning, once it runs
            run = service.runs.start(service.scripts["wait"], {"gate": str(gate)}, user=None)
            for _ in range(steps):
                await asyncio.sleep(0)
            assert run.kill("attack") is True and run.kill("again") is False
            async with asyncio.timeout(TIMEOUT):
                result = await run.ended()
            assert result["retcode"] == -signal.SIGTERM, (steps, result)
            admission = service.runs.admission
            assert (admission.running, admission.queued) == (0, 0), steps
            assert await until(lambda: not ours())


async def test_killing_a_queued_run_as_the_slot_is_handed_to_it_passes_the_slot_on(tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate"], GATE))
    async with scripts_manager(tmp_path, max_concurrent=1) as manager:
        service = the_service(manager)
        first, handed, last = [await run_id(manager, f"scripts run wait gate={gate} bg=true")
                               for _ in range(3)]
        finish = service.runs.history.finish

        def finish_then_kill(run, **ending):  # the first has just left its slot to "handed"
            finish(run, **ending)
            if run == first:
                service.runs.running(handed).kill("killed as its turn came")
        service.runs.history.finish = finish_then_kill
        gate.open_once()
        assert (await ended(manager, first))["status"] == "ok"
        assert (await ended(manager, handed))["status"] == "killed"
        gate.open_once()
        assert (await ended(manager, last))["status"] == "ok"
        assert (service.runs.admission.running, service.runs.admission.queued) == (0, 0)


async def test_a_tail_of_a_run_that_ends_mid_tail_ends_with_its_result(tmp_path, gate):
    write_script(tmp_path / "scripts", "slow.sh", sh(["param: gate"], "echo one\n" + GATE
                                                     + "echo two\nexit 3\n"))
    async with scripts_manager(tmp_path) as manager:
        run = await run_id(manager, f"scripts run slow gate={gate} bg=true")
        tail = asyncio.ensure_future(ran(manager, f"scripts tail {run}"))
        assert await until(lambda: the_service(manager).runs.live[run].output.stdout == ["one"])
        gate.open_once()
        done = await asyncio.wait_for(tail, TIMEOUT)
        assert done.text == "one\ntwo\nexit status 3\n"
        assert (await ran(manager, f"scripts tail {run}")).text == "one\ntwo\nexit status 3\n"
        assert (await body(manager, f"scripts log {run}")).endswith("one\ntwo\nexit status 3\n")


@pytest.mark.parametrize("line", [f"scripts {verb} {2 ** 64}" for verb in ("log", "tail", "kill")]
                         + [f"scripts runs n={2 ** 64}"])
async def test_a_run_id_past_sqlites_integers_is_no_run_not_a_crash(tmp_path, line):
    async with scripts_manager(tmp_path) as manager:
        if line.startswith("scripts runs"):
            assert await body(manager, line) == "no runs\n"
        else:
            assert (await ran(manager, line)).text == f"ERROR: no run {2 ** 64}\n"


async def test_a_negative_or_zero_run_id_is_no_run(tmp_path):
    async with scripts_manager(tmp_path) as manager:
        for line in [f"scripts {verb} {run}" for verb in ("log", "tail", "kill") for run in (-1, 0)]:
            assert (await ran(manager, line)).text == f"ERROR: no run {line.split()[-1]}\n"
        assert await body(manager, "scripts runs n=-5") == "no runs\n"


async def test_a_restart_with_20_runs_queued_loses_none_and_max_queued_0_refuses_waiting(
        tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate"], GATE))
    async with scripts_manager(tmp_path, max_concurrent=1) as manager:
        runs = [await run_id(manager, f"scripts run wait gate={gate} bg=true") for _ in range(21)]
        await asyncio.wait_for(manager.restart("scripts"), 2 * TIMEOUT)
        for _ in runs:
            gate.open_once()
        statuses = [(await ended(manager, run))["status"] for run in runs]
        assert statuses == ["ok"] * 21
    async with scripts_manager(tmp_path, max_concurrent=1, max_queued=0) as manager:
        first = await run_id(manager, f"scripts run wait gate={gate} bg=true")
        assert (await ran(manager, f"scripts run wait gate={gate}")).text == (
            "ERROR: busy: 0 runs are queued (max_queued = 0)\n")
        gate.open_once()
        assert (await ended(manager, first))["status"] == "ok"


async def test_a_restart_raising_max_concurrent_starts_the_queued_runs_first(tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate"], GATE))
    async with scripts_manager(tmp_path, max_concurrent=1) as manager:
        runs = [await run_id(manager, f"scripts run wait gate={gate} bg=true") for _ in range(3)]
        manager.roster.options["scripts"]["max_concurrent"] = 3
        await asyncio.wait_for(manager.restart("scripts"), 2 * TIMEOUT)
        runs.append(await run_id(manager, f"scripts run wait gate={gate} bg=true"))
        try:
            statuses = {row["id"]: row["status"]
                        for row in (await run_line(manager, "scripts runs")).value.value}
            assert [statuses[run] for run in runs] == ["running"] * 3 + ["queued"]
        finally:
            for run in runs:
                gate.open_once()
            for run in runs:
                await ended(manager, run)


async def test_stopping_with_runs_queued_records_each_and_leaves_nothing(tmp_path, gate):
    write_script(tmp_path / "scripts", "wait.sh", sh(["param: gate"], GATE))
    async with scripts_manager(tmp_path, max_concurrent=2) as manager:
        runs = [await run_id(manager, f"scripts run wait gate={gate} bg=true") for _ in range(10)]
    async with scripts_manager(tmp_path) as manager:
        rows = (await run_line(manager, "scripts runs")).value.value
    assert sorted(row["id"] for row in rows) == runs
    assert {row["status"] for row in rows} == {"killed"}


async def test_tailers_dropping_with_a_reset_leave_the_run_and_the_server_going(
        tmp_path, server_process):
    write_scripts(tmp_path, ticker=sh([], "while :; do echo tick; sleep 0.05; done\n"))
    smanager = server_process("--config", write_config(tmp_path))
    run = (await say(smanager.port, "scripts run ticker bg=true")).split()[1]
    tailers = [await LineClient.connect(smanager.port) for _ in range(20)]
    for tailer in tailers:
        await tailer.send(f"scripts tail {run}\n".encode())
    for tailer in tailers:
        await asyncio.wait_for(tailer.reader.readline(), TIMEOUT)  # following now
        reset(tailer)
    assert (await say(smanager.port, "scripts runs")).split("\n")[1].split()[-1] == "running"
    assert await say(smanager.port, f"scripts kill {run}") == f"run {run}: killed by SIGTERM\n"
    assert smanager.process.poll() is None


# -- settings ----------------------------------------------------------------------------------

BAD_SETTINGS = [
    ({"dir": "rel/dir"}, 'scripts: dir must be an absolute path, not "rel/dir"'),
    ({"dir": 5}, "scripts: dir must be a directory or a list of them"),
    ({"max_concurrent": 0}, "scripts: max_concurrent must be at least 1, not 0"),
    ({"max_concurrent": -1}, "scripts: max_concurrent must be at least 1, not -1"),
    ({"max_concurrent": "4"}, 'scripts: max_concurrent must be a whole number, not "4"'),
    ({"max_queued": -1}, "scripts: max_queued must be at least 0, not -1"),
    ({"colour": "red"}, 'scripts: unknown key "colour"'),
    ({"state_dir": "{tmp}/f/x"}, "scripts: cannot keep runs in state_dir {tmp}/f/x: Not a directory"),
]


@pytest.mark.parametrize("settings, reason", BAD_SETTINGS, ids=[r for _, r in BAD_SETTINGS])
async def test_bad_settings_fail_the_start_in_one_line(tmp_path, settings, reason):
    (tmp_path / "f").write_text("")
    settings = {key: value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value
                for key, value in settings.items()}
    table = {"dir": str(tmp_path), **settings}
    async with started_manager(bundled_services_dir(), options={"scripts": table}) as manager:
        failure = manager.catalog.failures["scripts"].reason
    assert failure == f"failed to start: CommandError: {reason.replace('{tmp}', str(tmp_path))}"


async def test_a_missing_dir_or_a_file_as_dir_is_listed_and_a_garbage_state_db_is_replaced(
        tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"\x13garbage" * 1000)
    (tmp_path / "file").write_text("")
    table = {"dir": [str(tmp_path / "nope"), str(tmp_path / "file"), str(tmp_path / "scripts")],
             "state_dir": str(tmp_path / "state")}
    write_script(tmp_path / "scripts", "hi.sh", sh([], "echo hi\n"))
    async with started_manager(bundled_services_dir(), options={"scripts": table}) as manager:
        listed = await body(manager, "scripts list")
        assert f"unusable: {tmp_path}/nope: unreadable: No such file or directory" in listed
        assert f"unusable: {tmp_path}/file: unreadable: Not a directory" in listed
        assert (await ran(manager, "scripts run hi")).result["stdout"] == ["hi"]
    assert any(name.startswith("state.db.corrupt") for name in os.listdir(tmp_path / "state"))


# -- levels and secrets ------------------------------------------------------------------------

async def test_a_read_user_in_json_mode_cannot_run_see_or_kill_an_operate_script(
        tmp_path, server_process):
    write_scripts(tmp_path, poke=sh(["param: pw (secret)"], "echo poked\nsleep 1000\n"))
    users = make_users(tmp_path / "users", reader="read", op="operate")
    audit = tmp_path / "audit.log"
    smanager = server_process("--config", write_config(
        tmp_path, f"users_file = {json.dumps(users)}", f"audit_log = {json.dumps(str(audit))}"))
    run = (await say(smanager.port, "login op op-pw", f"scripts run poke pw={SECRET} bg=true"))
    run = run.split()[1]
    reader = await LineClient.connect(smanager.port)
    try:
        await reader.ask("login reader reader-pw")
        await reader.send(b"mode json\n")
        answers = [(await json_lines(reader, 1))[0]]
        for line in (f"scripts run poke pw={SECRET}", f"scripts tail {run}", f"scripts log {run}",
                     f"scripts kill {run}", f"scripts run poke PW={SECRET}",
                     f"scripts run pokee pw={SECRET}", f"scripts run poke {SECRET}"):
            await reader.send(line.encode() + b"\n")
            answers += await json_lines(reader, 1)
    finally:
        await reader.close()
    need = "script poke needs the operate level; reader has read"
    assert answers[1:4] == [{"ok": False, "error": need}] * 3
    assert answers[4]["ok"] is False and "operate" in answers[4]["error"]
    assert all(answer["ok"] is False and absent(answer["error"], SECRET) for answer in answers[5:])
    assert await say(smanager.port, "login op op-pw", f"scripts kill {run}") == (
        f"run {run}: killed by SIGTERM\n")
    smanager.stop()
    assert "scripts run poke" in audit.read_text()
    assert absent("".join(smanager.log) + audit.read_text(), SECRET)
