"""A program's settings, checked: a TOML table in, a frozen ProgramSpec out.

Rules:
- parse_program() reads one [service.proc.programs.NAME] table laid over the
  service's defaults (a key the program sets replaces the default's whole
  value; tables such as env and backoff are not merged).
- Every mistake is a SpecError whose message is one line naming the program
  and the key: a wrong type, a value out of range, an unknown key (with the
  nearest known one suggested).  Booleans are never numbers.
- Nothing is read from disk: cwd, env_file and log_dir are only checked to be
  absolute paths (~ expanded); env_file is read by whoever starts the program.
- A command string is split with shlex, never given to a shell unless
  shell = true, and then it is ["/bin/sh", "-c", string].
- $PORT and ${PORT} stay in the spec; expanded() replaces them at each start in
  command items, env values and the ready target, and exports PORT.
- A running program must restart to apply a new spec exactly when any field
  differs.
"""

import re
import signal
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .checks import (
    CheckedTable,
    SpecError,
    check_keys,
    check_name,
    shown,
    split_command,
)

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
RESTARTS = ("always", "on-failure", "never")
READY_FORMS = '"start_secs", "tcp:PORT", "tcp:HOST:PORT", "cmd:PROGRAM ARGS" or "http://HOST:PORT/PATH"'
KEYS = frozenset({
    "command", "shell", "cwd", "env", "env_file", "user", "group", "umask", "autostart",
    "restart", "ok_exit_codes", "start_secs", "backoff", "give_up", "ready", "ready_interval",
    "ready_timeout", "depends_on", "port", "stop_signal", "stop_timeout", "reload_signal",
    "log_dir", "log_max_bytes", "log_backups", "log_lines"})


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0  # seconds before the first restart...
    factor: float = 2.0  # ...multiplied by this after each failed start...
    max: float = 60.0  # ...up to this
    jitter: float = 0.1  # a delay varies by up to this fraction either way
    reset_after: float = 60.0  # running this long forgets the failures


@dataclass(frozen=True)
class GiveUp:
    restarts: int = 5  # this many restarts...
    within: float = 60.0  # ...in this many seconds: FATAL


@dataclass(frozen=True)
class Ready:
    kind: str = "start_secs"  # "start_secs", "tcp", "cmd" or "http"
    target: str = ""  # tcp: "PORT" or "HOST:PORT"; cmd: a command line; http: the URL
    interval: float = 1.0
    timeout: float = 30.0


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    command: tuple[str, ...]
    shell: bool = False
    cwd: str | None = None  # None: "/"
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs
    env_file: str | None = None
    user: str | None = None
    group: str | None = None
    umask: int | None = None
    autostart: bool = True
    restart: str = "on-failure"
    ok_exit_codes: frozenset[int] = frozenset({0})
    start_secs: float = 1.0
    backoff: Backoff = Backoff()
    give_up: GiveUp | None = GiveUp()  # None: never give up
    ready: Ready = Ready()
    depends_on: tuple[str, ...] = ()
    port: int | str | None = None  # None, a number, or "auto"
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 10.0
    reload_signal: signal.Signals = signal.SIGHUP
    log_dir: str | None = None
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    log_lines: int = 1000
    template: str | None = None  # a session: the template it came from...
    params: tuple[tuple[str, str], ...] = ()  # ...and the values it was given

    def expanded(self, port: int | None) -> tuple[tuple[str, ...], dict[str, str], Ready]:
        """The argv, the configured env (PORT added) and the ready check for a
        start on PORT: $PORT and ${PORT} replaced by it."""
        values = {} if port is None else {"PORT": str(port)}
        argv = tuple(substitute(item, values) for item in self.command)
        env = {**values, **{name: substitute(value, values) for name, value in self.env}}
        return argv, env, replace(self.ready, target=substitute(self.ready.target, values))

    def differs_from(self, other: "ProgramSpec") -> bool:
        """Whether a program running with this spec must restart to apply OTHER."""
        return self != other


