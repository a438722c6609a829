"""What proc shows: rows, tables and lines built from programs.  Pure.

Each view is built twice from one set of fields: a dict for JSON mode (the
command returns it inside a Shown) and text for people, so the two cannot
disagree.  Times: uptime in the largest two units (3d04h, 2h03m, 12m03s, 45s),
wall times as local ISO time to the second.
"""

import asyncio
import shlex
import signal
import time

from ..wire.errors import CommandError
from .policy import State

COLUMNS = ("name", "state", "pid", "uptime", "restarts", "last_exit", "port")


def span(seconds):
    """45s, 12m03s, 2h03m, 3d04h."""
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def when(wall):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) if wall else None


def row(program):
    """The fields of one program's line in ``proc list``.  Uptime is from the
    monotonic clock, so setting the wall clock does not change it."""
    run, policy = program.run, program.policy
    up = run is not None and program.state in (State.RUNNING, State.STOPPING) \
        and policy.started_at is not None
    history = policy.history
    return {"name": program.name, "state": program.state.value,
            "pid": run.pid if run is not None else None,
            "uptime": round(_loop_now() - policy.started_at, 1) if up else None,
            "restarts": program.policy.restarts,
            "last_exit": history[-1].describe() if history else None,
            "port": program.port if run is not None else None}


def table(rows, problems=()):
    """``proc list`` as text: aligned columns, then any configuration problems."""
    if not rows:
        lines = ["no programs configured"]
    else:
        cells = [[c.upper().replace("_", " ") for c in COLUMNS]]
        for item in rows:
            cells.append([_cell(column, item[column]) for column in COLUMNS])
        widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
        lines = ["  ".join([cell.ljust(width) for cell, width in zip(line, widths)]
                           + [line[-1]]).rstrip() for line in cells]
    return "\n".join(lines + [f"config problem: {problem}" for problem in problems])


def _cell(column, value):
    if value is None:
        return "-"
    if column == "uptime":
        return span(value)
    return str(value)


def details(program):
    """``proc status``: the row and everything else one program has."""
    spec, run, policy = program.spec, program.run, program.policy
    fields = row(program)
    fields.update({
        "command": shlex.join(spec.expanded(program.port)[0]),
        "pgid": run.pgid if run is not None else None,
        "started": when(run.started) if run is not None else None,
        "next_start_in": (round(policy.next_start_at - _loop_now(), 1)
                          if program.state is State.BACKOFF and policy.next_start_at else None),
        "waiting_for": program.waiting_for or None,
        "ready": _ready_text(spec.expanded(program.port)[2]),
        "restart": spec.restart,
        "depends_on": list(spec.depends_on),
        "logs": program.output.paths or None,
        "template": spec.template,
        "params": dict(spec.params) or None,
    })
    return fields


def _ready_text(ready):
    """The check as the config writes it: start_secs, tcp:PORT, cmd:..., the URL."""
    if ready.kind in ("start_secs", "http"):
        return ready.target or ready.kind
    return f"{ready.kind}:{ready.target}"


def key_values(fields):
    """A dict as 'key: value' lines, the values people read."""
    lines = []
    for key, value in fields.items():
        if value is None or value == [] or value == {}:
            continue
        if key == "uptime":
            value = span(value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = " ".join(map(str, value))
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def exit_fields(end):
    """One Exit as JSON mode sends it."""
    return {"at": when(end.wall), "uptime": round(end.uptime, 1), "code": end.code,
            "signal": signal_name(end.signal) if end.signal else None, "error": end.error,
            "during": end.during, "outcome": end.outcome, "delay": end.delay,
            "last_line": end.last_line, "text": end.describe()}


def why_text(program, exits):
    if not exits:
        return f"{program.name} has not exited yet ({program.state.value})"
    lines = []
    for item in exits:
        line = f"{item['at']}  {item['text']}"
        if item["last_line"]:
            line += f": {item['last_line']}"
        lines.append(f"{line} -> {item['outcome']}")
    lines.append(f"now: {program.state.value}")
    return "\n".join(lines)


def line_fields(line):
    return {"at": when(line.at), "stream": line.stream, "text": line.text}


def log_line(line):
    stamp = time.strftime("%H:%M:%S", time.localtime(line.at))
    return f"{stamp} {line.stream} {line.text}"


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def parse_signal(text):
    """HUP, SIGHUP, hup or 1 -> the signal; CommandError for anything else."""
    name = text.upper()
    if name.isdigit():
        try:
            return signal.Signals(int(name))
        except ValueError:
            raise CommandError(f"no signal number {text}") from None
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return signal.Signals[name]
    except KeyError:
        raise CommandError(f"no signal named {text!r} (try HUP, TERM, USR1, 15)") from None


def _loop_now():
    return asyncio.get_running_loop().time()
