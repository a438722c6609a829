"""tshell's interactive shell: completion, ``use`` and how a line is routed (with
a stand-in help index and against a real server), and the shell on a real
pseudo-terminal."""

import asyncio
import io

import pytest
from helpers import MEETING, TIMEOUT, closed_port, running_server, tshell_on_terminal

from smanager.client import Client
from smanager.tshell.shell import Completer, Shell, route


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
    ("help d", "systemstatus", ["disk"]),  # help about the service in use
    ("use ", None, ["scrapman", "systemstatus"]),
    ("u", "systemstatus", ["uptime", "use"]),
    ("g", "scrapman", ["get_heartbeat"]),
    ("nosuch ", None, []),
])
def test_completion_candidates(typed, use, expected):
    assert Completer(Index()).candidates(typed, use) == expected


def test_completion_without_a_server_offers_nothing_and_does_not_raise():
    client = Client("127.0.0.1", closed_port(), timeout=TIMEOUT)
    try:
        assert Completer(client).candidates("sys") == []
        assert Completer(client).candidates("use ", "testsvc") == []
    finally:
        client.close()


def test_completion_against_a_real_server(port):
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        completer = Completer(client)
        assert completer.candidates("testsvc co") == ["count"]
        assert completer.candidates("help -s te") == ["testsvc"]
        assert completer.candidates("help nosuch ") == []
        assert completer.candidates("f", "testsvc") == ["fail", "forever"]


KNOWN = {"scrapman", "systemstatus", "help", "kill", "restart", "captest", "hostname", "use"}


@pytest.mark.parametrize(("line", "use", "sent"), [
    ("uptime", None, "uptime"),
    ("uptime", "systemstatus", "systemstatus uptime"),
    ("disk /var", "systemstatus", "systemstatus disk /var"),
    ("hostname", "systemstatus", "systemstatus hostname"),  # the service offers it
    ("captest", "systemstatus", "captest"),  # a toplevel command it does not offer
    ("scrapman get_heartbeat", "systemstatus", "scrapman get_heartbeat"),
    ("restart", "systemstatus", "restart systemstatus"),  # the service in use, not all
    ("restart scrapman", "systemstatus", "restart scrapman"),
    ("restart", None, "restart"),
    ("kill", "systemstatus", "kill"),
    ("help", "systemstatus", "help systemstatus"),
    ("help -s", "systemstatus", "help -s systemstatus"),
    ("help disk", "systemstatus", "help systemstatus disk"),  # its command
    ("help -s disk", "systemstatus", "help -s systemstatus disk"),
    ("help uptme", "systemstatus", "help systemstatus uptme"),  # the service's error
    ("help scrapman", "systemstatus", "help scrapman"),
    ("help captest", "systemstatus", "help captest"),
    ("help scrapman get_heartbeat", "systemstatus", "help scrapman get_heartbeat"),
    ("uptme", "systemstatus", "systemstatus uptme"),  # a typo gets the service's error
])
def test_use_routes_bare_commands_to_the_service(line, use, sent):
    assert route(line, use, Index().commands("systemstatus") if use else (), KNOWN) == sent


@pytest.mark.parametrize(("line", "use", "sent"), [
    ("HELP", "systemstatus", "help systemstatus"),
    ("Uptime now", "systemstatus", "systemstatus Uptime now"),
    ("SCRAPMAN get_heartbeat", "systemstatus", "SCRAPMAN get_heartbeat"),
    ("'quoted' x", "systemstatus", "systemstatus 'quoted' x"),
    ("anything at all", None, "anything at all"),
])
def test_route_edge_cases(line, use, sent):
    known = {"scrapman", "systemstatus", "help", "kill", "restart", "use"}
    assert route(line, use, ["help", "uptime"] if use else (), known) == sent


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
        "ERROR: no service 'nosuch'; services: monitor proc scrapman scripts systemstatus testsvc\n"
        "routed\n2\nERROR: a client keeps its connection in JSON mode\n")


def test_restart_and_help_under_use_are_about_the_service_in_use(port):
    out = io.StringIO()
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        shell = Shell(client, out=out)
        assert shell.handle("use testsvc")
        for line in ("restart", "help add", "help -s", "help scrapman"):
            assert shell.handle(line)
        expected = "".join(client.call(line).text for line in (
            "help -s testsvc", "help scrapman"))
    assert out.getvalue() == \
        "restarted: testsvc\ntestsvc add A [B]\n    Adds A and B\n" + expected


def test_the_shell_still_sends_commands_when_the_used_service_has_gone(server_thread):
    """Guards a fault since fixed, which was:
    shell.py handle(): _commands_of_use() asks `help -s SERVICE` before every
    line; once the service is gone (the server restarted without it) that raises
    CommandFailed, so *no* line can be sent, and each says '(the next command
    reconnects)', which is not what is wrong."""
    port = server_thread.start()
    out = io.StringIO()
    with Client("127.0.0.1", port, timeout=TIMEOUT) as client:
        shell = Shell(client, out=out)
        assert shell.handle("use testsvc")
        server_thread.stop(port)
        server_thread.start(port=port, services=[MEETING])  # testsvc is not there now
        assert shell.handle("systemstatus echo still here")
    assert "still here\n" in out.getvalue(), out.getvalue()
    assert "reconnects" not in out.getvalue()


async def test_the_interactive_shell_on_a_terminal(tmp_path):
    history = tmp_path / "history"
    async with running_server() as server:
        port = server.address[1]
        async with tshell_on_terminal(port, history) as (process, terminal):
            prompt = f"127.0.0.1:{port}> ".encode()
            await terminal.expect(b"Services: monitor proc scrapman scripts systemstatus testsvc.\n")
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