def substitute(text: str, values: Mapping[str, str]) -> str:
    """TEXT with $NAME and ${NAME} replaced for each NAME in VALUES, in one pass
    (a value is never substituted into again); other $ text stays as it is."""
    def one(match):
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))
    return _VARIABLE.sub(one, text)


def parse_program(name: str, table: Mapping, defaults: Mapping | None = None, *,
                  log_dir: str | None = None) -> ProgramSpec:
    """The spec of program NAME from its TABLE over the service's DEFAULTS;
    LOG_DIR is the service's, for a program that names none."""
    check_name("program", name)
    return parse(f"program {name}", name, table, defaults, log_dir)


def parse(where: str, name: str, table, defaults: Mapping | None, log_dir: str | None,
          template: str | None = None, params: tuple = ()) -> ProgramSpec:
    """parse_program() for a program or a session; WHERE begins each message."""
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: must be a table of settings, not {shown(table)}")
    values = CheckedTable(where, {**(defaults or {}), **table})
    check_keys(where, values.table, KEYS)
    shell = values.flag("shell", False)
    port = values.get("port")
    if port != "auto" and (isinstance(port, bool) or not isinstance(port, int | None)
                           or port is not None and not 1 <= port <= 65535):
        values.fail("port", f'must be "auto" or a number 1-65535, not {shown(port)}')
    depends_on = values.get("depends_on", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        values.fail("depends_on", f"must be a list of program names, not {shown(depends_on)}")
    for other in depends_on:
        check_name(f"{where}: depends_on", other)
    if name in depends_on:
        values.fail("depends_on", "names the program itself")
    give_up = values.get("give_up", {})
    if not isinstance(give_up, Mapping | bool):
        values.fail("give_up", f"must be a table {{restarts, within}} or false, not {shown(give_up)}")
    return ProgramSpec(
        name=name, command=_command(values, shell), shell=shell, cwd=values.path("cwd"),
        env=_env(values), env_file=values.path("env_file"), user=values.owner("user"),
        group=values.owner("group"), umask=_umask(values),
        autostart=values.flag("autostart", True),
        restart=values.choice("restart", "on-failure", RESTARTS),
        ok_exit_codes=_exit_codes(values), start_secs=values.number("start_secs", 1.0, least=0),
        backoff=_backoff(values), give_up=_give_up(where, give_up), ready=_ready(values, port),
        depends_on=tuple(dict.fromkeys(depends_on)), port=port,
        stop_signal=values.signal("stop_signal", "TERM"),
        stop_timeout=values.number("stop_timeout", 10.0, above=0),
        reload_signal=values.signal("reload_signal", "HUP"),
        log_dir=values.path("log_dir") or log_dir,
        log_max_bytes=values.integer("log_max_bytes", 10 * 1024 * 1024, 1),
        log_backups=values.integer("log_backups", 5, 0), log_lines=values.integer("log_lines", 1000, 0),
        template=template, params=params)


def _command(values: CheckedTable, shell: bool) -> tuple[str, ...]:
    command = values.get("command")
    if command is None:
        values.fail("command", "is required")
    if shell:
        if not isinstance(command, str) or not command.strip():
            values.fail("command", "must be a string when shell = true")
        argv = ["/bin/sh", "-c", command]
    elif isinstance(command, str):
        argv = split_command(values.where, command)
    elif isinstance(command, list) and all(isinstance(item, str) for item in command):
        argv = command
    else:
        values.fail("command", f"must be a list of strings or a string, not {shown(command)}")
    if not argv or not argv[0]:
        values.fail("command", "must name a program")
    if any("\0" in item for item in argv):
        values.fail("command", "must not contain a NUL character")
    return tuple(argv)


def _env(values: CheckedTable) -> tuple[tuple[str, str], ...]:
    env = values.get("env", {})
    if not isinstance(env, Mapping):
        values.fail("env", f"must be a table of NAME = value, not {shown(env)}")
    pairs = []
    for name, value in env.items():
        if not VARIABLE_NAME.fullmatch(name):
            values.fail("env", f"names {shown(name)}, which is not a variable name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str | int | float) or "\0" in str(value):
            values.fail(f"env.{name}", f"must be a string, number or boolean, not {shown(value)}")
        pairs.append((name, str(value)))
    return tuple(sorted(pairs))


def _umask(values: CheckedTable) -> int | None:
    umask = values.get("umask")
    if umask is None:
        return None
    number = -1
    if isinstance(umask, str) and re.fullmatch(r"(?:0[oO])?[0-7]{1,4}", umask):
        number = int(umask.removeprefix("0o").removeprefix("0O"), 8)
    elif isinstance(umask, int) and not isinstance(umask, bool):
        number = umask
    if not 0 <= number <= 0o777:
        values.fail("umask", f'must be octal like "022", not {shown(umask)}')
    return number


def _exit_codes(values: CheckedTable) -> frozenset[int]:
    codes = values.get("ok_exit_codes", [0])
    if not isinstance(codes, list) or not all(
            isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 255 for code in codes):
        values.fail("ok_exit_codes", f"must be a list of numbers 0-255, not {shown(codes)}")
    return frozenset(codes)


def _backoff(values: CheckedTable) -> Backoff:
    table = values.get("backoff", {})
    if not isinstance(table, Mapping):
        values.fail("backoff", f"must be a table, not {shown(table)}")
    check_keys(values.where, table, {"initial", "factor", "max", "jitter", "reset_after"}, "backoff.")
    given = CheckedTable(values.where, table, "backoff.")
    backoff = Backoff(initial=given.number("initial", 1.0, above=0),
                      factor=given.number("factor", 2.0, least=1),
                      max=given.number("max", 60.0, above=0),
                      jitter=given.number("jitter", 0.1, least=0, most=1),
                      reset_after=given.number("reset_after", 60.0, above=0))
    if backoff.max < backoff.initial:
        given.fail("max", f"must be at least backoff.initial ({shown(backoff.initial)})")
    return backoff


def _give_up(where: str, table: Mapping | bool) -> GiveUp | None:
    if isinstance(table, bool):
        return GiveUp() if table else None
    check_keys(where, table, {"restarts", "within"}, "give_up.")
    given = CheckedTable(where, table, "give_up.")
    return GiveUp(restarts=given.integer("restarts", 5, 1), within=given.number("within", 60.0, above=0))


def _ready(values: CheckedTable, port) -> Ready:
    ready = values.get("ready", "start_secs")
    interval = values.number("ready_interval", 1.0, above=0)
    timeout = values.number("ready_timeout", 30.0, above=0)
    if not isinstance(ready, str):
        values.fail("ready", f"must be {READY_FORMS}, not {shown(ready)}")
    if ready == "start_secs":
        return Ready("start_secs", "", interval, timeout)
    kind, _, target = ready.partition(":")
    if port is None and substitute(ready, {"PORT": ""}) != ready:
        values.fail("ready", "uses $PORT, but port is not set")
    concrete = substitute(target, {"PORT": "1"})  # what a start will check, in shape
    if kind == "tcp":
        host, colon, number = concrete.rpartition(":")
        if not re.fullmatch(r"[0-9]{1,5}", number) or not 1 <= int(number) <= 65535 or (colon and not host):
            values.fail("ready", f'must name a port, as in "tcp:8080" or "tcp:HOST:8080", not {shown(ready)}')
    elif kind == "cmd":
        if not split_command(values.where, target, "ready"):
            values.fail("ready", "must name a program after cmd:")
    elif kind == "http":
        target = ready
        if not _is_http_url(substitute(ready, {"PORT": "1"})):
            values.fail("ready", f"must be a URL like http://HOST:PORT/PATH, not {shown(ready)}")
    else:
        values.fail("ready", f"must be {READY_FORMS}, not {shown(ready)}")
    return Ready(kind, target, interval, timeout)


def _is_http_url(text: str) -> bool:
    url = urllib.parse.urlsplit(text)
    try:
        port = url.port
    except ValueError:  # not a number 0-65535
        return False
    return text.startswith("http://") and bool(url.hostname) and port != 0
