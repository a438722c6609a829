"""proc's settings: program tables, templates, [service.proc] and programs_dir
checked into specs, every mistake one line (pure logic, and real files for
programs_dir)."""

import signal

import pytest

from smanager.supervise.config_read import dependency_levels, read_proc_config
from smanager.supervise.spec import (
    Backoff,
    GiveUp,
    ProgramSpec,
    Ready,
    SpecError,
    parse_program,
    substitute,
)
from smanager.supervise.templates import parse_template

GOOD_TABLES = [
    ({"command": ["sleep", "5"]},
     {"command": ("sleep", "5"), "shell": False, "restart": "on-failure", "give_up": GiveUp(),
      "ready": Ready(), "stop_signal": signal.SIGTERM, "reload_signal": signal.SIGHUP,
      "ok_exit_codes": frozenset({0}), "cwd": None, "port": None}),
    ({"command": "python3 -m http.server 'a b'"}, {"command": ("python3", "-m", "http.server", "a b")}),
    ({"command": "echo $HOME | wc", "shell": True},
     {"command": ("/bin/sh", "-c", "echo $HOME | wc"), "shell": True}),
    ({"command": "x", "env": {"B": 1, "A": "text", "C": True, "D": 1.5, "E": False}},
     {"env": (("A", "text"), ("B", "1"), ("C", "true"), ("D", "1.5"), ("E", "false"))}),
    ({"command": "x", "umask": "022"}, {"umask": 0o22}),
    ({"command": "x", "umask": "0o027"}, {"umask": 0o27}),
    ({"command": "x", "umask": 0o077}, {"umask": 0o77}),
    ({"command": "x", "stop_signal": "int", "reload_signal": "SIGUSR1"},
     {"stop_signal": signal.SIGINT, "reload_signal": signal.SIGUSR1}),
    ({"command": "x", "stop_signal": 9}, {"stop_signal": signal.SIGKILL}),
    ({"command": "x", "restart": "always", "autostart": False, "ok_exit_codes": [0, 2, 255]},
     {"restart": "always", "autostart": False, "ok_exit_codes": frozenset({0, 2, 255})}),
    ({"command": "x", "start_secs": 0, "stop_timeout": 2}, {"start_secs": 0.0, "stop_timeout": 2.0}),
    ({"command": "x", "backoff": {"initial": 0.5, "jitter": 0}},
     {"backoff": Backoff(initial=0.5, jitter=0.0)}),
    ({"command": "x", "give_up": False}, {"give_up": None}),
    ({"command": "x", "give_up": {"restarts": 3}}, {"give_up": GiveUp(restarts=3)}),
    ({"command": "x", "port": "auto", "ready": "tcp:$PORT", "ready_timeout": 5},
     {"port": "auto", "ready": Ready("tcp", "$PORT", 1.0, 5.0)}),
    ({"command": "x", "ready": "tcp:127.0.0.1:8080"}, {"ready": Ready("tcp", "127.0.0.1:8080")}),
    ({"command": "x", "port": 8080, "ready": "http://localhost:${PORT}/health"},
     {"port": 8080, "ready": Ready("http", "http://localhost:${PORT}/health")}),
    ({"command": "x", "ready": "cmd:pg_isready -q", "ready_interval": 0.25},
     {"ready": Ready("cmd", "pg_isready -q", 0.25)}),
    ({"command": "x", "user": 1000, "group": "staff"}, {"user": "1000", "group": "staff"}),
    ({"command": "x", "depends_on": ["db", "cache", "db"]}, {"depends_on": ("db", "cache")}),
    ({"command": "x", "cwd": "/srv/web", "env_file": "~/web.env", "log_dir": "/var/log/web"},
     {"cwd": "/srv/web", "env_file": "/home/someone/web.env", "log_dir": "/var/log/web"}),
]


@pytest.mark.parametrize("table, fields", GOOD_TABLES, ids=lambda value: str(value)[:60])
def test_a_good_table_gives_these_fields(monkeypatch, table, fields):
    monkeypatch.setenv("HOME", "/home/someone")
    spec = parse_program("web", table)
    assert spec.name == "web"
    assert {key: getattr(spec, key) for key in fields} == fields


