"""``smanager check-config`` as an admin runs it before a (re)start: every problem of a
config file, one line each, or the settings in effect; and the shipped example."""

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from helpers import MISSING, ROOT, TIMEOUT

from smanager.cli.check import SETTINGS

EXAMPLE = ROOT / "examples" / "smanager.toml"
THREE_MISTAKES = """\
prot = 10001

[service.proc.programs.web]
cwd = "/"

[service.monitor.collectors.cache]
collector = "redis"
adress = "127.0.0.1:6379"
"""


def smanager(*args, env=None):
    return subprocess.run([sys.executable, "-m", "smanager", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT * 3)


def check_config(*args, env=None):
    return smanager("check-config", *args, env=env)


def written(tmp_path, text, name="smanager.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def settings_shown(stdout):
    """{key: value text} of the effective settings printed."""
    return dict(line.split(" = ", 1) for line in stdout.splitlines()
                if " = " in line and not line.startswith("#"))


def test_a_good_file_passes_and_shows_every_setting_defaults_included(tmp_path):
    config = written(tmp_path, """
        port = 12000
        unauthenticated = ["help", "systemstatus"]
        [service.proc.programs.web]
        command = ["/bin/sleep", "60"]
        [service.monitor.collectors.cache]
        collector = "redis"
        password = "hunter2"
    """)
    done = check_config("--config", str(config))
    assert (done.returncode, done.stderr) == (0, "")
    shown = settings_shown(done.stdout)
    assert list(shown) == SETTINGS  # every top-level key, once, in Config's order
    assert shown["port"] == "12000" and shown["host"] == '"127.0.0.1"'
    assert shown["unauthenticated"] == '["help", "systemstatus"]'
    assert shown["command_timeout"] == "30.0" and shown["tcp"] == "true"
    assert "[service.NAME] tables (not shown: they may hold passwords): proc, monitor" \
        in done.stdout
    assert "hunter2" not in done.stdout
    assert done.stdout.endswith("\nconfiguration OK\n")


def test_three_mistakes_are_all_reported_one_line_each_and_exit_2(tmp_path):
    config = written(tmp_path, THREE_MISTAKES)
    done = check_config("--config", str(config))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"smanager: {config}: unknown setting 'prot' (did you mean 'port'?)",
        f"smanager: {config}: program web: command is required",
        f'smanager: {config}: collector cache (redis): unknown option "adress" '
        '(did you mean "address"?)',
    ]


def test_the_server_refuses_the_same_file_with_its_first_problem_in_the_same_words(tmp_path):
    config = written(tmp_path, THREE_MISTAKES)
    done = smanager("--config", str(config), "--port", "0")
    assert (done.returncode, done.stderr) == (2, "smanager: error: unknown setting 'prot'\n")
    first = check_config("--config", str(config)).stderr.splitlines()[0]
    assert first.startswith(f"smanager: {config}: unknown setting 'prot'")


def test_a_file_that_is_not_toml_is_one_line(tmp_path):
    config = written(tmp_path, "port = \nhost = [\n")
    done = check_config("--config", str(config))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"smanager: {config} is not valid TOML: ")
    assert done.stderr.count("\n") == 1


def test_a_missing_file_is_one_line(tmp_path):
    done = check_config("--config", str(tmp_path / "nowhere.toml"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"smanager: cannot read {tmp_path / 'nowhere.toml'}: "
                           "No such file or directory\n")


def test_flags_are_checked_over_the_file_and_named_as_the_command_line(tmp_path):
    config = written(tmp_path, "port = 12000\n")
    done = check_config("--config", str(config), "--port", "70000", "--max-line", "3")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "smanager: command line: port must be 0-65535, not 70000",
        "smanager: command line: max_line must be at least 80, not 3"]
    assert check_config("--frobnicate").stderr == \
        "smanager: error: unrecognized arguments: --frobnicate\n"


def test_every_problem_of_the_service_tables_is_reported_not_only_the_first(tmp_path):
    config = written(tmp_path, """
        [service.proc]
        orphans = "keep"
        [service.proc.programs.a]
        command = "/bin/true"
        depends_on = ["b"]
        [service.proc.programs.c]
        command = 5
        [service.scripts]
        dir = "no-scripts-here"
        max_concurrent = 0
        [service.monitor]
        alerts = ["load.load1 >> 4", "load.load1 > 4 for=3", "load.load5 > x"]
        flush_every = -1
        [service.monitor.collectors.site]
        collector = "nosuch"
    """)
    (tmp_path / "programs").mkdir()
    done = check_config("--config", str(config))
    assert (done.returncode, done.stdout) == (2, "")
    problems = [line.removeprefix(f"smanager: {config}: ") for line in done.stderr.splitlines()]
    assert problems[:4] == [
        'proc: orphans must be "kill" or "adopt", not "keep"',
        "program c: command must be a list of strings or a string, not 5",
        'program a: depends_on names unknown program "b"',
        "scripts: max_concurrent must be at least 1, not 0"]
    assert problems[4] == f"scripts: dir {tmp_path / 'no-scripts-here'} is not a directory"
    assert problems[5].startswith("[service.monitor]: alerts \"load.load1 >> 4\": ")
    assert problems[6].startswith("[service.monitor]: alerts \"load.load5 > x\": ")
    assert problems[7] == "[service.monitor]: flush_every must be more than 0, not -1"
    assert problems[8].startswith("collector site: no collector kind 'nosuch' (there are: ")
    assert len(problems) == 9


