"""``python -m smanager`` as a user runs it: flags, config file, exit status, signals,
and how it refuses an unsafe or empty setup."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import (
    FIXTURE_SERVICES,
    MISSING,
    NOBODY,
    ROOT,
    SEP,
    TIMEOUT,
    ask_core,
    fixture_source,
    started_manager,
)

from smanager.cli.main import make_config
from smanager.config import Config, ConfigError, bundled_services_dir


def ask(port, *lines):
    """Send lines, half-close, return everything the server said after the banner."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall("".join(line + "\n" for line in lines).encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        for _ in range(10_000):  # bounded; ends when the server closes
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode().split(SEP, 1)[1]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "smanager", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT * 3)


def test_defaults_are_loopback_and_the_seed_port():
    config = make_config([])
    assert (config.host, config.port) == ("127.0.0.1", 10000)
    assert config.service_dirs == [ROOT / "services"]


def test_flags_beat_the_config_file_which_beats_defaults(tmp_path):
    (tmp_path / "smanager.toml").write_text(textwrap.dedent("""
        port = 12000
        log_level = "debug"
        services = ["more"]
        command_timeout = 5
        [service.scrapman]
        max_captures = 3
    """))
    config = make_config(["--config", str(tmp_path / "smanager.toml"), "--port", "12001"])
    assert config.port == 12001 and config.log_level == "DEBUG"
    assert config.services == [str(tmp_path / "more")]  # relative to the file
    assert config.command_timeout == 5.0
    assert config.service == {"scrapman": {"max_captures": 3}}


def test_every_flag_has_a_config_key():
    flags = {a.dest for a in __import__("smanager.cli.main", fromlist=["x"]).build_parser()._actions}
    keys = set(Config.__dataclass_fields__)
    assert flags - {"help", "version", "config"} <= keys
    # tables of service options exist only in the file; config_file is --config's own value
    assert keys - flags == {"service", "config_file"}


def test_services_learn_which_file_the_config_came_from(tmp_path):
    (tmp_path / "smanager.toml").write_text("port = 12002\n")
    config = make_config(["--config", str(tmp_path / "smanager.toml")])
    assert config.config_file == str(tmp_path / "smanager.toml")
    assert make_config([]).config_file == ""


def test_a_config_file_cannot_name_another_config_file(tmp_path):
    (tmp_path / "smanager.toml").write_text('config_file = "/elsewhere.toml"\n')
    with pytest.raises(ConfigError, match="config_file is not a setting"):
        make_config(["--config", str(tmp_path / "smanager.toml")])


@pytest.mark.parametrize("args, message", [
    (["--port", "http"], "smanager: error: argument --port: invalid int value: 'http'\n"),
    (["--port", "70000"], "smanager: error: port must be 0-65535, not 70000\n"),
    (["--frobnicate"], "smanager: error: unrecognized arguments: --frobnicate\n"),
    (["--command-timeout", "0"], "smanager: error: command_timeout must be more than 0, not 0.0\n"),
    (["--config", "/nonexistent/smanager.toml"],
     "smanager: error: cannot read /nonexistent/smanager.toml: No such file or directory\n"),
])
def test_bad_flags_exit_2_with_one_line(args, message):
    result = run_cli(*args)
    assert (result.returncode, result.stderr, result.stdout) == (2, message, "")


