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
"""

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, anchored_table, read_file
from .spec import (
    KEYS,
    CheckedTable,
    ProgramSpec,
    SpecError,
    check_keys,
    check_name,
    parse_program,
    shown,
)
from .templates import Template, parse_template

SERVICE_KEYS = frozenset({"programs", "templates", "programs_dir", "state_dir", "log_dir",
                          "orphans", "max_sessions", "defaults"})
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
    broken: set[str] = field(default_factory=set)  # defined, but left out for a mistake


def default_state_dir() -> str:
    """smanager's own state directory: systemd's $STATE_DIRECTORY when the unit
    sets StateDirectory= (its first entry), else /var/lib/smanager as root, else
    $XDG_STATE_HOME/smanager (~/.local/state/smanager)."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if os.path.isabs(given):
        return given
    if os.geteuid() == 0:
        return "/var/lib/smanager"
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative one is ignored
        base = os.path.expanduser("~/.local/state")
    return os.path.join(base, "smanager")


def read_current(options: Mapping, config_file: str | None = None) -> "ProcConfig":
    """The configuration as it is now: the [service.proc] table of the file
    the server was started with, when there is one (so ``proc update`` and a
    restart of proc follow edits), else ``options``."""
    if config_file:
        try:
            tables = read_file(config_file).get("service", {})
        except ConfigError as exc:
            raise SpecError(str(exc)) from None
        options = tables.get("proc", {}) if isinstance(tables, Mapping) else None
        if not isinstance(options, Mapping):
            raise SpecError(f"{config_file}: [service.proc] must be a table")
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
    named = set(programs)  # every program someone defined, broken or not
    if programs_dir:
        for name, path, table in _program_files(programs_dir, config.problems, named):
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
    config.broken = named - set(config.programs)
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


def _program_files(directory: str, problems: list[str],
                   named: set[str]) -> Iterator[tuple[str, Path, dict]]:
    """Each readable programs_dir/NAME.toml in name order; the rest to PROBLEMS;
    every NAME to NAMED."""
    folder = Path(directory)
    if not folder.is_dir():
        problems.append(f"proc: programs_dir {directory} is not a directory")
        return
    for path in sorted(folder.glob("*.toml"), key=lambda path: path.name):
        name = path.name.removesuffix(".toml")
        try:
            check_name(f"proc: programs_dir: {path.name}: program", name)
            named.add(name)
            with path.open("rb") as handle:
                table = tomllib.load(handle)
        except SpecError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"program {name}: cannot read {path}: {exc.strerror}")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
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
