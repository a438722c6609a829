"""The tables of the bundled proc, scripts and monitor, checked by the readers
those services use at start, without starting them (check.py's rule 2).

Rules:

- Each function takes a ``[service.NAME]`` table (paths already absolute, as
  read_file leaves them) and returns its problems, one line each, in the
  service's own words; an empty list when the service would start with it.
- One mistake does not hide the next: the keys are read one at a time (and
  monitor's collectors and alerts one by one); what depends on other keys is
  read over those that passed (proc's programs over its defaults, scripts'
  settings over its dir).
- Nothing is written: no state directory, database or log made, no
  collector run, no port bound.  Files are only read: programs_dir's NAME.toml,
  the scripts in each dir, collectors_dir's *.py (imported, as the service does).
"""

import os

from ..metrics import kinds as collector_kinds
from ..metrics.settings import read_settings as read_monitor_settings
from ..supervise.checks import SpecError
from ..supervise.config_read import read_proc_config
from ..supervise.jojo import scan
from ..supervise.scriptrun import reserved_problem
from ..supervise.scriptruns import read_settings as read_scripts_settings


def _pieces(table, split=()):
    """{key: value} for each key of TABLE; the tables and lists named in SPLIT
    a member at a time, so that one mistake does not hide the next."""
    for key, value in table.items():
        if key in split and isinstance(value, dict):
            yield from ({key: {name: item}} for name, item in value.items())
        elif key in split and isinstance(value, list):
            yield from ({key: [item]} for item in value)
        else:
            yield {key: value}


def _each(read, pieces, context=None):
    """(problems, the pieces READ accepted, merged), each piece read over CONTEXT."""
    problems, good = [], {}
    for piece in pieces:
        try:
            read({**(context or {}), **piece})
        except SpecError as exc:
            problems.append(str(exc))
        else:
            for key, value in piece.items():  # a member of a split table or list joins the rest
                if isinstance(value, dict):
                    good[key] = {**good.get(key, {}), **value}
                elif isinstance(value, list):
                    good[key] = good.get(key, []) + value
                else:
                    good[key] = value
    return problems, good


def proc_problems(table):
    """[service.proc]: its own keys one at a time, then its programs, templates and
    programs_dir together (they depend on each other), each one left out a line."""
    body = ("programs", "templates", "programs_dir")
    problems, good = _each(read_proc_config, _pieces({k: v for k, v in table.items()
                                                      if k not in body}))
    try:
        proc = read_proc_config({**good, **{key: table[key] for key in body if key in table}})
    except SpecError as exc:
        return problems + [str(exc)]
    return problems + proc.problems


def scripts_problems(table):
    """[service.scripts]: dir, then each other key over it (state_dir counts only
    with a dir), then each dir and the scripts in it, as the service's start finds them."""
    problems, context = _each(read_scripts_settings, [{"dir": table.get("dir", [])}])
    more, _ = _each(read_scripts_settings, _pieces({k: v for k, v in table.items()
                                                    if k != "dir"}), context)
    dirs = read_scripts_settings(context).dirs
    problems += more + [f"scripts: dir {path} is not a directory" for path in dirs
                        if not os.path.isdir(path)]
    scripts, unusable = scan([path for path in dirs if os.path.isdir(path)])
    unusable.update((name, reserved_problem(script)) for name, script in scripts.items()
                    if reserved_problem(script))
    return problems + [f"scripts: {name} cannot be used: {why}" for name, why in unusable.items()]


def monitor_problems(table):
    """[service.monitor]: each key, collector and alert on its own, then each
    collector made by its kind (which checks its options) from collectors_dir's kinds."""
    problems, good = _each(read_monitor_settings, _pieces(table, ("collectors", "alerts")))
    directory = read_monitor_settings({"collectors_dir": good["collectors_dir"]}).collectors_dir \
        if "collectors_dir" in good else None
    if directory is not None and not os.path.isdir(directory):
        problems.append(f"[service.monitor]: collectors_dir {directory} is not a directory")
    kinds, kind_problems = collector_kinds.load_kinds(directory)
    problems += [f"[service.monitor]: collectors_dir: {problem}" for problem in kind_problems]
    for name, options in good.get("collectors", {}).items():
        try:
            collector_kinds.make(kinds, name, options)
        except SpecError as exc:
            problems.append(str(exc))
    return problems


READERS = {"proc": proc_problems, "scripts": scripts_problems, "monitor": monitor_problems}
