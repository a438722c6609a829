"""The [service.proc] table read whole: its programs, templates and programs_dir.

Rules:
- read_proc_config() raises SpecError only for the service's own keys.  A
  broken program or template is left out and named in ProcConfig.problems, one
  line each; so is every program that depends on an unknown program, on one
  left out, or (through a cycle) on itself.
- programs_dir/NAME.toml holds program NAME's keys at top level.  The files are
  read in name order after the config's own programs, a relative path inside
  one is relative to it, and the config's table wins over a file of the same
  name.  Only these files are read; env_file is read when a program starts.
- Idle: with no programs, templates, programs_dir or state_dir, proc needs no
  disk, and state_dir and log_dir are None.
- A template is a program table plus params.  instantiate() checks the values
  given against their patterns, then substitutes $NAME and ${NAME} in command
  items, env values and cwd, each item whole, never parsed by a shell.  With
  shell = true the values are exported as variables instead: the shell expands
  them and never runs one as code.  A template is tried at load with its
  defaults (a placeholder for a required value), so a wrong key shows then.
"""

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ConfigError, anchored_table, read_file
from .spec import (
    KEYS,
    VARIABLE_NAME,
    CheckedTable,
    ProgramSpec,
    SpecError,
    check_keys,
    check_name,
    parse,
    parse_program,
    shown,
    split_command,
    substitute,
)

SERVICE_KEYS = frozenset({"programs", "templates", "programs_dir", "state_dir", "log_dir",
                          "orphans", "max_sessions", "defaults"})
PLACEHOLDER = "/placeholder"  # a required value in the load-time try: a path fits anywhere


@dataclass(frozen=True)
class Param:
    name: str
    pattern: re.Pattern
    default: str | None  # None: the value is required


@dataclass(frozen=True)
class Template:
    name: str
    params: tuple[Param, ...]
    table: Mapping = field(default_factory=dict)  # program keys over the defaults, command split
    log_dir: str | None = None  # the service's
    depends_on: tuple[str, ...] = ()

    def instantiate(self, session_id: str, values: Mapping[str, str]) -> ProgramSpec:
        """The spec of session SESSION_ID, given these parameter values."""
        where = f"template {self.name}"
        check_name(f"{where}: session", session_id)
        takes = {param.name: param for param in self.params}
        for key in values:
            if key not in takes:
                names = ", ".join(sorted(takes))
                raise SpecError(f"{where}: unknown parameter {shown(key)}; "
                                + (f"it takes: {names}" if names else "it takes none"))
        final = {}
        for param in self.params:
            value = values.get(param.name, param.default)
            if value is None:
                raise SpecError(f"{where}: parameter {param.name} is required")
            if not param.pattern.fullmatch(value):
                raise SpecError(f"{where}: parameter {param.name} must match {param.pattern.pattern}")
            final[param.name] = value
        return self._spec(session_id, final)

    def _spec(self, name: str, values: dict[str, str]) -> ProgramSpec:
        table = dict(self.table)
        shell = table.get("shell") is True
        env = table.get("env", {})
        if isinstance(env, Mapping):  # else parse() says what is wrong with it
            env = {key: substitute(value, values) if isinstance(value, str) else value
                   for key, value in env.items()}
            table["env"] = {**values, **env} if shell else env
        if isinstance(table.get("command"), list):  # a shell's script is a string, left alone
            table["command"] = [substitute(item, values) if isinstance(item, str) else item
                                for item in table["command"]]
        if isinstance(table.get("cwd"), str):
            table["cwd"] = substitute(table["cwd"], values)
        return parse(f"template {self.name}", name, table, None, self.log_dir,
                     template=self.name, params=tuple(sorted(values.items())))


def parse_template(name: str, table: Mapping, defaults: Mapping | None = None, *,
                   log_dir: str | None = None) -> Template:
    """Template NAME from its TABLE over the service's DEFAULTS, tried once."""
    where = f"template {name}"
    check_name("template", name)
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: must be a table of settings, not {shown(table)}")
    merged = {**(defaults or {}), **table}
    params = _params(where, merged.pop("params", {}))
    if isinstance(merged.get("command"), str) and merged.get("shell") is not True:
        merged["command"] = split_command(where, merged["command"])  # substituted item by item
    template = Template(name, params, merged, log_dir)
    tried = template._spec(name, {param.name: PLACEHOLDER if param.default is None else param.default
                                  for param in params})
    return replace(template, depends_on=tried.depends_on)


