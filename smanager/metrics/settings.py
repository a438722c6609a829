"""The [service.monitor] table, checked, and what `monitor add` and `alert add` keep.

Rules:

1. Keys (each mistake one SpecError line naming the key, the nearest known
   key suggested for a typo):
   state_dir      where metrics.db lives [smanager's state directory];
   defaults       run the bundled cpu, mem, load, disk, net collectors when no
                  table of that name is configured [true];
   flush_every    seconds between the store's commits [5];
   retention      a table: raw [14d], minute [90d], hour [730d];
   collectors_dir a directory of *.py files whose Collector classes become
                  collector kinds (by ``name`` or the class name in lower case);
   collectors     one table per collector NAME: ``collector`` (the kind;
                  default NAME), ``interval``, ``timeout``, and the kind's own
                  options, checked when the collector is made;
   alerts         a list of rules as `monitor alert add` takes them;
   export         handed to exporting.read_export.
2. A duration is seconds (a number) or text like 90s, 30m, 1h, 14d.
3. ``Added`` is STATE_DIR/monitor.json: the collectors `monitor add` made and
   the alerts `monitor alert add` made, rewritten whole and atomically (a temp
   file, fsync, rename) on each change, so a crash leaves the old or the new
   file, never half of one.  A file that cannot be read is moved aside (logged).
"""

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from smanager.supervise.checks import (
    CheckedTable,
    SpecError,
    check_keys,
    check_name,
    shown,
)
from smanager.supervise.config_read import default_state_dir

from .alerts import duration, parse_rule
from .exporting import ExportSettings, read_export
from .store import Retention

log = logging.getLogger("smanager.monitor")
KEYS = {"state_dir", "defaults", "flush_every", "retention", "collectors_dir", "collectors",
        "alerts", "export"}
RETENTION_KEYS = {"raw": "14d", "minute": "90d", "hour": "730d"}
WHERE = "[service.monitor]"


@dataclass(frozen=True)
class Settings:
    state_dir: str
    defaults: bool = True
    flush_every: float = 5.0
    retention: Retention = Retention()
    collectors_dir: str | None = None
    collectors: dict = field(default_factory=dict)  # NAME -> its table
    alerts: tuple = ()  # rule texts
    export: ExportSettings = None


def read_settings(table: Mapping) -> Settings:
    """The [service.monitor] table, checked (rule 1)."""
    if not isinstance(table, Mapping):
        raise SpecError(f"{WHERE} must be a table")
    check_keys(WHERE, table, KEYS)
    checked = CheckedTable(WHERE, table)
    collectors = table.get("collectors", {})
    if not isinstance(collectors, Mapping):
        checked.fail("collectors", "must be a table of tables: [service.monitor.collectors.NAME]")
    for name, options in collectors.items():
        check_collector_table(name, options)
    alerts = table.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(rule, str) for rule in alerts):
        checked.fail("alerts", 'must be a list of rules like "load.load1 > 4 for=3"')
    for rule in alerts:
        try:
            parse_rule(rule.split())
        except ValueError as exc:
            checked.fail("alerts", f"{shown(rule)}: {exc}")
    export = table.get("export", {})
    if not isinstance(export, Mapping):
        checked.fail("export", "must be a table")
    export = read_export(export)
    return Settings(
        state_dir=checked.path("state_dir") or default_state_dir(),
        defaults=checked.flag("defaults", True),
        flush_every=checked.number("flush_every", 5.0, above=0, most=300),
        retention=_retention(table.get("retention", {})),
        collectors_dir=checked.path("collectors_dir"),
        collectors={name: dict(options) for name, options in collectors.items()},
        alerts=tuple(alerts), export=export)


def check_collector_table(name, options):
    """What every collector table needs; the kind checks the rest."""
    check_name(f"{WHERE} collector", name)
    where = f"[service.monitor.collectors.{name}]"
    if not isinstance(options, Mapping):
        raise SpecError(f"{where} must be a table")
    kind = options.get("collector", name)
    if not isinstance(kind, str) or not kind:
        raise SpecError(f"{where}: collector must be a collector kind's name, not {shown(kind)}")
    checked = CheckedTable(where, options)
    for key in ("interval", "timeout"):
        if key in options:
            checked.number(key, None, least=0.1, most=86400)


def _retention(table):
    if not isinstance(table, Mapping):
        raise SpecError(f"{WHERE}: retention must be a table: raw, minute, hour")
    check_keys(f"{WHERE} retention", table, RETENTION_KEYS, "retention.")
    seconds = {}
    for key, default in RETENTION_KEYS.items():
        value = table.get(key, default)
        try:
            seconds[key] = float(value) if isinstance(value, (int, float)) \
                and not isinstance(value, bool) else duration(str(value))
        except ValueError:
            raise SpecError(f"{WHERE}: retention.{key} must be a duration like 14d, "
                            f"not {shown(value)}") from None
    try:
        return Retention(**seconds)
    except ValueError as exc:
        raise SpecError(f"{WHERE}: {exc}") from None


class Added:
    """What was added at run time (rule 3): {"collectors": {NAME: table}, "alerts": [rule]}."""

    def __init__(self, path):
        self.path = path
        self.collectors, self.alerts = {}, []
        try:
            with open(path, encoding="utf-8") as file:
                kept = json.load(file)
            self.collectors = {str(name): dict(options)
                               for name, options in kept.get("collectors", {}).items()}
            self.alerts = [str(rule) for rule in kept.get("alerts", [])]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("monitor: %s cannot be read (%s); moved aside to %s.bad, starting empty",
                      path, exc, path)
            try:
                os.replace(path, path + ".bad")
            except OSError:
                pass

    def save(self):
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump({"collectors": self.collectors, "alerts": self.alerts}, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
