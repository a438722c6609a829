"""tshell: one-shot, stdin, completion, ``use``, and the shell on a real pseudo-terminal."""

import asyncio
import io
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TIMEOUT, running_server
from terminal import on_terminal
from test_client_library import closed_port

from smanager.client import Client
from smanager.tshell.shell import Completer, Shell, route


def tshell(*args, stdin=subprocess.DEVNULL, env=None):
    """Run tshell.py as a user would; (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "tshell.py", *args], cwd=ROOT, stdin=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT * 3,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def address(server_thread):
    return f"127.0.0.1:{server_thread.start()}"


# -- one command: -c -----------------------------------------------------------------------

def test_one_shot_prints_only_the_reply_body(address):
    assert tshell(address, "-c", "systemstatus echo hi  there") == (0, "hi there\n", "")
    assert tshell(address, "-c", "testsvc count 3") == (0, "1\n2\n3\n", "")
    assert tshell(address, "-c", "testsvc dashes") == \
        (0, "a\n" + "-" * 50 + "\n  " + "-" * 60 + " \nb\n", "")


def test_one_shot_error_reply_is_status_1_and_one_line_on_stderr(address):
    assert tshell(address, "-c", "nosuch") == \
        (1, "", "ERROR: unknown command 'nosuch' (try 'help')\n")


def test_one_shot_that_cannot_connect_is_status_2():
    port = closed_port()
    assert tshell(f"127.0.0.1:{port}", "-c", "help") == \
        (2, "", f"tshell: cannot connect to 127.0.0.1:{port}: Connection refused\n")


@pytest.mark.parametrize("args", [
    ["--bogus"], ["web1:notaport", "-c", "x"], ["--hosts", "a", "b"], ["--hosts", "a"],
    ["--ping", "-c", "x"], ["--timeout", "0", "-c", "x"], ["--hosts-file", "/nonexistent"],
])
def test_wrong_arguments_are_status_2_and_one_line(args):
    status, out, err = tshell(*args)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("tshell: "), err


def test_one_shot_json_prints_the_messages(address):
    assert tshell(address, "--json", "-c", "testsvc count 2") == \
        (0, '{"chunk": 1}\n{"chunk": 2}\n{"ok": true, "result": null}\n', "")
    assert tshell(address, "--json", "-c", "testsvc refuse") == \
        (1, '{"ok": false, "error": "refused: no reason"}\n', "")


def test_a_timeout_is_status_2(address):
    status, out, err = tshell(address, "--timeout", "1", "-c", "testsvc sleep 5")
    assert (status, out) == (2, "")
    assert err == f"tshell: {address}: no reply within 1 s\n"


# -- stdin that is not a terminal -----------------------------------------------------------

def test_commands_from_stdin_run_in_order(address, tmp_path):
    commands = tmp_path / "commands.txt"
    commands.write_text("# nightly checks\ntestsvc add 1 2\n\nnosuch\nsystemstatus echo last\n")
    with commands.open() as stdin:
        assert tshell(address, stdin=stdin) == \
            (1, "3\nlast\n", "ERROR: unknown command 'nosuch' (try 'help')\n")


def test_stdin_stops_at_quit_and_at_a_lost_server(address, tmp_path):
    commands = tmp_path / "commands.txt"
    commands.write_text("testsvc add 1\nquit\ntestsvc add 2\n")
    with commands.open() as stdin:
        assert tshell(address, stdin=stdin) == (0, "2\n", "")
    commands.write_text("testsvc add 1\n")
    with commands.open() as stdin:
        assert tshell(f"127.0.0.1:{closed_port()}", stdin=stdin)[0] == 2


# -- completion and `use`, without a terminal -----------------------------------------------

class Index:
    """The help index a Client would have fetched."""

    def services(self):
        return ["scrapman", "systemstatus"]

    def toplevel(self):
        return ["captest", "hostname"]

    def builtins(self):
        return ["help", "kill", "restart"]

    def commands(self, service):
        return {"systemstatus": ["help", "disk", "uptime", "hostname"],
                "scrapman": ["help", "get_heartbeat", "captest"]}[service]


@pytest.mark.parametrize(("typed", "use", "expected"), [
    ("", None, ["captest", "exit", "help", "hostname", "kill", "quit", "restart", "scrapman",
                "systemstatus", "use"]),
    ("s", None, ["scrapman", "systemstatus"]),
    ("SYS", None, ["systemstatus"]),
    ("systemstatus ", None, ["disk", "help", "hostname", "uptime"]),
    ("systemstatus u", None, ["uptime"]),
    ("systemstatus uptime ", None, []),
    ("help ", None, ["-s", "captest", "help", "hostname", "kill", "restart", "scrapman",
                     "systemstatus"]),
    ("help -s sc", None, ["scrapman"]),
    ("help scrapman g", None, ["get_heartbeat"]),
    ("use ", None, ["scrapman", "systemstatus"]),
    ("u", "systemstatus", ["uptime", "use"]),
    ("g", "scrapman", ["get_heartbeat"]),
    ("nosuch ", None, []),
])
def test_completion_candidates(typed, use, expected):
    assert Completer(Index()).candidates(typed, use) == expected


KNOWN = {"scrapman", "systemstatus", "help", "kill", "restart", "captest", "hostname", "use"}


@pytest.mark.parametrize(("line", "use", "sent"), [
    ("uptime", None, "uptime"),
    ("uptime", "systemstatus", "systemstatus uptime"),
    ("disk /var", "systemstatus", "systemstatus disk /var"),
    ("hostname", "systemstatus", "systemstatus hostname"),  # the service offers it
    ("captest", "systemstatus", "captest"),  # a toplevel command it does not offer
    ("scrapman get_heartbeat", "systemstatus", "scrapman get_heartbeat"),
    ("restart", "systemstatus", "restart"),
    ("help", "systemstatus", "help systemstatus"),
    ("help scrapman", "systemstatus", "help scrapman"),
    ("uptme", "systemstatus", "systemstatus uptme"),  # a typo gets the service's error
])
def test_use_routes_bare_commands_to_the_service(line, use, sent):
    assert route(line, use, Index().commands("systemstatus") if use else (), KNOWN) == sent


def test_the_shell_uses_a_service_against_a_real_server(address):
    host, port = address.split(":")
    out = io.StringIO()
    with Client(host, int(port)) as client:
        shell = Shell(client, out=out)
        assert shell.handle("use nosuch")
        assert shell.handle("use systemstatus")
        assert shell.prompt == f"{address} systemstatus> "
        assert shell.handle("echo routed")
        assert shell.handle("testsvc add 1 1")
        assert shell.handle("use")
        assert shell.handle("mode text")  # refused locally: the client needs JSON
        assert not shell.handle("quit")
    assert out.getvalue() == (
        "ERROR: no service 'nosuch'; services: scrapman systemstatus testsvc\n"
        "routed\n2\nERROR: a client keeps its connection in JSON mode\n")


# -- the interactive shell on a pseudo-terminal ------------------------------------------

def tshell_on_terminal(port, history):
    """tshell.py on a pseudo-terminal: yields (process, Terminal)."""
    return on_terminal(
        sys.executable, "tshell.py", f"127.0.0.1:{port}", cwd=ROOT,
        env={**os.environ, "TSHELL_HISTORY": str(history), "TERM": "dumb",
             "NO_COLOR": "1", "INPUTRC": os.devnull})


async def test_the_interactive_shell_on_a_terminal(tmp_path):
    history = tmp_path / "history"
    async with running_server() as server:
        port = server.address[1]
        async with tshell_on_terminal(port, history) as (process, terminal):
            prompt = f"127.0.0.1:{port}> ".encode()
            await terminal.expect(b"Services: scrapman systemstatus testsvc.\n")
            await terminal.expect(prompt)

            terminal.type(b"systemstatus ec\t")  # Tab completes the command name
            await terminal.expect(b"echo ")
            terminal.type(b"hi there\r")
            assert (await terminal.expect(prompt)).endswith(b"hi there\n" + prompt)

            terminal.type(b"use systemstatus\r")
            use_prompt = f"127.0.0.1:{port} systemstatus> ".encode()
            await terminal.expect(use_prompt)
            terminal.type(b"echo in use\r")
            assert (await terminal.expect(use_prompt)).endswith(b"in use\n" + use_prompt)
            terminal.type(b"use\r")
            await terminal.expect(prompt)

            terminal.type(b"testsvc forever\r")
            await terminal.expect(b"tick 3\n")
            terminal.type(b"\x03")  # Ctrl-C stops the stream, not the shell
            await terminal.expect(b"ERROR: interrupted\n" + prompt)
            terminal.type(b"nosuch\r")
            await terminal.expect(b"ERROR: unknown command 'nosuch' (try 'help')\n" + prompt)

            terminal.type(b"\x04")  # Ctrl-D leaves
            assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    assert history.read_text().splitlines() == [  # kept for the next session
        "systemstatus echo hi there", "use systemstatus", "echo in use", "use",
        "testsvc forever", "nosuch"]


async def test_the_shell_reconnects_after_a_server_restart(tmp_path):
    async with running_server() as server:
        port = server.address[1]
        async with tshell_on_terminal(port, tmp_path / "history") as (process, terminal):
            prompt = f"127.0.0.1:{port}> ".encode()
            await terminal.expect(prompt)
            terminal.type(b"testsvc add 1 1\r")
            await terminal.expect(b"2\n" + prompt)
            await server.shutdown()  # the process restarts...
            async with running_server(port=port):  # ...on the same port
                terminal.type(b"testsvc add 2 2\r")
                assert (await terminal.expect(prompt)) == b"testsvc add 2 2\n4\n" + prompt
                terminal.type(b"quit\r")
                assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