@pytest.mark.parametrize("content, message", [
    ("port = ", "is not valid TOML"),
    ("colour = 'blue'", "unknown setting 'colour'"),
    ("port = '10000'", "port must be int, not '10000'"),
    ("services = [1]", "services must be a list of directories"),
])
def test_an_unusable_config_exits_2(tmp_path, content, message):
    (tmp_path / "bad.toml").write_text(content)
    result = run_cli("--config", str(tmp_path / "bad.toml"))
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0"),
    (["--no-tcp"], "nothing to listen on"),
    (["--unix-socket-mode", "999", "--unix-socket", "x"], "unix_socket_mode must be octal"),
    (["--max-connections", "0"], "max_connections must be at least 1"),
])
def test_the_cli_says_how_to_fix_an_unsafe_or_empty_setup(args, message):
    done = run_cli("--port", "0", *args)
    assert done.returncode == 2
    assert done.stderr.startswith("smanager: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1




@pytest.mark.parametrize(("make", "message"), [
    (lambda path: None, MISSING),
    (lambda path: path.mkdir(), "Is a directory"),
    (lambda path: path.write_text(""), NOBODY),
    (lambda path: path.write_text("# smanager users: NAME LEVEL VERIFIER\n"),
     NOBODY),
], ids=["missing", "directory", "empty", "header-only"])
def test_a_users_file_that_cannot_be_used_refuses_to_start(tmp_path, make, message):
    """A mistyped --users-file must not leave the server open to everyone."""
    path = tmp_path / "users"
    make(path)
    done = run_cli("--port", "0", "--users-file", str(path))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"smanager: error: cannot use users file {path}: {message}\n"


def test_an_empty_users_file_name_refuses_to_start():
    """--users-file "$UNSET" must not start a server open to everyone either."""
    done = run_cli("--port", "0", "--users-file", "")
    assert (done.returncode, done.stderr) == (2, "smanager: error: users_file must name a file\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "server.pem"], "--tls-cert needs --tls-key (its private key)"),
    (["--tls-key", "server.key"], "--tls-key needs --tls-cert (the certificate)"),
    (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
    (["--tls-client-ca", "ca.pem", "--tls-key", "k"], "--tls-key needs --tls-cert"),
])
def test_a_tls_setting_without_its_partner_names_what_is_missing(args, message):
    done = run_cli("--port", "0", *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"smanager: error: {message}") and done.stderr.count("\n") == 1


def test_help_names_the_users_subcommand_and_where_services_come_from():
    done = subprocess.run([sys.executable, "-m", "smanager", "--help"], cwd=ROOT,
                          env={**os.environ, "COLUMNS": "1000"},  # no line breaks in a path
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0 and done.stderr == ""
    text = done.stdout
    assert "smanager users --users-file FILE add NAME" in text
    assert f"Services are loaded from the bundled services ({ROOT / 'services'}; not with " \
           "--no-default-services) and from each --services DIR, never from the current " \
           "directory." in text


def test_a_services_directory_in_the_working_directory_is_not_loaded(tmp_path, monkeypatch):
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "deploy.py").write_text(fixture_source("deploy"))
    monkeypatch.chdir(tmp_path)
    assert make_config([]).service_dirs == [bundled_services_dir()]
    assert make_config(["--services", "services"]).service_dirs == \
        [bundled_services_dir(), Path("services")]


def test_a_port_in_use_exits_1_with_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port))
    assert result.returncode == 1
    assert result.stderr == f"smanager: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_starts_logs_its_real_port_and_serves(server_process):
    server = server_process()
    assert any(f"listening on 127.0.0.1:{server.port}" in line for line in server.log)
    assert ask(server.port, "help -s") == (
        "TOP: captest capture_at scrapfreq startcap stopcap hostname\n"
        "SERVICES: monitor proc scrapman scripts systemstatus\nCOMMANDS: help kill restart\n" + SEP)


def test_service_directories(server_process):
    server = server_process("--no-default-services", "--services", str(FIXTURE_SERVICES))
    assert ask(server.port, "help -s").split("\n")[1] == "SERVICES: testsvc"


@pytest.mark.parametrize("how", ["kill", signal.SIGTERM, signal.SIGINT])
def test_kill_and_signals_stop_cleanly_with_status_0(server_process, how):
    server = server_process()
    if how == "kill":
        assert ask(server.port, "kill") == "shutting down\n" + SEP
    else:
        server.process.send_signal(how)
    assert server.process.wait(TIMEOUT) == 0
    assert server.stop() == 0
    assert "Traceback" not in "".join(server.log)


def test_sighup_restarts_services_with_new_code(server_process, tmp_path):
    (tmp_path / "deploy.py").write_text(fixture_source("deploy"))  # answers "v1"
    server = server_process("--services", str(tmp_path))
    assert ask(server.port, "deploy version") == "v1\n" + SEP
    (tmp_path / "deploy.py").write_text((tmp_path / "deploy.py").read_text().replace("v1", "v2"))
    server.process.send_signal(signal.SIGHUP)
    for line in server.process.stderr:  # bounded by the process: it logs the restart
        server.log.append(line)
        if "restart: restarted" in line:
            break
    assert ask(server.port, "deploy version") == "v2\n" + SEP