BAD_TABLES = [
    ({}, "program web: command is required"),
    ({"comand": "x"}, 'program web: unknown key "comand" (did you mean "command"?)'),
    ({"command": "x", "restart": "sometimes"},
     'program web: restart must be "always", "on-failure" or "never", not "sometimes"'),
    ({"command": []}, "program web: command must name a program"),
    ({"command": "  "}, "program web: command must name a program"),
    ({"command": ["a", 1]}, 'program web: command must be a list of strings or a string, not ["a", 1]'),
    ({"command": "echo 'open"}, "program web: command cannot be split: No closing quotation"),
    ({"command": ["sh", "-c", "x"], "shell": True},
     "program web: command must be a string when shell = true"),
    ({"command": "x", "shell": "yes"}, 'program web: shell must be true or false, not "yes"'),
    ({"command": "x", "start_secs": True}, "program web: start_secs must be a number, not true"),
    ({"command": "x", "start_secs": -1}, "program web: start_secs must be at least 0, not -1"),
    ({"command": "x", "stop_timeout": 0}, "program web: stop_timeout must be more than 0, not 0"),
    ({"command": "x", "stop_timeout": float("nan")}, "program web: stop_timeout must be a number, not NaN"),
    ({"command": "x", "backoff": {"factor": 0.5}},
     "program web: backoff.factor must be at least 1, not 0.5"),
    ({"command": "x", "backoff": {"jitter": 2}}, "program web: backoff.jitter must be at most 1, not 2"),
    ({"command": "x", "backoff": {"initial": 5, "max": 2}},
     "program web: backoff.max must be at least backoff.initial (5.0)"),
    ({"command": "x", "backoff": {"maxx": 2}},
     'program web: unknown key "backoff.maxx" (did you mean "backoff.max"?)'),
    ({"command": "x", "give_up": {"restarts": 0}}, "program web: give_up.restarts must be at least 1, not 0"),
    ({"command": "x", "give_up": "never"},
     'program web: give_up must be a table {restarts, within} or false, not "never"'),
    ({"command": "x", "ok_exit_codes": [0, 256]},
     "program web: ok_exit_codes must be a list of numbers 0-255, not [0, 256]"),
    ({"command": "x", "ok_exit_codes": [True]},
     "program web: ok_exit_codes must be a list of numbers 0-255, not [true]"),
    ({"command": "x", "stop_signal": "NOPE"},
     'program web: stop_signal must be a signal name like TERM or a number, not "NOPE"'),
    ({"command": "x", "reload_signal": 999},
     "program web: reload_signal must be a signal name like TERM or a number, not 999"),
    ({"command": "x", "umask": "999"}, 'program web: umask must be octal like "022", not "999"'),
    ({"command": "x", "umask": 0o1000}, 'program web: umask must be octal like "022", not 512'),
    ({"command": "x", "env": {"1X": "a"}}, 'program web: env names "1X", which is not a variable name'),
    ({"command": "x", "env": {"A": [1]}}, "program web: env.A must be a string, number or boolean, not [1]"),
    ({"command": "x", "port": 0}, 'program web: port must be "auto" or a number 1-65535, not 0'),
    ({"command": "x", "port": "any"}, 'program web: port must be "auto" or a number 1-65535, not "any"'),
    ({"command": "x", "ready": "tcp:"},
     'program web: ready must name a port, as in "tcp:8080" or "tcp:HOST:8080", not "tcp:"'),
    ({"command": "x", "ready": "tcp:host:99999"},
     'program web: ready must name a port, as in "tcp:8080" or "tcp:HOST:8080", not "tcp:host:99999"'),
    ({"command": "x", "ready": "tcp:$PORT"}, "program web: ready uses $PORT, but port is not set"),
    ({"command": "x", "ready": "cmd:"}, "program web: ready must name a program after cmd:"),
    ({"command": "x", "ready": "cmd:'x"}, "program web: ready cannot be split: No closing quotation"),
    ({"command": "x", "ready": "http:///path"},
     'program web: ready must be a URL like http://HOST:PORT/PATH, not "http:///path"'),
    ({"command": "x", "ready": "http://host:port/"},
     'program web: ready must be a URL like http://HOST:PORT/PATH, not "http://host:port/"'),
    ({"command": "x", "ready": "https://host/"},
     ('program web: ready must be "start_secs", "tcp:PORT", "tcp:HOST:PORT", "cmd:PROGRAM ARGS" '
      'or "http://HOST:PORT/PATH", not "https://host/"')),
    ({"command": "x", "depends_on": "db"}, 'program web: depends_on must be a list of program names, not "db"'),
    ({"command": "x", "depends_on": ["web"]}, "program web: depends_on names the program itself"),
    ({"command": "x", "depends_on": ["all"]}, 'program web: depends_on "all": the name is reserved'),
    ({"command": "x", "cwd": "relative/dir"},
     'program web: cwd must be an absolute path, not "relative/dir"'),
    ({"command": "x", "user": ""}, 'program web: user must be a name or a number, not ""'),
    ({"command": "x", "log_max_bytes": 0}, "program web: log_max_bytes must be at least 1, not 0"),
    ({"command": "x", "log_lines": 1.5}, "program web: log_lines must be a whole number, not 1.5"),
    ("command = 'x'", 'program web: must be a table of settings, not "command = \'x\'"'),
]


