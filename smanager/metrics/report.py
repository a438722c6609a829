"""What people and JSON mode see of the monitor: each answer a Shown(value, text).

The value is plain data (numbers, None for "none", wall-clock seconds); the text
is aligned columns with ages and durations short (45s, 12m03s), values as
spark.number_text writes them, and "-" for nothing.
"""

import time

from smanager.supervise.report import span
from smanager.supervise.scriptreport import aligned
from smanager.wire.protocol import Shown

from .spark import number_text


def value_text(value):
    return "-" if value is None else number_text(value)


def _age(wall, now):
    return "-" if wall is None else span(now - wall)


def collectors(rows, kinds, problems, store_line, export_rows, now):
    """``monitor list``."""
    cells = [["NAME", "KIND", "INTERVAL", "LAST RUN", "TOOK", "RUNS", "SKIPPED", "ERRORS",
              "LAST ERROR"]]
    for row in rows:
        row["kind"] = kinds.get(row["name"], "?")
        took = "-" if row["duration"] is None else f"{row['duration'] * 1000:.0f}ms"
        error = row["last_error"] or "-"
        if row["last_error_at"] is not None:
            error = f"{error} ({_age(row['last_error_at'], now)} ago)"
        cells.append([row["name"], row["kind"], f"{row['interval']:g}s",
                      "running" if row["running"] else _age(row["last_run"], now) + " ago"
                      if row["last_run"] else "-", took, str(row["runs"]), str(row["skipped"]),
                      str(row["errors"]), error])
    lines = aligned(cells) if rows else ["no collectors"]
    lines.append(store_line)
    for export in export_rows:
        lines.append("export " + " ".join(f"{key}={'-' if value is None else value}"
                                          for key, value in export.items()))
    lines += [f"problem: {problem}" for problem in problems]
    return Shown({"collectors": rows, "store": store_line, "exports": export_rows,
                  "problems": list(problems)}, "\n".join(lines))


def last(rows, now):
    """``monitor last``: rows are (name, value, stamp, stale)."""
    values = [{"name": name, "value": value, "at": stamp, "age": now - stamp, "stale": stale}
              for name, value, stamp, stale in rows]
    if not rows:
        return Shown(values, "no metrics match")
    cells = [["NAME", "VALUE", "AGE"]] + [
        [name, value_text(value), span(now - stamp) + (" STALE" if stale else "")]
        for name, value, stamp, stale in rows]
    return Shown(values, "\n".join(aligned(cells)))


def series(name, rows, tier, step, agg):
    """``monitor get``: rows are (bucket start, value)."""
    value = {"name": name, "tier": tier, "step": step, "agg": agg,
             "points": [[stamp, point] for stamp, point in rows]}
    if not rows:
        return Shown(value, f"{name}: no samples in that time")
    lines = [f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stamp))}  {value_text(point)}"
             for stamp, point in rows]
    return Shown(value, "\n".join(lines))


def alerts(rows, now):
    """``monitor alerts`` and ``monitor alert list``."""
    if not rows:
        return Shown(rows, "no alerts (monitor alert add NAME > 90)")
    cells = [["ID", "STATE", "SINCE", "VALUE", "RULE"]]
    for row in rows:
        rule = row["rule"] + (" (config)" if row["configured"] else "")
        cells.append([str(row["id"]), row["state"], _age(row["since"], now),
                      value_text(row["value"]), rule])
    return Shown(rows, "\n".join(aligned(cells)))


def notice_text(event):
    """One line of ``monitor subscribe``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event["at"]))
    return f"{stamp} alert {event['alert']}: {event['message']}"
