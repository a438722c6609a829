"""The exec collector running real scripts, and the textfile collector reading real
files: what they give, and how each failure is told in one line."""

import asyncio
import contextlib
import logging
import math
import os

import pytest
from helpers import TIMEOUT, live_members, until

from smanager.metrics.collecting import CollectError, Collecting
from smanager.metrics.external import KINDS, MAX_OUTPUT, Exec, Textfile


def script(directory, body, name="probe.sh"):
    """An executable sh script in DIRECTORY; its path."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def error_of(kind, options):
    with pytest.raises(ValueError) as raised:
        kind(options, name="external")
    assert "\n" not in str(raised.value)
    return str(raised.value)


async def failure_of(collector):
    with pytest.raises(CollectError) as raised:
        await collector.collect()
    assert "\n" not in str(raised.value)
    return str(raised.value)


def test_both_kinds_are_exported_by_their_names():
    assert KINDS == {"exec": Exec, "textfile": Textfile}


@pytest.mark.parametrize("kind, options, message", [
    (Exec, {"command": "x", "fromat": "plain"}, 'unknown option "fromat" (did you mean "format"?)'),
    (Exec, {}, "command is required"),
    (Exec, {"command": ""}, "command must be a list of words or a string, not \"\""),
    (Exec, {"command": []}, "command must be a list of words or a string, not []"),
    (Exec, {"command": ["ok", 1]}, 'command must be a list of words or a string, not ["ok", 1]'),
    (Exec, {"command": "say 'unclosed"}, "command cannot be split: No closing quotation"),
    (Exec, {"command": "x", "format": "json"},
     'format must be "plain", "influx" or "prometheus", not "json"'),
    (Exec, {"command": "x", "cwd": "relative/dir"},
     'cwd must be an absolute path, not "relative/dir"'),
    (Exec, {"command": "x", "env": ["A=1"]},
     "env must be a table of NAME = value (text or number)"),
    (Exec, {"command": "x", "env": {"A": True}},
     "env must be a table of NAME = value (text or number)"),
    (Textfile, {}, "dir is required"),
    (Textfile, {"dir": "metrics"}, 'dir must be an absolute path, not "metrics"'),
    (Textfile, {"dirs": "/x"}, 'unknown option "dirs" (did you mean "dir"?)')])
def test_each_bad_option_is_one_line_naming_it(kind, options, message):
    assert error_of(kind, options) == message


def test_a_command_string_is_split_as_a_shell_would_but_run_by_none():
    assert Exec({"command": "check --name 'a b' $HOME"}).command == [
        "check", "--name", "a b", "$HOME"]


async def test_plain_output_gives_its_values_by_name(tmp_path):
    path = script(tmp_path, 'echo "queue.waiting 3"\necho "# a comment"\n'
                            'echo "queue.done 17 1700000000"\n')
    collector = Exec({"command": [path]})
    assert await collector.collect() == {"queue.waiting": 3.0, "queue.done": 17.0}
    assert collector.counters == frozenset()


async def test_influx_output_gives_measurement_dot_field_with_tags_as_labels(tmp_path):
    path = script(tmp_path,
                  "echo 'disk,mount=/srv used=42i,ok=true,note=\"x\" 1700000000000000000'\n")
    values = await Exec({"command": path, "format": "influx"}).collect()
    assert values == {'disk.used{mount="/srv"}': 42.0, 'disk.ok{mount="/srv"}': 1.0}


async def test_prometheus_output_makes_the_series_of_a_typed_counter_counters(tmp_path):
    path = script(tmp_path, """cat <<'END'