@pytest.mark.parametrize("table, error", BAD_TABLES, ids=lambda value: str(value)[:60])
def test_a_bad_table_is_one_line_naming_the_program_and_key(table, error):
    with pytest.raises(SpecError) as raised:
        parse_program("web", table)
    assert str(raised.value) == error


@pytest.mark.parametrize("name, error", [
    ("all", 'program "all": the name is reserved'),
    ("web server", ('program "web server": not a valid name; a name is 1-64 letters, digits, '
                    '"_", "." or "-", not starting with "_", "." or "-"')),
    ("-web", ('program "-web": not a valid name; a name is 1-64 letters, digits, '
              '"_", "." or "-", not starting with "_", "." or "-"')),
])
def test_a_program_name_outside_the_rule_is_refused(name, error):
    with pytest.raises(SpecError) as raised:
        parse_program(name, {"command": "x"})
    assert str(raised.value) == error


def test_defaults_apply_unless_the_program_sets_the_key_and_the_service_log_dir_is_the_fallback():
    defaults = {"restart": "always", "stop_timeout": 3, "env": {"LANG": "C"}}
    plain = parse_program("a", {"command": "x"}, defaults, log_dir="/logs")
    own = parse_program("b", {"command": "x", "restart": "never", "env": {"X": "1"},
                              "log_dir": "/mine"}, defaults, log_dir="/logs")
    assert (plain.restart, plain.stop_timeout, plain.env, plain.log_dir) == (
        "always", 3.0, (("LANG", "C"),), "/logs")
    assert (own.restart, own.stop_timeout, own.env, own.log_dir) == ("never", 3.0, (("X", "1"),), "/mine")


def test_port_is_substituted_in_argv_env_and_ready_target_and_exported():
    spec = parse_program("web", {"command": "serve --port=$PORT ${PORT}x $PORTS", "port": "auto",
                                 "env": {"URL": "http://127.0.0.1:${PORT}/", "N": 1},
                                 "ready": "tcp:127.0.0.1:$PORT"})
    argv, env, ready = spec.expanded(8123)
    assert argv == ("serve", "--port=8123", "8123x", "$PORTS")
    assert env == {"PORT": "8123", "URL": "http://127.0.0.1:8123/", "N": "1"}
    assert ready == Ready("tcp", "127.0.0.1:8123")
    assert spec.command[1] == "--port=$PORT"  # the spec itself keeps the placeholder


def test_without_a_port_nothing_is_substituted_or_exported():
    spec = parse_program("web", {"command": "echo $PORT", "env": {"A": "$PORT"}})
    assert spec.expanded(None) == (("echo", "$PORT"), {"A": "$PORT"}, Ready())


def test_substitute_makes_one_pass_and_leaves_unknown_names():
    values = {"a": "$b", "b": "B"}
    assert substitute("$a ${b} $c ${c} $ab $ {a} $$a", values) == "$b B $c ${c} $ab $ {a} $$b"