def _params(where: str, table) -> tuple[Param, ...]:
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: params must be a table of NAME = {{pattern, default}}, "
                        f"not {shown(table)}")
    params = []
    for name, settings in table.items():
        at = f"{where}: param {name}"
        if not VARIABLE_NAME.fullmatch(name) or name == "PORT":
            raise SpecError(f"{where}: param {shown(name)}: a parameter name is letters, digits "
                            "and _, not starting with a digit, and not PORT")
        if not isinstance(settings, Mapping):
            raise SpecError(f"{at}: must be a table {{pattern, default}}, not {shown(settings)}")
        check_keys(at, settings, {"pattern", "default"})
        pattern, default = settings.get("pattern"), settings.get("default")
        if not isinstance(pattern, str):
            raise SpecError(f"{at}: pattern is required: a regular expression the value must match")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise SpecError(f"{at}: pattern is not a valid regex: {exc}") from None
        if default is not None and not isinstance(default, str):
            raise SpecError(f"{at}: default must be a string, not {shown(default)}")
        if default is not None and not compiled.fullmatch(default):
            raise SpecError(f"{at}: default {shown(default)} does not match {pattern}")
        params.append(Param(name, compiled, default))
    return tuple(params)


@dataclass
class ProcConfig:
    programs: dict[str, ProgramSpec]  # in config order: the config's table, then programs_dir
    templates: dict[str, Template]
    problems: list[str]  # one line each, for what was left out
    state_dir: str | None  # None: idle, proc touches no disk
    log_dir: str | None
    orphans: str  # "kill" | "adopt"
    max_sessions: int
    programs_dir: str | None


def default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/smanager/proc"
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative one is ignored
        base = os.path.expanduser("~/.local/state")
    return os.path.join(base, "smanager", "proc")


def read_current(options: Mapping, config_file: str | None = None) -> "ProcConfig":
    """The configuration as it is now: the [service.proc] table of the file
    the server was started with, when there is one (so ``proc update`` and a
    restart of proc follow edits), else ``options``."""
    if config_file:
        try:
            options = read_file(config_file).get("service", {}).get("proc", {})
        except ConfigError as exc:
            raise SpecError(str(exc)) from None
    return read_proc_config(options)


def read_proc_config(options: Mapping) -> ProcConfig:
    """The [service.proc] table, OPTIONS, checked and read with its programs_dir."""
    check_keys("proc", options, SERVICE_KEYS)
    service = CheckedTable("proc", options)
    orphans = service.choice("orphans", "kill", ("kill", "adopt"))
    max_sessions = service.integer("max_sessions", 100, 0)
    defaults, programs, templates = (_table_of_tables(service, key)
                                     for key in ("defaults", "programs", "templates"))
    check_keys("proc: defaults", defaults, KEYS)
    programs_dir, state_dir, log_dir = (service.path(key)
                                        for key in ("programs_dir", "state_dir", "log_dir"))
    if not (programs or templates or programs_dir or state_dir):
        state_dir = log_dir = None
    else:
        state_dir = state_dir or default_state_dir()
        log_dir = log_dir or os.path.join(state_dir, "logs")

    config = ProcConfig({}, {}, [], state_dir, log_dir, orphans, max_sessions, programs_dir)
    tables = [(name, table) for name, table in programs.items()]
    if programs_dir:
        for name, path, table in _program_files(programs_dir, config.problems):
            if name in programs:
                config.problems.append(f"program {name}: defined in the config and in {path}; "
                                       "the config's is used")
            else:
                tables.append((name, anchored_table(path.absolute().parent, table)))
    for name, table in tables:
        try:
            config.programs[name] = parse_program(name, table, defaults, log_dir=log_dir)
        except SpecError as exc:
            config.problems.append(str(exc))
    defined = {name for name, _ in tables}
    _leave_out_unstartable(config.programs, defined, config.problems)
    for name, table in templates.items():
        try:
            template = parse_template(name, table, defaults, log_dir=log_dir)
        except SpecError as exc:
            config.problems.append(str(exc))
            continue
        missing = [other for other in template.depends_on if other not in config.programs]
        if missing:
            config.problems.append(_depends_on_missing(f"template {name}", missing[0], defined))
        else:
            config.templates[name] = template
    return config