def test_a_table_for_no_loaded_service_is_a_warning_not_a_failure(tmp_path):
    config = written(tmp_path, "[service.procc]\nprograms = {}\n")
    done = check_config("--config", str(config))
    assert done.returncode == 0 and done.stdout.endswith("configuration OK\n")
    assert done.stderr == (f"smanager: {config}: warning: [service.procc]: no service of "
                           "that name is loaded (a typo?)\n")


@pytest.mark.parametrize("args, message", [
    (["--no-tcp"], "nothing to listen on: --no-tcp needs --unix-socket PATH"),
    (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0: anyone who can reach it"),
    (["--tls-cert", "server.pem"], "--tls-cert needs --tls-key (its private key)"),
    (["--services", "/nonexistent/services"], "--services /nonexistent/services: no such"),
    (["--users-file", "/nonexistent/users"],
     f"cannot use users file /nonexistent/users: {MISSING}"),
    (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
     "cannot use the TLS certificate or key: [Errno 2] No such file or directory"),
    (["--log-file", "/nonexistent/smanager.log"],
     "cannot open log file /nonexistent/smanager.log: No such file or directory"),
    (["--audit-log", "/nonexistent/audit.log"],
     "cannot open audit log /nonexistent/audit.log: No such file or directory"),
])
def test_settings_that_go_together_are_refused_in_the_servers_words(args, message):
    server = smanager("--port", "0", *args)
    assert server.returncode == 2 and server.stderr.startswith(f"smanager: error: {message}")
    checked = check_config("--port", "0", *args)
    assert (checked.returncode, checked.stdout) == (2, "")
    said = server.stderr.removeprefix("smanager: error: ")
    assert checked.stderr == f"smanager: command line: {said}"


def test_a_log_or_unix_socket_in_a_missing_directory_is_a_problem_each(tmp_path):
    done = check_config("--log-file", str(tmp_path / "no" / "smanager.log"),
                        "--audit-log", str(tmp_path / "no" / "audit.log"),
                        "--unix-socket", str(tmp_path / "no" / "s.sock"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"smanager: command line: cannot open log file {tmp_path}/no/smanager.log: "
        "No such file or directory",
        f"smanager: command line: cannot open audit log {tmp_path}/no/audit.log: "
        "No such file or directory",
        f"smanager: command line: cannot listen on {tmp_path}/no/s.sock: "
        "No such file or directory"]


def test_checking_writes_nothing(tmp_path):
    (tmp_path / "collectors").mkdir()
    (tmp_path / "collectors" / "queue.py").write_text(textwrap.dedent("""
        from smanager import Collector

        class Queue(Collector):
            def collect(self):
                return {"waiting": 1}
    """))
    (tmp_path / "scripts").mkdir()
    config = written(tmp_path, """
        audit_log = "audit.log"
        [service.proc]
        state_dir = "proc-state"
        [service.proc.programs.web]
        command = ["/bin/sleep", "60"]
        [service.scripts]
        dir = "scripts"
        state_dir = "scripts-state"
        [service.monitor]
        state_dir = "monitor-state"
        collectors_dir = "collectors"
        [service.monitor.collectors.jobs]
        collector = "queue"
    """)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    # As a Python that writes bytecode would run it: collectors_dir's files are imported.
    writing = {key: value for key, value in os.environ.items()
               if key != "PYTHONDONTWRITEBYTECODE"}
    done = check_config("--config", str(config), env=writing)
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before


def test_the_example_passes_as_shipped():
    done = check_config("--config", str(EXAMPLE))
    assert (done.returncode, done.stderr) == (0, "")
    assert "[service." not in done.stdout  # every service example is commented out


def uncommented(text, pattern):
    return "\n".join(re.sub(pattern, r"\1", line) for line in text.splitlines()) + "\n"


def test_the_example_passes_with_its_service_examples_uncommented(tmp_path):
    # "#key = value" and "#[table]": the examples; "# text": prose and defaults.
    config = written(tmp_path, uncommented(EXAMPLE.read_text(), r"^#([^ #].*)$"))
    (tmp_path / "scripts").mkdir()  # the example's dir: "scripts", beside the file
    done = check_config("--config", str(config))
    assert (done.returncode, done.stderr) == (0, "")
    for table in ("[service.proc.programs.web]", "[service.proc.templates.share]",
                  "[service.scripts]", "[service.monitor.collectors.cache]",
                  "[service.monitor.export.prometheus]"):
        assert table in config.read_text().splitlines()
    assert "tables (not shown: they may hold passwords): proc, scripts, monitor" in done.stdout


def test_the_example_shows_every_setting_at_its_real_default(tmp_path):
    # users_file has no default: an empty name is refused, so it shows an example.
    defaults = r"^# ((?!users_file)[a-z_]+ = .*)$"
    config = written(tmp_path, uncommented(EXAMPLE.read_text(), defaults))
    documented = re.findall(r"^# ([a-z_]+) = ", EXAMPLE.read_text(), re.MULTILINE)
    assert sorted(documented) == sorted(SETTINGS)
    done = check_config("--config", str(config))
    assert (done.returncode, done.stderr) == (0, "")
    assert settings_shown(done.stdout) == settings_shown(check_config().stdout)
    assert len(re.findall(r"^[a-z_]+ = ", config.read_text(), re.MULTILINE)) == len(SETTINGS) - 1


def test_the_example_is_a_file_an_admin_can_copy_anywhere(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "smanager.toml")
    done = check_config("--config", str(tmp_path / "smanager.toml"))
    assert done.returncode == 0 and f"of {tmp_path / 'smanager.toml'}" in done.stdout
