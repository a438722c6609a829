"""The C load generator of ../shared/perf, built once and run like bench/loadgen.py.

Rules:
1. ``binary()`` is the built ``loadgen`` (``$WORK/loadgen``, where
   ../shared/perf/compare.sh builds it: ``$WORK`` defaults to
   ``$TMPDIR/smanager-perf``), built with the harness's own build.sh when it
   is missing or older than loadgen.c.  None when that cannot be done (no
   harness, no compiler): the caller then uses bench/loadgen.py, and
   ``why_not()`` says why in one line.
2. ``argv()`` asks for the same load as bench/loadgen.py: banner read, the
   command in a sliding window of ``depth`` per connection, plain TCP, text
   replies ending in a separator line.  It cannot send a setup line (``mode
   json``) or speak TLS.
3. ``result()`` turns its JSON line into bench/loadgen.py's keys.  It does not
   read what replies say; ``bytes_per_reply`` is the check (54 for ``hi``).
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent.parent / "shared" / "perf"
WORK = Path(os.environ.get("WORK") or Path(tempfile.gettempdir()) / "smanager-perf")
_built = {}  # "binary" -> Path or None, "why" -> str: decided once per process


def binary():
    if "binary" not in _built:
        _built["binary"], _built["why"] = _build()
    return _built["binary"]


def why_not():
    binary()
    return _built["why"]


def _build():
    source, target = HARNESS / "loadgen.c", WORK / "loadgen"
    if not source.is_file():
        return None, f"no C load generator: {source} is missing"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target, None
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        return None, "no C compiler (gcc) to build ../shared/perf/loadgen.c"
    WORK.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(HARNESS / "build.sh")], env={**os.environ, "OUT_BIN": str(target)},
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not target.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"building the C load generator failed: {last}"
    return target, None


def argv(port, conns, depth, command, seconds, warmup):
    return [str(binary()), "-H", "127.0.0.1", "-P", str(port), "-c", str(conns),
            "-p", str(depth), "-d", str(seconds), "-w", str(warmup), "-r", command, "-b"]


def result(line, command):
    """Its output line -> bench/loadgen.py's keys (latencies in ms)."""
    raw = json.loads(line)
    ms = lambda us: round(us / 1000, 3)
    return {"generator": "c", "conns": raw["conns"], "depth": raw["pipeline"],
            "command": command, "requests": raw["requests"], "seconds": raw["seconds"],
            "throughput": raw["rps"], "p50_ms": ms(raw["p50_us"]), "p99_ms": ms(raw["p99_us"]),
            "max_ms": ms(raw["max_us"]), "cpu_percent": round(100 * raw["client_cpu"], 1),
            "bytes_per_reply": raw["bytes_per_resp"],
            # it counts a connection closed (or a reply nobody asked for) as an error
            "closed_by_server": raw["errors"], "error_replies": 0}