def test_a_spec_differs_when_any_field_does():
    spec = parse_program("web", {"command": "x"})
    assert not spec.differs_from(parse_program("web", {"command": ["x"]}))
    assert spec.differs_from(parse_program("web", {"command": "x", "log_lines": 10}))
    assert spec.differs_from(parse_program("web", {"command": "x", "env": {"A": "1"}}))


SHELL = {"command": "login --user=$user ${size}", "cwd": "/home/$user",
         "env": {"WHO": "$user", "N": 2},
         "params": {"user": {"pattern": "[a-z ]+"}, "size": {"pattern": "[0-9]+", "default": "3"}}}


def test_a_template_instantiates_a_session_with_whole_item_substitution():
    template = parse_template("shell", SHELL, {"restart": "never"}, log_dir="/logs")
    spec = template.instantiate("shell-1", {"user": "bob smith"})
    assert spec.command == ("login", "--user=bob smith", "3")
    assert (spec.cwd, spec.env) == ("/home/bob smith", (("N", "2"), ("WHO", "bob smith")))
    assert (spec.name, spec.template, spec.params) == (
        "shell-1", "shell", (("size", "3"), ("user", "bob smith")))
    assert (spec.restart, spec.log_dir) == ("never", "/logs")
    assert [param.name for param in template.params] == ["user", "size"]


def test_a_shell_template_exports_its_values_instead_of_editing_the_script():
    template = parse_template("sh", {"command": "echo \"$name\" $who", "shell": True,
                                     "env": {"who": "configured wins", "GREETING": "hi $name"},
                                     "params": {"name": {"pattern": ".*"}, "who": {"pattern": ".*"}}})
    spec = template.instantiate("sh-1", {"name": "$(rm -rf /)", "who": "me"})
    assert spec.command == ("/bin/sh", "-c", 'echo "$name" $who')
    assert dict(spec.env) == {"name": "$(rm -rf /)", "who": "configured wins",
                              "GREETING": "hi $(rm -rf /)"}


@pytest.mark.parametrize("values, error", [
    ({"user": "bob", "x": "1"}, 'template shell: unknown parameter "x"; it takes: size, user'),
    ({}, "template shell: parameter user is required"),
    ({"user": "Bob"}, "template shell: parameter user must match [a-z ]+"),
    ({"user": "bob", "size": "3 "}, "template shell: parameter size must match [0-9]+"),
])
def test_instantiating_with_bad_values_is_one_line(values, error):
    with pytest.raises(SpecError) as raised:
        parse_template("shell", SHELL).instantiate("s1", values)
    assert str(raised.value) == error


def test_a_template_without_params_takes_none_and_sessions_need_valid_names():
    template = parse_template("plain", {"command": "x"})
    with pytest.raises(SpecError, match=r'^template plain: unknown parameter "a"; it takes none$'):
        template.instantiate("s1", {"a": "1"})
    with pytest.raises(SpecError, match=r'^template plain: session "s 1": not a valid name'):
        template.instantiate("s 1", {})


@pytest.mark.parametrize("table, error", [
    ({"command": "x", "params": {"user": {"pattern": "[a-"}}},
     "template shell: param user: pattern is not a valid regex: unterminated character set at position 0"),
    ({"command": "x", "params": {"user": {}}},
     "template shell: param user: pattern is required: a regular expression the value must match"),
    ({"command": "x", "params": {"user": {"pattern": "[a-z]+", "default": "Bob"}}},
     'template shell: param user: default "Bob" does not match [a-z]+'),
    ({"command": "x", "params": {"user": {"pattern": "[a-z]+", "defualt": "bob"}}},
     'template shell: param user: unknown key "defualt" (did you mean "default"?)'),
    ({"command": "x", "params": {"PORT": {"pattern": "[0-9]+"}}},
     ('template shell: param "PORT": a parameter name is letters, digits and _, '
      "not starting with a digit, and not PORT")),
    ({"comand": "x $user", "params": {"user": {"pattern": "[a-z]+"}}},
     'template shell: unknown key "comand" (did you mean "command"?)'),
    ({"command": "x", "cwd": "$dir", "params": {"dir": {"pattern": ".*", "default": "rel"}}},
     'template shell: cwd must be an absolute path, not "rel"'),
    ({"command": "x 'open", "params": {}}, "template shell: command cannot be split: No closing quotation"),
])
def test_a_bad_template_is_refused_at_load(table, error):
    with pytest.raises(SpecError) as raised:
        parse_template("shell", table)
    assert str(raised.value) == error


