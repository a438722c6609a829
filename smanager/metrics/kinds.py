"""Collector kinds by name, and making a collector from its table.

Rules:

1. The kinds are the bundled ones (system.py's /proc readers, probes.py's
   scrapers and checks, external.py's exec and textfile, and ``programs``
   below), then those of collectors_dir: every Collector subclass defined in
   one of its ``*.py`` files (not starting with ``_``), by its ``name`` or its
   class name in lower case.  A file that fails to import is a problem
   reported (logged, and shown by ``monitor list``), never a reason not to start;
   a kind of collectors_dir may not take a bundled kind's name.
2. ``make(kinds, name, table)``: the collector NAME of kind ``table["collector"]``
   [NAME], its ``interval`` and ``timeout`` from the table, and the rest of the
   table as its options (the kind checks them: a ValueError, one line, says
   what is wrong).
3. ``programs`` reads proc's programs (through ``sibling("proc")``): per
   program, the CPU (percent of one core) and memory (RSS, bytes) of its whole
   process group, and its process count.  Without proc, or with nothing running,
   it collects nothing, which is not an error.
"""

import asyncio
import importlib.util
import inspect
import logging
import os
import sys
from pathlib import Path

from smanager.collector import Collector
from smanager.supervise.checks import SpecError

from . import external, probes, procfs, system

log = logging.getLogger("smanager.monitor")
COMMON = ("collector", "interval", "timeout")


class Programs(Collector):
    """CPU (% of a core), memory (RSS) and processes of each of proc's programs"""

    name = "programs"
    # cpu_percent is handed on as CPU seconds x 100, a total: its rate is percent.
    counters = frozenset({"cpu_percent"})

    def __init__(self, options=None, *, name=None, groups=lambda: {}):
        if options:
            raise ValueError(f"programs takes no options, not {sorted(options)[0]}")
        super().__init__(name=name)
        self.groups = groups  # () -> {program: process group id}, read on the loop

    async def collect(self):
        groups = self.groups()  # on the loop: proc's programs change there
        return await asyncio.to_thread(_group_stats, groups) if groups else {}


def _group_stats(groups):
    """{program.metric: value} summed over each group's processes (one pass over /proc)."""
    wanted = {pgid: program for program, pgid in groups.items()}
    totals = {program: [0.0, 0.0, 0] for program in groups}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read().decode("ascii", "replace")
            pgid = int(stat[stat.rfind(")") + 2:].split()[2])
            if pgid not in wanted:
                continue
            stats = procfs.process_stats(int(entry.name))
        except (OSError, ValueError, IndexError, procfs.NotAvailable):
            continue  # gone meanwhile
        total = totals[wanted[pgid]]
        total[0] += stats["cpu_seconds"] * 100
        total[1] += stats["rss_bytes"]
        total[2] += 1
    values = {}
    for program, (cpu, rss, count) in totals.items():
        if count:
            values.update({f"{program}.cpu_percent": cpu, f"{program}.rss_bytes": rss,
                           f"{program}.processes": count})
    return values


def bundled():
    return {**system.BUNDLED, **probes.KINDS, **external.KINDS, Programs.name: Programs}


def load_kinds(directory):
    """(kinds, problems): bundled kinds and directory's (rule 1)."""
    kinds, problems = bundled(), []
    if directory is None:
        return kinds, problems
    for path in sorted(Path(directory).glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            found = _collectors_in(path)
        except Exception as exc:  # noqa: BLE001 - an admin's broken file: reported
            log.error("monitor: cannot load collectors from %s", path, exc_info=exc)
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        for cls in found:
            kind = cls.name or cls.__name__.lower()
            if kind in bundled():
                problems.append(f"{path.name}: {kind} is a bundled collector's name")
            else:
                kinds[kind] = cls
    return kinds, problems


def _collectors_in(path):
    name = f"smanager_collectors_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses need it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return [value for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, Collector) and value is not Collector
            and value.__module__ == name and not value.__name__.startswith("_")]


def make(kinds, name, table, programs=None):
    """The collector NAME from its TABLE (rule 2); SpecError, one line."""
    kind = table.get("collector", name)
    cls = kinds.get(kind)
    if cls is None:
        raise SpecError(f"collector {name}: no collector kind {kind!r} "
                        f"(there are: {', '.join(sorted(kinds))})")
    options = {key: value for key, value in table.items() if key not in COMMON}
    try:
        collector = cls(options, name=name, groups=programs) if cls is Programs \
            else cls(options, name=name)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"collector {name} ({kind}): {exc}".splitlines()[0]) from None
    for key in ("interval", "timeout"):
        if key in table:
            setattr(collector, key, float(table[key]))
    return collector