# HELP jobs_total Jobs done.
# TYPE jobs_total counter
jobs_total{queue="a"} 10
jobs_total{queue="b"} 4
# TYPE jobs_waiting gauge
jobs_waiting 2
END
""")
    collector = Exec({"command": [path], "format": "prometheus"})
    assert await collector.collect() == {
        'jobs_total{queue="a"}': 10.0, 'jobs_total{queue="b"}': 4.0, "jobs_waiting": 2.0}
    assert collector.counters == {'jobs_total{queue="a"}', 'jobs_total{queue="b"}'}


async def test_a_command_gets_its_env_and_cwd_and_none_of_smanagers_environment(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SMANAGER_TEST_SECRET", "hunter2")
    path = script(tmp_path, 'echo "secret_length ${#SMANAGER_TEST_SECRET}"\n'
                            'echo "given $GIVEN"\n'
                            '[ "$(pwd)" = "$WANTED" ] && echo "in_cwd 1"\n'
                            '[ -n "$PATH" ] && echo "has_path 1"\n')
    values = await Exec({"command": [path], "cwd": str(tmp_path),
                         "env": {"GIVEN": 5, "WANTED": str(tmp_path)}}).collect()
    assert values == {"secret_length": 0, "given": 5, "in_cwd": 1, "has_path": 1}


async def test_a_failing_command_is_one_line_with_its_first_stderr_line(tmp_path):
    path = script(tmp_path, 'echo "partial 1"\necho "" >&2\necho "cannot reach the queue" >&2\n'
                            'echo "second line" >&2\nexit 3\n')
    assert await failure_of(Exec({"command": path})) == \
        "probe.sh: exited with status 3: cannot reach the queue"
    quiet = script(tmp_path, 'echo "only on stdout"\nexit 1\n', "quiet.sh")
    assert await failure_of(Exec({"command": quiet})) == \
        "quiet.sh: exited with status 1: only on stdout"


async def test_a_command_killed_by_a_signal_says_which(tmp_path):
    path = script(tmp_path, "kill -KILL $$\n")
    assert await failure_of(Exec({"command": path})) == "probe.sh: killed by SIGKILL"


async def test_output_the_format_cannot_read_is_an_error_naming_the_line(tmp_path):
    path = script(tmp_path, 'echo "good 1"\necho "bad value here too"\necho "worse"\n')
    message = await failure_of(Exec({"command": path}))
    assert message.startswith("probe.sh: plain output line 2: expected 'name value [timestamp]'")
    assert message.endswith("(and 1 more)")


async def test_a_command_that_is_not_there_is_an_error(tmp_path):
    message = await failure_of(Exec({"command": [str(tmp_path / "missing")]}))
    assert message.startswith(f"{tmp_path / 'missing'}: command not found")


async def test_a_flood_of_output_is_stopped_at_once_and_is_an_error(tmp_path):
    path = script(tmp_path, "exec yes 'flood 1'\n")
    collector = Exec({"command": path})
    collector.timeout = TIMEOUT
    loop = asyncio.get_running_loop()
    started = loop.time()
    message = await failure_of(collector)
    assert message == f"probe.sh: printed more than {MAX_OUTPUT} bytes; stopped"
    assert loop.time() - started < TIMEOUT / 2  # stopped by the flood, not by the time limit


async def test_a_command_that_hangs_is_stopped_term_then_kill_within_its_time_limit(tmp_path):
    pid_file = tmp_path / "pid"
    path = script(tmp_path, f"echo $$ > {pid_file}\ntrap '' TERM\nsleep {TIMEOUT * 3} &\nwait\n")
    collector = Exec({"command": path})
    collector.timeout = 2.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    message = await failure_of(collector)
    took = loop.time() - started
    assert message == \
        "probe.sh: still running after 1.4 s; killed: still running 0.4 s after SIGTERM"
    assert took < collector.time_limit
    # the sleep went with its group (SIGKILL is delivered a moment after it is sent)
    assert await until(lambda: live_members(int(pid_file.read_text())) == [])


async def test_a_hung_command_is_told_by_its_collector_not_as_the_monitors_timeout(tmp_path):
    path = script(tmp_path, f"sleep {TIMEOUT * 3}\n")
    collector = Exec({"command": path}, name="stuck")
    collector.interval, collector.timeout = 3600, 0.5  # only collect_now runs it
    collecting = Collecting(lambda name, value, stamp: None)
    collecting.add(collector)
    try:
        assert await collecting.collect_now("stuck") == {}
        (row,) = collecting.status()
    finally:
        await collecting.close()
    assert row["last_error"] == "probe.sh: still running after 0.35 s; stopped by SIGTERM"


def prom_file(directory, name, text):
    (directory / name).write_text(text)


async def test_textfiles_are_read_and_a_broken_one_is_skipped_counted_and_logged_once(
        tmp_path, caplog):
    prom_file(tmp_path, "backup.prom", "# TYPE backup_runs_total counter\nbackup_runs_total 7\n"
                                       'backup_last_seconds{host="a"} 1700000000\n')
    prom_file(tmp_path, "broken.prom", "fine_metric 1\nbroken_metric one\n")
    prom_file(tmp_path, "notes.txt", "not a metric\n")
    prom_file(tmp_path, "backup.prom.tmp", "half_written 1\n")  # a writer's file before its rename
    textfile = Textfile({"dir": str(tmp_path)}, name="node")
    first = await textfile.collect()
    again = await textfile.collect()
    assert first == again == {"backup_runs_total": 7.0, 'backup_last_seconds{host="a"}': 1.7e9,
                              "textfile_errors": 1.0}
    assert textfile.counters == {"backup_runs_total"}
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert warnings == [f"node: {tmp_path / 'broken.prom'} skipped: line 2: 'one' is not a number"]


async def test_a_series_repeated_in_a_later_file_skips_that_file(tmp_path):
    prom_file(tmp_path, "a.prom", 'up{job="x"} 1\n')
    prom_file(tmp_path, "b.prom", 'up{job="x"} 0\nother 2\n')
    values = await Textfile({"dir": str(tmp_path)}).collect()
    assert values == {'up{job="x"}': 1.0, "textfile_errors": 1.0}


async def test_a_textfile_that_is_a_fifo_or_too_big_is_skipped_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.prom")
    prom_file(tmp_path, "huge.prom", "# " + "x" * MAX_OUTPUT + "\n")
    prom_file(tmp_path, "ok.prom", "ok 1\n")
    try:
        async with asyncio.timeout(TIMEOUT):
            values = await Textfile({"dir": str(tmp_path)}).collect()
    finally:  # a reader stuck on the FIFO (the bug this pins) is let go: its thread ends
        with contextlib.suppress(OSError):
            os.close(os.open(tmp_path / "pipe.prom", os.O_WRONLY | os.O_NONBLOCK))
    assert values == {"ok": 1.0, "textfile_errors": 2.0}


async def test_an_empty_directory_gives_only_the_error_count_and_a_missing_one_fails(tmp_path):
    assert await Textfile({"dir": str(tmp_path)}).collect() == {"textfile_errors": 0.0}
    message = await failure_of(Textfile({"dir": str(tmp_path / "gone")}))
    assert message == f"{tmp_path / 'gone'}: No such file or directory"


async def test_an_exec_values_keep_nan_and_inf(tmp_path):
    path = script(tmp_path, 'echo "unknown NaN"\necho "limit +Inf"\n')
    values = await Exec({"command": path}).collect()
    assert math.isnan(values["unknown"]) and values["limit"] == math.inf
