"""tshell as a command: one command with -c, commands from stdin, exit statuses,
JSON output, logging in, and every way of failing in one line (never a
traceback): a reset or silent server, a host name idna refuses, odd time-outs,
a closed stdout, Ctrl-C, undecodable input."""

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers import (
    ROOT,
    TIMEOUT,
    blackhole,
    closed_port,
    fake_peer,
    on_terminal,
    resetting_listener,
    run_tshell_main,
    running_server,
    short_dir,
    tshell,
    tshell_on_terminal,
)

from smanager import __version__


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


def test_one_shot_statuses_and_json(port):
    assert run_tshell_main(f"127.0.0.1:{port}", "-c", "nosuch") == \
        (1, "", "ERROR: unknown command 'nosuch' (try 'help')\n")
    assert run_tshell_main(f"127.0.0.1:{port}", "--json", "-c", "testsvc count 2") == \
        (0, '{"chunk": 1}\n{"chunk": 2}\n{"ok": true, "result": null}\n', "")


def test_a_timeout_in_one_shot_is_status_2_after_the_chunks_so_far(port):
    status, out, err = run_tshell_main(f"127.0.0.1:{port}", "--timeout", "1", "-c",
                                "testsvc count 2 5")
    assert (status, out) == (2, "1\n")
    assert err == f"tshell: 127.0.0.1:{port}: no reply within 1 s\n"


def test_a_blackholed_host_in_one_shot_is_status_2_in_one_line():
    with blackhole() as dark:
        assert run_tshell_main(f"127.0.0.1:{dark}", "--timeout", "0.5", "-c", "help") == \
            (2, "", f"tshell: 127.0.0.1:{dark}: no connection within 0.5 s\n")


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


class TTYInput(io.StringIO):
    """A stdin that says it is a terminal, so tshell starts its interactive shell."""

    def isatty(self):
        return True


@contextlib.contextmanager
def silent_listener():
    """A listener that accepts one connection and never says anything.
    Yields (port, accepted event)."""
    accepted, done = threading.Event(), threading.Event()

    def stay_silent(connection):
        with connection:
            accepted.set()
            done.wait(TIMEOUT)

    port, thread = fake_peer(stay_silent)
    try:
        yield port, accepted
    finally:
        done.set()
        thread.join(TIMEOUT)


@pytest.mark.parametrize("mode", [["-c", "help"], ["--hosts", None, "-c", "help"],
                                  ["--hosts", None, "--ping"], ["interactive"]])
def test_tshell_reports_a_reset_server_in_one_line(mode):
    """Guards a fault since fixed, which was:
    The same raw ConnectionResetError is a traceback from tshell -c, --hosts,
    --ping (fleet.py _everywhere only catches TimeoutError and ClientError) and the
    interactive start (tshell.py main only catches ClientError around connect)."""
    port, thread = resetting_listener()
    address = f"127.0.0.1:{port}"
    if mode == ["interactive"]:
        status, out, err = run_tshell_main(address, stdin=TTYInput(""))
    elif mode[0] == "-c":
        status, out, err = run_tshell_main(address, *mode)
    else:
        status, out, err = run_tshell_main(*[address if arg is None else arg for arg in mode])
    thread.join(TIMEOUT)
    assert status == 2
    assert "reset" in (out + err).lower()


@pytest.mark.parametrize("argv", [
    ["--hosts", "a..b", "-c", "help"],  # an empty DNS label: UnicodeError from idna
    ["--hosts", "x" * 64 + ".example", "--ping"],  # a label over 63 characters
    ["a..b"],  # interactive
])
def test_a_host_name_idna_cannot_encode_is_one_line_not_a_traceback(argv):
    """Guards a fault since fixed, which was:
    getaddrinfo raises UnicodeError (a ValueError, not an OSError) for a name
    with an empty or too long label; AsyncClient.connect / Client.connect let it
    through, so tshell --hosts/--ping and the interactive start print a traceback."""
    stdin = TTYInput("") if len(argv) == 1 else None
    status, _out, err = run_tshell_main(*argv, stdin=stdin)
    assert status == 2
    assert err.count("\n") >= 1 and err.startswith("tshell: ")


def test_an_infinite_timeout_is_not_a_traceback(port):
    """Guards a fault since fixed, which was:
    tshell.py _addresses accepts --timeout inf; socket.settimeout(inf) raises
    OverflowError, which Output.run does not catch."""
    status, out, err = run_tshell_main(f"127.0.0.1:{port}", "--timeout", "inf", "-c", "testsvc add 1")
    if status == 0:  # inf taken as "no limit"
        assert (out, err) == ("2\n", "")
    else:  # or refused as a wrong argument
        assert status == 2 and err.startswith("tshell: ") and err.count("\n") == 1


def test_a_nan_timeout_is_a_usage_error(port):
    """Guards a fault since fixed, which was:
    '--timeout nan' passes the `<= 0` check; the fleet then reports a host that
    answers at once as 'no answer within nan s'."""
    status, out, err = run_tshell_main("--hosts", f"127.0.0.1:{port}", "--timeout", "nan",
                                "-c", "testsvc add 1")
    assert (status, out) == (2, "")
    assert "timeout" in err


