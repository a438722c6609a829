"""What the scripts service shows: output chunks, a run's ending, scripts and runs.  Pure.

Each view is a Shown built from one set of fields: the value for JSON mode, the
text for people, so the two cannot disagree.

- A chunk of output lines: JSON, a list of {"at", "stream", "text"} (stream
  "out", "err" or "sys": smanager's own); text, stdout lines as written,
  stderr lines after "stderr: ", smanager's own as they are ("[...]"); blank
  lines are kept.
- A run's ending (``ending``): the result in JSON; in text, one line of how it
  ended (``exit status 0``, ``killed by SIGTERM``, ``timed out after 300 s``,
  or why it never ran), ``output truncated`` if so, then ``return KEY=VALUE``
  per return value.
"""

import difflib

from ..wire.errors import shown
from ..wire.protocol import Preformatted, Shown
from .report import line_fields, signal_name, span, when
from .runoutput import RunLine

TABLE_GAP = "  "


def chunk(lines):
    """Output lines (RunLines) as one chunk."""
    return Shown([line_fields(line) for line in lines],
                 Preformatted("".join(("stderr: " + line.text if line.stream == "err"
                                       else line.text) + "\n" for line in lines)))


def recorded_lines(result):
    """A finished run's kept output as RunLines (no time): stdout, then stderr."""
    return ([RunLine(None, "out", text) for text in result.get("stdout", [])]
            + [RunLine(None, "err", text) for text in result.get("stderr", [])])


def ending(result):
    return Shown(result, "\n".join(ending_lines(result)))


def ending_lines(result):
    if result.get("error"):
        lines = [result["error"]]
    elif result.get("timed_out_after") is not None:
        lines = [f"timed out after {result['timed_out_after']:g} s"]
    elif result["retcode"] is not None and result["retcode"] < 0:
        name = signal_name(-result["retcode"])
        lines = [f"killed by {name}" if name.startswith("SIG") else f"killed by signal {name}"]
    else:
        lines = [f"exit status {result['retcode']}"]
    if result.get("truncated"):
        lines.append("output truncated")
    return lines + [f"return {key}={value}" for key, value in result["return_values"].items()]


def scripts_table(scripts, problems, idle_text):
    """``scripts list``: metadata in JSON; NAME DESCRIPTION TAGS, then the unusable ones."""
    if idle_text:
        return Shown([], idle_text)
    rows = [[script.name, script.description or "-", ",".join(script.tags) or "-"]
            for script in scripts]
    lines = aligned([["NAME", "DESCRIPTION", "TAGS"]] + rows) if rows else ["no scripts"]
    lines += [f"unusable: {name}: {why}" for name, why in sorted(problems.items())]
    return Shown([script.metadata() for script in scripts], "\n".join(lines))


def script_details(script):
    """``scripts show``: its metadata, and key: value lines."""
    lines = [f"name: {script.name}", f"file: {script.path}"]
    if script.description:
        lines.append(f"description: {script.description}")
    for param in script.params:
        attributes = (["required"] if param.required else []) \
            + ([f"default={param.default}"] if param.default is not None else []) \
            + (["secret"] if script.is_secret(param.name) else []) \
            + ([f"pattern={param.pattern.pattern}"] if param.pattern else [])
        lines.append(f"param {param.name}: {param.description or '-'}"
                     + (f" ({', '.join(attributes)})" if attributes else ""))
    if script.tags:
        lines.append(f"tags: {', '.join(script.tags)}")
    lines += [f"output: {script.output}", f"lock: {script.lock}",
              f"timeout: {script.timeout:g} s", f"level: {script.level}"]
    return Shown(script.metadata(), "\n".join(lines))


def runs_table(rows):
    """``scripts runs``: the history rows in JSON; ID SCRIPT USER STARTED DURATION STATUS."""
    if not rows:
        return Shown([], "no runs")
    cells = [["ID", "SCRIPT", "USER", "STARTED", "DURATION", "STATUS"]]
    for row in rows:
        status = row["status"] + (" (truncated)" if row["truncated"] else "")
        cells.append([str(row["id"]), row["script"], row["user"] or "-", when(row["started"]),
                      _duration(row["duration"]), status])
    return Shown(rows, "\n".join(aligned(cells)))


def run_header(row):
    """One line about a run: `run 12 echo by alice: ok, 0.1 s, started 2026-12-07 03:12:09`."""
    params = " ".join(f"{key}={value}" for key, value in row["params"].items())
    took = "" if row["duration"] is None else f", {_duration(row['duration'])}"
    return (f"run {row['id']} {row['script']}{' ' + params if params else ''} by "
            f"{row['user'] or '-'}: {row['status']}{took}, started {when(row['started'])}")


def run_log(row, lines=None):
    """``scripts log``: a live run's row with its ``output`` so far (LINES), or a
    finished run's row with its ``result``; text, a header line then the output."""
    if lines is not None:
        text = chunk(lines).text if lines else ""
        return Shown({**row, "output": [line_fields(line) for line in lines]},
                     run_header(row) + "\n" + text)
    result = row["result"]
    if result is None:
        return Shown(row, run_header(row) + "\n(its output was not kept)")
    body = chunk(recorded_lines(result)).text
    return Shown(row, run_header(row) + "\n" + body + "\n".join(ending_lines(result)))


def _duration(seconds):
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else span(seconds)


def aligned(cells):
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]) - 1)]
    return [TABLE_GAP.join([cell.ljust(width) for cell, width in zip(line, widths)]
                           + [line[-1]]).rstrip() for line in cells]


def no_such_script(name, scripts, problems):
    """Why NAME cannot run: unusable (and why), or unknown (with close names)."""
    if name in problems:
        return f"script {name} cannot be used: {problems[name]}"
    close = difflib.get_close_matches(name, list(scripts), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else "; try 'scripts list'"
    return f"no script named {shown(name)}{hint}"
