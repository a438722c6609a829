"""Where the log goes and in what form (cli/logs.py): syslog priorities and
no timestamp when stderr is the journal, a log file that SIGUSR1 reopens
after logrotate renamed it, and JSON lines.  The forms are checked on
records; each way of running, on a real ``python -m smanager``."""

import datetime
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
from helpers import ROOT, TIMEOUT, ServerProcess, until

from smanager.cli import logs
from smanager.cli.main import make_config
from smanager.config import ConfigError

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")


def record(level, message, exc_info=None):
    return logging.LogRecord("smanager.test", level, __file__, 1, message, (), exc_info)


def journal_of(stream):
    """JOURNAL_STREAM as systemd sets it for STREAM."""
    info = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def raised():
    try:
        raise ValueError("bad value")
    except ValueError:
        return sys.exc_info()


# -- the forms, on records ----------------------------------------------------------------------

@pytest.mark.parametrize("level, prefix", [
    (logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
    (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>")])
def test_lines_to_the_journal_carry_their_syslog_priority_and_no_time(tmp_path, level, prefix):
    with open(tmp_path / "stderr", "w") as stderr:
        handler = logs.make_handler(stream=stderr, environ=journal_of(stderr))
        line = handler.format(record(level, "hello"))
    assert line == f"{prefix}{logging.getLevelName(level)} smanager.test: hello"


def test_every_line_of_a_traceback_in_the_journal_keeps_its_records_priority(tmp_path):
    with open(tmp_path / "stderr", "w") as stderr:
        handler = logs.make_handler(stream=stderr, environ=journal_of(stderr))
        lines = handler.format(record(logging.ERROR, "it broke", raised())).split("\n")
    assert lines[0] == "<3>ERROR smanager.test: it broke"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: bad value"


def test_a_journal_stream_naming_another_file_is_not_the_journal(tmp_path):
    with open(tmp_path / "stderr", "w") as stderr, open(tmp_path / "other", "w") as other:
        handler = logs.make_handler(stream=stderr, environ=journal_of(other))
        line = handler.format(record(logging.INFO, "hello"))
    assert TIMESTAMP.match(line) and line.endswith(" INFO smanager.test: hello")
    stream_without_descriptor = logs.make_handler(stream=io.StringIO(),
                                                  environ={"JOURNAL_STREAM": "1:2"})
    assert not stream_without_descriptor.format(record(logging.INFO, "x")).startswith("<")


def test_json_lines_carry_time_level_logger_message_and_the_traceback():
    handler = logs.make_handler(log_format="json", stream=io.StringIO(), environ={})
    plain = json.loads(handler.format(record(logging.WARNING, "disk %s full")))
    assert plain.keys() == {"time", "level", "logger", "message"}
    assert (plain["level"], plain["logger"], plain["message"]) == (
        "WARNING", "smanager.test", "disk %s full")
    when = datetime.datetime.fromisoformat(plain["time"])
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.UTC) - when) < datetime.timedelta(minutes=1)
    line = handler.format(record(logging.ERROR, "it\nbroke", raised()))
    assert "\n" not in line
    failed = json.loads(line)
    assert failed["message"] == "it\nbroke"
    assert failed["exc"].startswith("Traceback")
    assert failed["exc"].endswith("ValueError: bad value")


def test_json_in_the_journal_is_behind_the_priority_too(tmp_path):
    with open(tmp_path / "stderr", "w") as stderr:
        handler = logs.make_handler(log_format="json", stream=stderr, environ=journal_of(stderr))
        line = handler.format(record(logging.WARNING, "hello"))
    assert line.startswith("<4>{") and json.loads(line[3:])["message"] == "hello"


def test_log_settings_are_checked_and_a_relative_log_file_is_beside_the_config(tmp_path):
    (tmp_path / "smanager.toml").write_text('log_file = "smanager.log"\nlog_format = "json"\n')
    config = make_config(["--config", str(tmp_path / "smanager.toml")])
    assert (config.log_file, config.log_format) == (str(tmp_path / "smanager.log"), "json")
    assert make_config([]).log_format == "text"
    (tmp_path / "bad.toml").write_text('log_format = "xml"\n')
    with pytest.raises(ConfigError, match="log_format must be one of text, json, not 'xml'"):
        make_config(["--config", str(tmp_path / "bad.toml")])


# -- real servers ------------------------------------------------------------------------------

def test_a_server_under_the_journal_writes_priorities_and_no_timestamps():
    journal, stderr = socket.socketpair()  # journald hands services a stream socket
    with journal, stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "smanager", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **journal_of(stderr)},
            stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            lines = []
            journal.settimeout(TIMEOUT)
            with journal.makefile(encoding="utf-8") as received:
                for line in received:  # bounded: the server logs where it listens, or exits
                    lines.append(line)
                    if "listening on" in line:
                        break
        finally:
            process.terminate()
            assert process.wait(TIMEOUT) == 0
    assert lines[-1].startswith("<6>INFO smanager.server: listening on 127.0.0.1:")
    assert all(re.match(r"<[2-7]>[A-Z]+ smanager", line) for line in lines)
    assert not any(TIMESTAMP.search(line) for line in lines)


async def test_sigusr1_reopens_the_log_file_after_it_was_renamed(tmp_path):
    log_file, rotated = tmp_path / "smanager.log", tmp_path / "smanager.log.1"
    process = subprocess.Popen(
        [sys.executable, "-m", "smanager", "--host", "127.0.0.1", "--port", "0",
         "--log-file", str(log_file)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert await until(lambda: "listening on" in log_file.read_text()
                           if log_file.exists() else False)
        log_file.rename(rotated)  # what logrotate does, before its postrotate kill -USR1
        process.send_signal(signal.SIGUSR1)
        assert await until(lambda: log_file.exists() and "reopened" in log_file.read_text())
        process.send_signal(signal.SIGHUP)
        assert await until(lambda: "restart: restarted" in log_file.read_text())
    finally:
        process.terminate()
        assert process.wait(TIMEOUT) == 0
        stderr = process.stderr.read()
        process.stderr.close()
    old, new = rotated.read_text(), log_file.read_text()
    assert "listening on" in old and "SIGHUP" not in old
    assert f"log file {log_file} reopened" in new and "SIGHUP: restarting services" in new
    assert "stopped" in new and stderr == ""  # all of it went to the file


def test_json_log_lines_from_a_server_parse(server_process):
    server = server_process("--log-format", "json")
    server.stop()
    entries = [json.loads(line) for line in server.log]
    assert any(entry["message"].startswith("listening on 127.0.0.1:") for entry in entries)
    assert entries[-1]["message"] == "stopped"
    assert all(entry.keys() >= {"time", "level", "logger", "message"} for entry in entries)


def test_a_log_file_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "no" / "such" / "smanager.log"
    result = subprocess.run([sys.executable, "-m", "smanager", "--log-file", str(missing)],
                            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT * 3,
                            check=False)
    assert (result.returncode, result.stderr) == (
        2, f"smanager: error: cannot open log file {missing}: No such file or directory\n")


def test_sigusr1_without_a_log_file_does_not_stop_the_server():
    server = ServerProcess().start()
    try:
        server.process.send_signal(signal.SIGUSR1)
        timer = threading.Timer(TIMEOUT, server.process.kill)  # bounds the read below
        timer.start()
        for line in server.process.stderr:  # until the server answers the signal, or exits
            server.log.append(line)
            if "SIGUSR1" in line:
                break
        timer.cancel()
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0
    assert "SIGUSR1: the log goes to stderr; no file to reopen" in "".join(server.log)