def test_a_closed_stdout_is_not_a_traceback(port):
    """Guards a fault since fixed, which was:
    tshell.py Output.write: BrokenPipeError (`tshell -c ... | head -0`) is a
    traceback, in one-shot and in fleet mode."""
    for args in ([f"127.0.0.1:{port}", "-c", "systemstatus echo hi"],
                 ["--hosts", f"127.0.0.1:{port}", "-c", "systemstatus echo hi"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # whatever tshell writes now is EPIPE
        try:
            done = subprocess.run([sys.executable, "tshell.py", *args], cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=TIMEOUT * 3)
        finally:
            os.close(write_end)
        assert "Traceback" not in done.stderr, done.stderr
        assert "BrokenPipeError" not in done.stderr, done.stderr


def test_ctrl_c_during_a_fleet_command_is_not_a_traceback():
    """Guards a fault since fixed, which was:
    tshell.py main: asyncio.run(_fleet(...)) lets KeyboardInterrupt through;
    the one-shot path answers Ctrl-C with 'tshell: interrupted' and status 130."""
    with silent_listener() as (port, accepted):
        process = subprocess.Popen(
            [sys.executable, "tshell.py", "--hosts", f"127.0.0.1:{port}", "-c", "help"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert accepted.wait(TIMEOUT)  # tshell is waiting for the banner
            process.send_signal(signal.SIGINT)
            _out, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert "Traceback" not in err, err
    assert process.returncode == 130


async def test_ctrl_c_while_the_interactive_shell_connects_is_not_a_traceback(tmp_path):
    """Guards a fault since fixed, which was:
    tshell.py main: `client.connect()` before the shell starts catches only
    ClientError; Ctrl-C while a slow server has not sent its banner is a traceback."""
    with silent_listener() as (port, accepted):
        async with tshell_on_terminal(port, tmp_path / "history") as (process, terminal):
            assert await asyncio.to_thread(accepted.wait, TIMEOUT)
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), TIMEOUT)
            output = await terminal.read_until_closed()
    assert b"Traceback" not in output, output.decode(errors="replace")


def test_stdin_that_is_not_utf8_is_not_a_traceback(port, tmp_path):
    """Guards a fault since fixed, which was:
    tshell.py run_lines iterates stdin; with strict decoding (PYTHONIOENCODING=utf-8,
    or a UTF-8 locale Python does not coerce) a non-UTF-8 byte is a traceback."""
    commands = tmp_path / "commands.txt"
    commands.write_bytes(b"testsvc add 1\nsystemstatus echo \xff\ntestsvc add 2\n")
    with commands.open("rb") as stdin:
        _status, out, err = tshell(f"127.0.0.1:{port}", stdin=stdin,
                                  env={"PYTHONIOENCODING": "utf-8"})
    assert "Traceback" not in err, err
    assert out.startswith("2\n")


def test_stdin_mode_goes_on_after_a_line_the_client_refuses(port, tmp_path):
    """Guards a fault since fixed, which was:
    tshell.py run_lines stops at any status other than 0/1, so a line refused
    locally (Output.run returns 2 for a ValueError) ends the run although the
    server is reachable; the docstring says it stops only at quit or an
    unreachable server."""
    commands = tmp_path / "commands.txt"
    commands.write_text("testsvc add 1\nmode text\ntestsvc add 2\n")
    with commands.open() as stdin:
        status, out, err = tshell(f"127.0.0.1:{port}", stdin=stdin)
    assert out == "2\n3\n"
    assert (status, err) == (1, "tshell: a client keeps its connection in JSON mode\n")


def tshell_login(*args, env=None):
    """tshell with no terminal to ask a password on, and SMANAGER_PASSWORD empty
    unless ENV gives it."""
    return tshell(*args, env={"SMANAGER_PASSWORD": "", **(env or {})}, new_session=True)


def test_tshell_logs_in_with_the_password_from_the_environment(server_thread, users_file):
    where = f"127.0.0.1:{server_thread.start(users_file=users_file)}"
    assert tshell_login("--user", "bob", where, "-c", "systemstatus echo hi",
                  env={"SMANAGER_PASSWORD": "bob-pw"}) == (0, "hi\n", "")
    assert tshell_login("--user", "bob", where, "-c", "help", env={"SMANAGER_PASSWORD": "x"}) == \
        (2, "", f"tshell: {where}: cannot log in as bob: login failed\n")
    assert tshell_login(where, "-c", "systemstatus echo hi") == \
        (1, "", "ERROR: 'systemstatus echo' needs a login first: login USER PASSWORD\n")
    assert tshell_login("--user", "bob", "--hosts", where, "-c", "systemstatus echo hi",
                  env={"SMANAGER_PASSWORD": "bob-pw"}) == (0, f"{where}: hi\n", "")


def test_tshell_without_a_password_or_a_terminal_says_how_to_give_one():
    env = dict(os.environ)
    env.pop("SMANAGER_PASSWORD", None)
    done = subprocess.run([sys.executable, "tshell.py", "--user", "bob", "-c", "help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("tshell: --user needs a password: set SMANAGER_PASSWORD")


def env_without_password():
    return {name: value for name, value in os.environ.items() if name != "SMANAGER_PASSWORD"}


async def test_user_is_asked_for_the_password_on_a_real_terminal(users_file):
    async with running_server(users_file=users_file) as server:
        argv = ["--user", "bob", f"127.0.0.1:{server.address[1]}", "-c", "systemstatus echo hi"]
        async with on_terminal(sys.executable, "tshell.py", *argv, cwd=ROOT,
                               env=env_without_password()) as (process, terminal):
            await terminal.expect(b"password for bob: ")
            terminal.type(b"bob-pw\r")
            await terminal.expect(b"hi\n")
            assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    assert b"bob-pw" not in terminal.output  # typed, never echoed


async def test_the_greeting_after_a_login_lists_what_the_user_may_use(users_file, tmp_path):
    """The banner came before the login, listing what anybody may see: none here."""
    async with running_server(users_file=users_file) as server:
        where = f"127.0.0.1:{server.address[1]}"
        async with on_terminal(sys.executable, "tshell.py", "--user", "carol", where, cwd=ROOT,
                               env={**env_without_password(), "NO_COLOR": "1", "TERM": "dumb",
                                    "TSHELL_HISTORY": str(tmp_path / "history"),
                                    "INPUTRC": os.devnull}) as (process, terminal):
            await terminal.expect(b"password for carol: ")
            terminal.type(b"carol-pw\r")
            await terminal.expect(f"Connected to {where}. Services: monitor proc scrapman scripts systemstatus.\n"
                                  .encode())
            await terminal.expect(f"{where}> ".encode())
            terminal.type(b"quit\r")
            assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0


def test_version_prints_the_package_version():
    assert tshell("--version") == (0, f"tshell {__version__}\n", "")


def test_tshell_talks_to_a_unix_socket_named_by_its_path(server_thread, tmp_path):
    with short_dir() as directory:
        path = str(directory / "smanager.sock")
        port = server_thread.start(unix_socket=path)
        assert tshell(path, "-c", "systemstatus echo hi") == (0, "hi\n", "")
        commands = tmp_path / "commands.txt"
        commands.write_text("testsvc add 1\ntestsvc add 2\n")
        with commands.open() as stdin:
            assert tshell(path, stdin=stdin) == (0, "2\n3\n", "")
        assert tshell("--hosts", f"{path},127.0.0.1:{port}", "-c", "testsvc add 1") == \
            (0, f"{path}: 2\n127.0.0.1:{port}: 2\n", "")
        assert tshell("--hosts", path, "--ping")[1].startswith(f"{path}  up ")
        status, out, err = tshell(path, "--tls", "-c", "testsvc add 1")
        assert (status, out) == (2, "")
        assert err == (f"tshell: {path} is a Unix socket; a server speaks TLS only over TCP "
                       "(try 'tshell --help')\n")
        missing = str(directory / "nobody.sock")
        assert tshell(missing, "-c", "help") == \
            (2, "", f"tshell: cannot connect to {missing}: No such file or directory\n")


def test_two_commands_are_a_usage_error_and_neither_runs(address):
    for twice in (["-c", "testsvc add 1", "-c", "kill"], ["-c", "kill", "--command", "help"],
                  ["--hosts", address, "--hosts", address, "-c", "kill"]):
        args = twice if "--hosts" in twice else [address, *twice]
        status, out, err = run_tshell_main(*args)
        assert (status, out) == (2, "")
        assert err.endswith(" given twice (try 'tshell --help')\n"), err
    assert run_tshell_main(address, "-c", "testsvc add 1") == (0, "2\n", "")  # still alive


@pytest.mark.parametrize("hosts", [["--hosts", ""], ["--hosts", " "], ["--hosts", " , "],
                                   ["--hosts-file", ""], ["--hosts-file", "EMPTY"]])
def test_an_empty_host_list_is_an_error_never_the_local_server(address, tmp_path, hosts):
    empty = tmp_path / "hosts.txt"
    empty.write_text("# nobody yet\n\n")
    hosts = [str(empty) if arg == "EMPTY" else arg for arg in hosts]
    status, out, err = run_tshell_main(*hosts, "-c", "kill")
    assert (status, out) == (2, "")
    assert "no hosts given" in err or "cannot read --hosts-file ''" in err, err
    assert run_tshell_main(*hosts, address, "-c", "kill")[0] == 2  # not "the HOST given"
    assert run_tshell_main(address, "-c", "testsvc add 1") == (0, "2\n", "")  # still alive


@pytest.mark.parametrize(("line", "why"), [
    ("", "a request needs a command"), ("  ", "a request needs a command"),
    ("mode text", "a client keeps its connection in JSON mode"),
])
def test_a_command_no_client_sends_is_a_wrong_argument(address, line, why):
    assert run_tshell_main(address, "-c", line) == \
        (2, "", f"tshell: -c: {why} (try 'tshell --help')\n")