def test_a_required_param_in_a_path_passes_the_load_time_try():
    template = parse_template("t", {"command": "x", "cwd": "$dir",
                                    "params": {"dir": {"pattern": "/srv/[a-z]+"}}})
    assert template.instantiate("t1", {"dir": "/srv/app"}).cwd == "/srv/app"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_programs_dir_files_are_read_in_name_order_after_the_config_and_broken_ones_named(tmp_path):
    programs = tmp_path / "programs.d"
    write(programs / "zeta.toml", 'command = "z"\ncwd = "work"\n')
    write(programs / "alpha.toml", 'command = "a"\nrestart = "always"\n')
    broken = write(programs / "broken.toml", 'command = "b\n')
    write(programs / "web.toml", 'command = "from the file"\n')
    write(programs / "bad name.toml", 'command = "x"\n')
    write(programs / "wrong.toml", 'command = "x"\nrestart = "maybe"\n')
    write(programs / "notes.txt", "not a program")
    config = read_proc_config({"programs_dir": str(programs), "state_dir": str(tmp_path / "state"),
                               "programs": {"web": {"command": "from the config"}}})
    assert list(config.programs) == ["web", "alpha", "zeta"]
    assert config.programs["web"].command == ("from", "the", "config")
    assert config.programs["alpha"].restart == "always"
    assert config.programs["zeta"].cwd == str(programs / "work")
    assert config.problems[0] == (
        'proc: programs_dir: bad name.toml: program "bad name": not a valid name; a name is '
        '1-64 letters, digits, "_", "." or "-", not starting with "_", "." or "-"')
    assert config.problems[1].startswith(f"program broken: {broken} is not valid TOML: ")
    assert config.problems[2:] == [
        f"program web: defined in the config and in {programs / 'web.toml'}; the config's is used",
        'program wrong: restart must be "always", "on-failure" or "never", not "maybe"']
    assert all("\n" not in problem for problem in config.problems)


def test_a_missing_programs_dir_is_a_problem_not_an_exception(tmp_path):
    config = read_proc_config({"programs_dir": str(tmp_path / "nowhere"),
                               "programs": {"a": {"command": "x"}}})
    assert list(config.programs) == ["a"]
    assert config.problems == [f"proc: programs_dir {tmp_path / 'nowhere'} is not a directory"]


def test_a_cycle_and_everything_behind_it_or_behind_a_broken_program_is_left_out(tmp_path):
    config = read_proc_config({"state_dir": str(tmp_path), "programs": {
        "front": {"command": "x", "depends_on": ["b"]},
        "a": {"command": "x", "depends_on": ["b"]},
        "b": {"command": "x", "depends_on": ["c"]},
        "c": {"command": "x", "depends_on": ["a"]},
        "db": {"command": "x", "restart": "sometimes"},
        "api": {"command": "x", "depends_on": ["db"]},
        "web": {"command": "x", "depends_on": ["api"]},
        "lost": {"command": "x", "depends_on": ["nosuch"]},
        "fine": {"command": "x"}}})
    assert list(config.programs) == ["fine"]
    assert config.problems == [
        'program db: restart must be "always", "on-failure" or "never", not "sometimes"',
        "program api: depends_on names db, which is left out",
        'program lost: depends_on names unknown program "nosuch"',
        "program web: depends_on names api, which is left out",
        "programs a, b, c: depends_on makes a cycle: a -> b -> c -> a",
        "program front: depends_on names b, which is left out"]


def test_a_two_program_cycle_is_named_as_the_user_reads_it(tmp_path):
    config = read_proc_config({"state_dir": str(tmp_path), "programs": {
        "a": {"command": "x", "depends_on": ["b"]}, "b": {"command": "x", "depends_on": ["a"]}}})
    assert (config.programs, config.problems) == (
        {}, ["programs a, b: depends_on makes a cycle: a -> b -> a"])


