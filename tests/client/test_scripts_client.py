"""smanager.client.Scripts, PyMoJo's surface, against a real server (127.0.0.1, port 0,
on a loop in another thread) serving a temporary scripts directory.

The first test is PyMoJo's README: its echo.sh (byte for byte) and its Echojo
subclass, as smanager's README shows it.  Every run a test starts ends before
the test does (the gated one is let go and followed to its end).
"""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, TIMEOUT

from smanager.client import Client, CommandFailed, Scripts

# PyMoJo's README.md, "Extending Mojo": its echo.sh, less the code block's four spaces.
PYMOJO_ECHO = """#!/bin/bash

# -- jojo --
# description: echo
# param: text - Text to echo
# -- jojo --

echo ${TEXT}
exit 0
"""


class Echojo(Scripts):
    def echo(self, text):
        return self.run("echo", {"text": text})


def write_script(folder, name, text):
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def sh(*block, body="true\n"):
    """A /bin/sh script: its jojo block (lines without the '# '), then BODY."""
    lines = "".join(f"# {line}\n" for line in ["-- jojo --", *block, "-- jojo --"])
    return f"#!/bin/sh\n{lines}{body}"


@pytest.fixture
def scripts_dir(tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    write_script(folder, "echo.sh", PYMOJO_ECHO)
    return folder


@pytest.fixture
def client(server_thread, scripts_dir, tmp_path):
    """A Client of a server whose [service.scripts] dir is scripts_dir."""
    port = server_thread.start(service={"scripts": {
        "dir": str(scripts_dir), "state_dir": str(tmp_path / "state")}})
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        yield client


def test_pymojos_echojo_runs_its_echo_script_and_gets_pyjojos_result(client):
    result = Echojo(client).echo("hello world")
    assert result == {"retcode": 0, "stdout": ["hello world"], "stderr": [],
                      "return_values": {}, "run": result["run"]}
    assert isinstance(result["run"], int)


def test_parameter_values_are_sent_as_str_and_arrive_unquoted(client):
    assert Echojo(client).echo(42)["stdout"] == ["42"]
    assert Echojo(client).echo("it's \"quoted\" $HOME")["stdout"] == ["it's \"quoted\" $HOME"]


def test_a_run_waits_past_the_clients_own_timeout_for_as_long_as_the_script_may_run(
        server_thread, scripts_dir, tmp_path):
    write_script(scripts_dir, "slow.sh", sh("timeout: 10", body="sleep 1\necho done\n"))
    port = server_thread.start(service={"scripts": {
        "dir": str(scripts_dir), "state_dir": str(tmp_path / "state")}})
    with Client("127.0.0.1", port, timeout=0.3) as client:
        assert Scripts(client).run("slow")["stdout"] == ["done"]


def test_a_server_without_the_scripts_service_is_refused_at_construction(server_thread):
    port = server_thread.start(no_default_services=True)
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client, \
            pytest.raises(CommandFailed, match="scripts"):
        Scripts(client)


def test_the_index_is_cached_at_construction_with_pyjojos_and_smanagers_fields(client):
    scripts = Scripts(client)
    assert scripts.get_script_names() == ["echo"]
    echo = scripts.get_script("echo")
    assert echo["description"] == "echo" and echo["filename"].endswith("echo.sh")
    assert [(p["name"], p["description"]) for p in echo["params"]] == [("text", "Text to echo")]
    assert echo["timeout"] == 300 and echo["lock"] is False
    assert scripts.get_script("nosuch") is None


def test_get_script_uses_the_cache_until_asked_with_use_cache_false(client, scripts_dir):
    scripts = Scripts(client)
    write_script(scripts_dir, "added.sh", sh("description: came later"))
    client.run("scripts", "reload")  # the server knows it; this Scripts' cache does not
    assert scripts.get_script("added") is None
    fresh = scripts.get_script("added", use_cache=False)
    assert fresh["description"] == "came later"
    assert scripts.get_script("added") == fresh
    assert scripts.get_script_names() == ["added", "echo"]


def test_asking_the_server_for_a_script_it_does_not_run_gives_none(client, scripts_dir):
    scripts = Scripts(client)
    assert scripts.get_script("nosuch", use_cache=False) is None
    assert "nosuch" not in scripts.get_script_names()


def test_get_scripts_asks_the_server_and_leaves_the_cache_alone(client, scripts_dir):
    scripts = Scripts(client)
    write_script(scripts_dir, "added.sh", sh("description: came later"))
    client.run("scripts", "reload")
    assert sorted(scripts.get_scripts()) == ["added", "echo"]
    assert scripts.get_scripts()["added"]["description"] == "came later"
    assert scripts.get_script_names() == ["echo"]


def test_reload_rescans_the_server_then_refreshes_the_cache(client, scripts_dir):
    scripts = Scripts(client)
    added = write_script(scripts_dir, "added.sh", sh("description: came later"))
    reloaded = scripts.reload()
    assert reloaded["added"] == ["added"] and reloaded["removed"] == []
    assert scripts.get_script("added")["description"] == "came later"
    added.unlink()
    assert scripts.reload()["removed"] == ["added"]
    assert scripts.get_script("added") is None and scripts.get_script_names() == ["echo"]


@pytest.mark.parametrize(("name", "params", "said"), [
    ("nosuch", {}, "no script named 'nosuch'"),
    ("ech", {"text": "x"}, "did you mean echo?"),
    ("echo", {"txt": "x"}, "script echo takes: text (not txt)"),
])
def test_an_unknown_script_or_an_undeclared_parameter_raises_one_line(client, name, params,
                                                                     said):
    with pytest.raises(CommandFailed) as failed:
        Scripts(client).run(name, params)
    message = str(failed.value)
    assert said in message and "\n" not in message, message
    assert client.run("scripts", "runs") == []  # nothing ran


def test_a_second_run_of_a_fail_locked_script_raises_busy(client, scripts_dir, tmp_path):
    write_script(scripts_dir, "deploy.sh", sh("lock: fail", "param: gate",
                                              body='read -r _ < "$GATE"\necho deployed\n'))
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    held = os.open(gate, os.O_RDWR)  # so neither the script nor the test blocks opening it
    try:
        scripts = Scripts(client)
        scripts.reload()
        first = scripts.run("deploy", {"gate": gate, "bg": "true"})
        with pytest.raises(CommandFailed) as failed:
            scripts.run("deploy", {"gate": gate})
        message = str(failed.value)
        assert message.startswith(f"busy: run {first['run']} since ") and "\n" not in message
        os.write(held, b"go\n")
        ended = client.call(f"scripts tail {first['run']}")  # to the run's end
        assert ended.ok and ended.value["stdout"] == ["deployed"]
    finally:
        os.close(held)


def test_a_reply_shows_what_telnet_shows_while_its_value_keeps_the_structure(client):
    reply = client.call("scripts run echo 'text=hello world'")
    assert reply.text == "hello world\nexit status 0\n"
    assert [line["text"] for chunk in reply.chunks for line in chunk] == ["hello world"]
    assert reply.value["stdout"] == ["hello world"]
    shown = []
    assert client.call("scripts run echo text=hi", on_text=shown.append).text == "exit status 0\n"
    assert shown == ["hi\n"]
    assert client.call("scripts list").text.splitlines()[0].split() == ["NAME", "DESCRIPTION", "TAGS"]


def test_tshell_prints_a_scripts_run_as_telnet_would(client):
    done = subprocess.run(
        [sys.executable, str(ROOT / "tshell.py"), f"127.0.0.1:{client.port}", "-c",
         "scripts run echo text=hi"], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    assert (done.returncode, done.stdout) == (0, "hi\nexit status 0\n"), done.stderr