def test_a_hung_blocking_command_does_not_stop_kill_from_exiting(server_process):
    server = server_process("--services", str(FIXTURE_SERVICES), "--command-timeout", "0.2",
                            "--shutdown-timeout", "0.5")
    assert ask(server.port, "testsvc hang").startswith("ERROR: testsvc hang timed out")
    assert ask(server.port, "kill") == "shutting down\n" + SEP
    assert server.process.wait(TIMEOUT) == 0


def test_pip_install_gives_smanager_and_tshell_commands_with_the_bundled_services(tmp_path, server_process):
    target, source = tmp_path / "site", tmp_path / "source"
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "results"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(source)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if build.returncode and "No matching distribution found for setuptools" in build.stderr:
        pytest.skip("pip cannot fetch setuptools to build with (no package index)")
    assert build.returncode == 0, build.stderr
    assert (target / "bin" / "smanager").exists()
    assert (target / "smanager" / "bundled_services" / "systemstatus.py").exists()
    # Run the installed copy from elsewhere, so the checkout's services/ is not used.
    server = server_process(env={"PYTHONPATH": str(target)})
    server_file = subprocess.run(
        [sys.executable, "-c", "import smanager, sys; print(smanager.__file__)"],
        env={"PYTHONPATH": str(target)}, cwd=tmp_path, capture_output=True, text=True)
    assert server_file.stdout.startswith(str(target))
    assert ask(server.port, "help -s").split("\n")[1] == "SERVICES: monitor proc scrapman scripts systemstatus"
    # ...and a tshell command that talks to it.
    one_shot = subprocess.run(
        [str(target / "bin" / "tshell"), f"127.0.0.1:{server.port}", "-c", "systemstatus echo hi"],
        env={"PYTHONPATH": str(target)}, cwd=tmp_path, capture_output=True, text=True,
        timeout=TIMEOUT)
    assert (one_shot.returncode, one_shot.stdout, one_shot.stderr) == (0, "hi\n", "")


def test_idle_worker_threads_do_not_count_as_hung_commands(server_process):
    server = server_process("--services", str(FIXTURE_SERVICES))
    assert ask(server.port, "testsvc block 0") == "blocked 0\n" + SEP  # starts a worker thread
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(TIMEOUT) == 0
    server.stop()
    assert not any("abandoning" in line for line in server.log)


def test_paths_in_the_config_file_are_relative_to_it(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "smanager.toml").write_text(textwrap.dedent("""
        users_file = "users"
        audit_log = "-"
        [service.scrapman]
        capture_dir = "captures"
        interval = 5
        [service.proc.programs.web]
        env_file = "web.env"
        command = "relative/but/not/a/path"
    """))
    monkeypatch.chdir(tmp_path)  # started from elsewhere
    config = make_config(["--config", "etc/smanager.toml"])
    etc = (tmp_path / "etc").resolve()
    assert config.users_file == str(etc / "users") and config.audit_log == "-"
    assert config.service["scrapman"] == {"capture_dir": str(etc / "captures"), "interval": 5}
    assert config.service["proc"]["programs"]["web"] == {
        "env_file": str(etc / "web.env"), "command": "relative/but/not/a/path"}


@pytest.mark.parametrize("make, problem", [
    (lambda path: None, "no such directory"),
    (lambda path: path.write_text("x = 1\n"), "a file, not a directory of services"),
])
def test_services_naming_no_directory_refuses_to_start(tmp_path, make, problem):
    target = tmp_path / "svc"
    make(target)
    result = run_cli("--port", "0", "--services", str(target))
    assert result.returncode == 2
    assert result.stderr == f"smanager: error: --services {target}: {problem}\n"


async def test_a_config_table_for_no_service_is_a_warning_and_a_failure_in_help(caplog):
    caplog.set_level(logging.WARNING, "smanager.roster")
    async with started_manager(options={"scrapmann": {"interval": 5}}) as manager:
        assert ("Failed to load:\n    scrapmann: has a [service.scrapmann] table in the config, "
                "but no service of that name is loaded\n") in await ask_core(manager, "help")
    assert any("scrapmann: has a [service.scrapmann] table" in r.getMessage()
               for r in caplog.records)