def test_a_template_depending_on_a_missing_program_is_left_out(tmp_path):
    config = read_proc_config({"state_dir": str(tmp_path), "templates": {
        "t": {"command": "x", "depends_on": ["db"]}, "u": {"command": "x"}}})
    assert list(config.templates) == ["u"]
    assert config.problems == ['template t: depends_on names unknown program "db"']


def spec(name, *depends_on):
    return ProgramSpec(name=name, command=("x",), depends_on=depends_on)


def test_dependency_levels_start_dependencies_first_keeping_config_order():
    specs = {name: spec(name, *deps) for name, deps in [
        ("web", ("api", "cache")), ("cache", ()), ("worker", ("db",)), ("api", ("db", "elsewhere")),
        ("db", ())]}
    assert dependency_levels(specs) == [["cache", "db"], ["worker", "api"], ["web"]]
    assert dependency_levels({}) == []


def test_dependency_levels_refuse_a_cycle():
    specs = {"x": spec("x", "y"), "y": spec("y", "x"), "z": spec("z")}
    with pytest.raises(SpecError, match=r"^programs x, y: depends_on makes a cycle: x -> y -> x$"):
        dependency_levels(specs)


def test_proc_with_nothing_to_run_is_idle_and_touches_no_disk():
    config = read_proc_config({"log_dir": "/somewhere", "orphans": "adopt"})
    assert (config.state_dir, config.log_dir, config.programs, config.problems) == (None, None, {}, [])
    assert config.orphans == "adopt"


@pytest.mark.parametrize("options", [
    {"programs": {"a": {"command": "x"}}}, {"templates": {"t": {"command": "x"}}},
    {"programs": {"broken": {}}}])
def test_proc_with_something_to_run_has_a_state_dir_by_the_xdg_rule(monkeypatch, options):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "/xdg/state")
    config = read_proc_config(options)
    assert (config.state_dir, config.log_dir) == ("/xdg/state/smanager", "/xdg/state/smanager/logs")


def test_the_default_state_dir_for_root_and_without_xdg(monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", "/home/pat")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert read_proc_config({"programs_dir": "/etc/none"}).state_dir == "/home/pat/.local/state/smanager"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert read_proc_config({"programs_dir": "/etc/none"}).state_dir == "/var/lib/smanager"


def test_systemds_state_directory_comes_first_and_only_its_first_absolute_entry(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/smanager-a:/var/lib/other")
    assert read_proc_config({"programs_dir": "/etc/none"}).state_dir == "/var/lib/smanager-a"
    monkeypatch.setenv("STATE_DIRECTORY", "relative")
    assert read_proc_config({"programs_dir": "/etc/none"}).state_dir == "/var/lib/smanager"


def test_state_and_log_dirs_expand_the_home_directory_and_programs_inherit_the_log_dir(monkeypatch):
    monkeypatch.setenv("HOME", "/home/pat")
    config = read_proc_config({"state_dir": "~/proc", "programs": {"a": {"command": "x"}}})
    assert (config.state_dir, config.log_dir) == ("/home/pat/proc", "/home/pat/proc/logs")
    assert config.programs["a"].log_dir == "/home/pat/proc/logs"
    config = read_proc_config({"state_dir": "~/proc", "log_dir": "~/logs"})
    assert (config.state_dir, config.log_dir, config.max_sessions) == ("/home/pat/proc", "/home/pat/logs", 100)


@pytest.mark.parametrize("options, error", [
    ({"orphans": "keep"}, 'proc: orphans must be "kill" or "adopt", not "keep"'),
    ({"programz": {}}, 'proc: unknown key "programz" (did you mean "programs"?)'),
    ({"max_sessions": -1}, "proc: max_sessions must be at least 0, not -1"),
    ({"programs": ["a"]}, 'proc: programs must be a table, not ["a"]'),
    ({"state_dir": "relative"}, 'proc: state_dir must be an absolute path, not "relative"'),
    ({"defaults": {"restrat": "always"}}, 'proc: defaults: unknown key "restrat" (did you mean "restart"?)'),
])
def test_a_bad_service_setting_raises_one_line(options, error):
    with pytest.raises(SpecError) as raised:
        read_proc_config(options)
    assert str(raised.value) == error