def _table_of_tables(service: CheckedTable, key: str) -> Mapping:
    value = service.get(key, {})
    if not isinstance(value, Mapping):
        service.fail(key, f"must be a table, not {shown(value)}")
    return value


def _program_files(directory: str, problems: list[str]) -> Iterator[tuple[str, Path, dict]]:
    """Each readable programs_dir/NAME.toml in name order; the rest to PROBLEMS."""
    folder = Path(directory)
    if not folder.is_dir():
        problems.append(f"proc: programs_dir {directory} is not a directory")
        return
    for path in sorted(folder.glob("*.toml"), key=lambda path: path.name):
        name = path.name.removesuffix(".toml")
        try:
            check_name(f"proc: programs_dir: {path.name}: program", name)
            with path.open("rb") as handle:
                table = tomllib.load(handle)
        except SpecError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"program {name}: cannot read {path}: {exc.strerror}")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"program {name}: {path} is not valid TOML: {exc}")
        else:
            yield name, path, table


def _depends_on_missing(where: str, other: str, defined) -> str:
    if other in defined:
        return f"{where}: depends_on names {other}, which is left out"
    return f"{where}: depends_on names unknown program {shown(other)}"


def _leave_out_unstartable(specs: dict[str, ProgramSpec], defined, problems: list[str]) -> None:
    """Take out of SPECS each program depending on one not there, and each
    dependency cycle, until every one left can be started in some order."""
    while True:
        stranded = {name: next(other for other in spec.depends_on if other not in specs)
                    for name, spec in specs.items()
                    if any(other not in specs for other in spec.depends_on)}
        for name, other in stranded.items():
            problems.append(_depends_on_missing(f"program {name}", other, defined))
            del specs[name]
        if stranded:
            continue  # their dependents next
        _, stuck = _levels(specs)
        if not stuck:
            return
        cycle = _cycle(specs, stuck)
        problems.append(_cycle_line(specs, cycle))
        for name in cycle:
            specs.pop(name, None)


def dependency_levels(specs: Mapping[str, ProgramSpec]) -> list[list[str]]:
    """The start order in levels: level 0 depends on nothing in SPECS, level n
    only on earlier levels; a level keeps the order of SPECS."""
    levels, stuck = _levels(specs)
    if stuck:
        raise SpecError(_cycle_line(specs, _cycle(specs, stuck)))
    return levels


def _levels(specs: Mapping[str, ProgramSpec]) -> tuple[list[list[str]], list[str]]:
    """The levels, and the programs no level reaches (in or behind a cycle)."""
    levels, placed, waiting = [], set(), list(specs)
    while waiting:
        level = [name for name in waiting
                 if all(other in placed or other not in specs for other in specs[name].depends_on)]
        if not level:
            break
        levels.append(level)
        placed.update(level)
        waiting = [name for name in waiting if name not in placed]
    return levels, waiting


def _cycle(specs: Mapping[str, ProgramSpec], stuck: list[str]) -> list[str]:
    """One cycle among STUCK (each of which depends on another of them), from
    its first member in config order and back to it: [a, b, a]."""
    path = [stuck[0]]
    while (following := next(other for other in specs[path[-1]].depends_on
                             if other in stuck)) not in path:
        path.append(following)
    members = path[path.index(following):]
    first = min(range(len(members)), key=lambda i: stuck.index(members[i]))
    members = members[first:] + members[:first]
    return members + members[:1]


def _cycle_line(specs: Mapping[str, ProgramSpec], cycle: list[str]) -> str:
    members = ", ".join(name for name in specs if name in cycle)
    return f"programs {members}: depends_on makes a cycle: {' -> '.join(cycle)}"
