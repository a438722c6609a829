"""tshell completes script names and their parameters, asked of a real server
(127.0.0.1, port 0) serving a temporary scripts directory; a server without
scripts, or one answering in another shape, offers nothing and raises nothing;
and Tab on a real pseudo-terminal leaves ``PARAM=`` ready for its value."""

import asyncio
import io

import pytest
from helpers import TIMEOUT, running_server, tshell_on_terminal

from smanager.client import Client, Reply
from smanager.tshell.shell import Completer, Shell


def sh(*block):
    lines = "".join(f"# {line}\n" for line in ["-- jojo --", *block, "-- jojo --"])
    return f"#!/bin/sh\n{lines}echo \"$TEXT$VERSION\"\n"


def write_script(folder, name, text):
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)


def scripts_settings(tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    write_script(folder, "echo.sh", sh("description: echo", "param: text - Text to echo"))
    write_script(folder, "deploy.sh", sh("param: env - where", "param: version - which",
                                         "param: dry - rehearse"))
    write_script(folder, "Upgrade.sh", sh("param: to - version"))
    return {"service": {"scripts": {"dir": str(folder), "state_dir": str(tmp_path / "state")}}}


@pytest.fixture
def client(server_thread, tmp_path):
    port = server_thread.start(**scripts_settings(tmp_path))
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        yield client


@pytest.mark.parametrize(("typed", "use", "expected"), [
    ("scripts run ", None, ["Upgrade", "deploy", "echo"]),
    ("scripts run e", None, ["echo"]),
    ("scripts run Up", None, ["Upgrade"]),  # as the server spells it: case counts
    ("scripts run up", None, []),
    ("scripts show d", None, ["deploy"]),
    ("scripts runs ", None, ["Upgrade", "deploy", "echo"]),
    ("scripts run echo ", None, ["bg=", "text="]),
    ("scripts run echo te", None, ["text="]),
    ("scripts run deploy ", None, ["bg=", "dry=", "env=", "version="]),
    ("scripts run deploy env=prod d", None, ["dry="]),
    ("scripts run deploy env=prod bg=true ", None, ["dry=", "version="]),
    ("scripts run echo text=", None, []),  # a value is being typed
    ("scripts run nosuch ", None, []),
    ("scripts show echo ", None, []),
    ("scripts log ", None, []),  # a run id, not a name
    ("scripts r", None, ["reload", "run", "runs"]),  # the service's commands, as before
    ("run ", "scripts", ["Upgrade", "deploy", "echo"]),
    ("run echo t", "scripts", ["text="]),
    ("run echo ", "systemstatus", []),
])
def test_script_names_and_parameters_complete_from_the_server(client, typed, use, expected):
    assert Completer(client).candidates(typed, use) == expected


def test_the_index_is_asked_once_and_again_after_the_shell_sends_a_reload(client, tmp_path):
    out = io.StringIO()
    shell = Shell(client, out=out)
    assert shell.completer.candidates("scripts run ") == ["Upgrade", "deploy", "echo"]
    write_script(tmp_path / "scripts", "backup.sh", sh("param: target - where to"))
    with Client("127.0.0.1", client.port, timeout=TIMEOUT) as other:
        other.run("scripts", "reload")
    assert shell.completer.candidates("scripts run b") == []  # kept for the session
    assert shell.handle("scripts reload")
    assert "ERROR" not in out.getvalue()
    assert shell.completer.candidates("scripts run b") == ["backup"]
    assert shell.completer.candidates("scripts run backup ") == ["bg=", "target="]


@pytest.mark.parametrize("settings", [{}, {"no_default_services": True}],
                         ids=["scripts-without-directories", "no-scripts-service"])
def test_a_server_without_scripts_offers_no_names(server_thread, settings):
    port = server_thread.start(**settings)
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        completer = Completer(client)
        for typed in ("scripts run ", "scripts run x ", "run ", "scripts show "):
            assert completer.candidates(typed, "scripts" if typed == "run " else None) == []


class OddServer:
    """A help index with a scripts service whose 'scripts list' answers VALUE."""

    def __init__(self, value, ok=True):
        self.reply = Reply("scripts list", ok, value if ok else None, None if ok else "no")

    def services(self):
        return ["scripts"]

    def call(self, line):
        return self.reply


@pytest.mark.parametrize(("value", "ok", "names", "echo_words"), [
    (None, False, [], []),
    ("3 scripts", True, [], []),
    ({"echo": {}}, True, [], []),
    ([1, None, "echo"], True, [], []),
    ([{"name": 7}], True, [], []),
    ([{"name": "echo", "params": "text"}], True, ["echo"], ["bg="]),
    ([{"name": "echo", "params": [{"name": "text"}, "x", {"name": None}]}], True, ["echo"],
     ["bg=", "text="]),
])
def test_an_answer_in_another_shape_offers_nothing_and_raises_nothing(value, ok, names,
                                                                      echo_words):
    completer = Completer(OddServer(value, ok))
    assert completer.candidates("scripts run ") == names
    assert completer.candidates("scripts run echo ") == echo_words


async def test_tab_leaves_a_parameter_ready_for_its_value_on_a_terminal(tmp_path):
    async with running_server(**scripts_settings(tmp_path)) as server:
        port = server.address[1]
        async with tshell_on_terminal(port, tmp_path / "history") as (process, terminal):
            prompt = f"127.0.0.1:{port}> ".encode()
            await terminal.expect(prompt)
            terminal.type(b"scripts run ec\t")
            await terminal.expect(b"echo ")
            terminal.type(b"te\t")
            await terminal.expect(b"text=")
            terminal.type(b"hi\r")
            assert b"ERROR" not in await terminal.expect(prompt)
            terminal.type(b"quit\r")
            assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    # What was sent: Tab put no space between = and the value.
    assert "scripts run echo text=hi" in (tmp_path / "history").read_text().splitlines()
