"""demo_script.py: the seed's automation example, imported and run."""

import json
import re
import subprocess
import sys

import pytest
from helpers import BARE_BANNER, ROOT, TIMEOUT, closed_port, talker

import demo_script
from smanager.client import ClientError


def run_demo(*args):
    done = subprocess.run([sys.executable, "demo_script.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT * 3)
    return done.returncode, done.stdout, done.stderr


def test_smanager_cmd_returns_the_reply_text(port):
    assert demo_script.smanager_cmd("127.0.0.1", port, "systemstatus echo hi") == "hi\n"
    assert demo_script.smanager_cmd("127.0.0.1", port, "nosuch") == \
        "ERROR: unknown command 'nosuch' (try 'help')\n"
    with pytest.raises(ClientError):
        demo_script.smanager_cmd("127.0.0.1", closed_port(), "help")


def test_what_services_commands_and_toplevel(port, monkeypatch):
    monkeypatch.setattr(demo_script, "port", port)  # as a script would set its own
    assert demo_script.what_services() == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"]
    assert demo_script.what_commands() == ["help", "kill", "restart"]
    assert demo_script.what_toplvl() == \
        ["captest", "capture_at", "scrapfreq", "startcap", "stopcap", "hostname"]


def test_running_it_appends_the_heartbeat_to_the_log(port, tmp_path):
    log = tmp_path / "useful.log"
    log.write_text("earlier line\n")
    for _ in range(2):
        status, out, err = run_demo(f"127.0.0.1:{port}", str(log))
        assert (status, err) == (0, "")
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line" and len(lines) == 3
    for line in lines[1:]:
        assert re.fullmatch(r"Scrapman heartbeat at [\d.]+: not capturing; no capture yet", line)
    assert out == lines[-1] + "\n"


def test_without_scrapman_or_a_server_it_logs_why(server_thread, tmp_path):
    log = tmp_path / "useful.log"
    bare = server_thread.start(no_default_services=True)
    assert run_demo(f"127.0.0.1:{bare}", str(log))[0] == 1
    down = closed_port()
    assert run_demo(f"127.0.0.1:{down}", str(log))[0] == 2
    first, second = log.read_text().splitlines()
    assert re.fullmatch(r"Scrapman not available at [\d.]+", first)
    assert re.fullmatch(rf"Couldn't connect to smanager at [\d.]+: cannot connect to "
                        rf"127.0.0.1:{down}: Connection refused", second)


def test_wrong_arguments_are_a_usage_line():
    assert run_demo("--help") == (2, "", "usage: demo_script.py [HOST[:PORT]] [LOGFILE]\n")
    assert run_demo("a", "b", "c")[0] == 2


def test_demo_script_survives_a_server_lost_between_its_two_calls(tmp_path):
    """Guards a fault since fixed, which was:
    demo_script.py log_scrapman_heartbeat: only the first smanager_cmd is in the
    try; if the server goes away before 'scrapman get_heartbeat' the ClientError
    is a traceback (status 1, not the documented 2)."""
    terse = {"ok": True, "result": "TOP: \nSERVICES: scrapman\nCOMMANDS: help kill restart"}
    port, thread = talker([(0, BARE_BANNER), (1, b'{"ok": true, "result": "json"}\n'),
                           (1, json.dumps(terse).encode() + b"\n")])  # then it is gone
    status, _out, err = run_demo(f"127.0.0.1:{port}", str(tmp_path / "log"))
    thread.join(TIMEOUT)
    assert "Traceback" not in err, err
    assert status == 2


@pytest.mark.parametrize("args", [["a..b"], ["127.0.0.1:1", "{missing}/useful.log"]])
def test_demo_script_fails_in_one_line(tmp_path, args):
    """Guards a fault since fixed, which was:
    demo_script.py: a host name idna refuses (UnicodeError is not a ClientError),
    and a log file that cannot be opened, are tracebacks."""
    args = [arg.format(missing=tmp_path / "missing") for arg in args]
    status, _out, err = run_demo(*args)
    assert "Traceback" not in err, err
    assert status == 2
