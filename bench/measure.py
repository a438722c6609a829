"""One load generator run against a server, and a scenario's rounds of them.

Rules:
1. ``measure()`` runs one generator process, pinned to its CPU, and samples the
   server's CPU (``/proc/PID/stat``) and the whole machine's over the
   generator's measured window: at its ``start``/``stop`` lines
   (bench/loadgen.py), or at warm-up and warm-up + duration after its launch
   (the C generator, which prints only its result).
2. The generator is the C one (bench/cloadgen.py) for plain-text loads, and
   bench/loadgen.py when the side asks for it, speaks JSON mode or TLS, or the
   C one cannot be built.  Both sides of a ratio use the same generator, so a
   ratio never compares two generators.
3. A side is a server, or an ``Endpoint``: a server as one kind of client sees
   it (JSON mode, the Python generator).  Anything with ``port`` and
   ``cpu_seconds()`` will do (scripts.py passes its own servers).
4. ``run_scenario()`` measures the two sides R rounds, alternating which goes
   first, and judges the ratio of medians; where a generator neared a full core
   (SATURATED) it judges by the servers' CPU per request instead.  Nothing
   here raises on a missed target: it is a measurement.
"""

import json
import statistics
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import cloadgen
from servers import BENCH, machine_busy_seconds, pinned

SATURATED = 90  # generator CPU% from which its own core, not the server, may be the limit


class Endpoint(NamedTuple):
    """A server seen by one kind of client: JSON mode and/or the Python generator."""

    server: object
    json_mode: bool = False
    generator: str = "c"

    port = property(lambda self: self.server.port)
    tls_ca = property(lambda self: getattr(self.server, "tls_ca", None))

    def cpu_seconds(self):
        return self.server.cpu_seconds()


def generator_for(server):
    """"c" or "python": what measure() will run against this side."""
    wants_c = (getattr(server, "generator", "c") == "c" and not getattr(server, "json_mode", False)
               and getattr(server, "tls_ca", None) is None)
    return "c" if wants_c and cloadgen.binary() is not None else "python"


def _python_argv(server, conns, depth, command, seconds, warmup):
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--port", str(server.port),
            "--conns", str(conns), "--depth", str(depth), "--command", command,
            "--duration", str(seconds), "--warmup", str(warmup), "--sync"]
    if getattr(server, "json_mode", False):  # every JSON reply is one line
        argv += ["--setup", "mode json", "--terminator", "\\n"]
    if getattr(server, "tls_ca", None):
        argv += ["--tls-ca", server.tls_ca]
    return argv


def measure(server, conns, depth, command, seconds, warmup, cpu=None):
    """One generator run (on CPU `cpu`); its figures plus the server's CPU over the window."""
    use_c = generator_for(server) == "c"
    argv = (cloadgen.argv(server.port, conns, depth, command, seconds, warmup) if use_c
            else _python_argv(server, conns, depth, command, seconds, warmup))
    sample = lambda: (time.monotonic(), server.cpu_seconds(), machine_busy_seconds())
    launched = time.monotonic()
    gen = subprocess.Popen(pinned(cpu) + argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           text=True)
    watchdog = threading.Timer(seconds + warmup + 30, gen.kill)  # bounds every read below
    watchdog.start()
    marks, result = {}, None
    try:
        if use_c:  # its window opens `warmup` after its (millisecond) connect
            for mark, at in (("start", warmup), ("stop", warmup + seconds)):
                time.sleep(max(launched + at - time.monotonic(), 0))
                marks[mark] = sample()
        for line in gen.stdout:
            if line.strip() in ("start", "stop"):
                marks[line.strip()] = sample()
            elif line.startswith("{"):
                result = cloadgen.result(line, command) if use_c else json.loads(line)
        gen.wait(10)
    finally:
        watchdog.cancel()
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    if result is None or len(marks) != 2:
        return {"failed": True, "throughput": 0.0}
    (t0, c0, m0), (t1, c1, m1) = marks["start"], marks["stop"]
    wall = max(t1 - t0, 1e-9)
    result["server_cpu_percent"] = round(100 * (c1 - c0) / wall, 1)
    # CPU the server spent per request: its cost, whoever limited the throughput.
    served = result["throughput"] * wall
    result["server_us_per_request"] = round(1e6 * (c1 - c0) / served, 2) if served else None
    # Whatever else kept the machine busy meanwhile (other sessions, the host's steal):
    # a round with much of it is a noisy round.
    other = 100 * (m1 - m0) / wall - result["server_cpu_percent"] - result["cpu_percent"]
    result["other_cpu_percent"] = round(max(other, 0.0), 1)
    return result


def prime(server, seconds, cpu=None):
    """Unmeasured 50x1 load on a fresh server.  For its first seconds under load a
    server runs at a third of its speed (tens of thousands of page faults while
    malloc settles), which a round's warm-up is too short to absorb."""
    if seconds > 0:
        measure(server, 50, 1, "systemstatus echo hi", seconds, 0, cpu)


def median(rounds, key):
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, digits=2):
    return "-" if value is None else f"{value:,.{digits}f}"


KEYS = ("throughput", "p50_ms", "p99_ms", "cpu_percent", "server_cpu_percent",
        "other_cpu_percent", "server_us_per_request")


def run_scenario(scenario, servers, args):
    """scenario: (name, conns, depth, command, side A, side B, kind, target), sides named in
    servers.  kind "ratio": A/B throughput should reach target; "cost": A's loss, in %."""
    name, conns, depth, command, a, b, kind, target = scenario
    rounds = {a: [], b: []}
    for index in range(args.rounds):
        # Alternate who goes first, so a drift of the (shared) machine hits both alike.
        for who in ((a, b) if index % 2 == 0 else (b, a)):
            r = measure(servers[who], conns, depth, command, args.seconds, args.warmup,
                        args.gen_cpu)
            rounds[who].append(r)
            print(f"  {name:<14} round {index + 1}/{args.rounds}  {who:<20}"
                  f"{fmt(r['throughput'], 0):>9} req/s  p50 {fmt(r.get('p50_ms'), 3):>7} ms"
                  f"  {r.get('generator', '?'):>6} generator CPU {fmt(r.get('cpu_percent'), 0):>3}%"
                  f"  server CPU {fmt(r.get('server_cpu_percent'), 0):>3}%"
                  f"  other CPU {fmt(r.get('other_cpu_percent'), 0):>3}%", flush=True)
    summary = {s: {k: median(rounds[s], k) for k in KEYS} for s in (a, b)}
    for s in (a, b):
        summary[s]["generator"] = rounds[s][0].get("generator")
    tput = ratio(summary[a]["throughput"], summary[b]["throughput"])
    # The two runs of one round are back to back, so their ratio cancels slow drift;
    # its median is a second opinion on the ratio of medians.
    paired = [ratio(x["throughput"], y["throughput"]) for x, y in zip(rounds[a], rounds[b])]
    paired = statistics.median([p for p in paired if p is not None] or [0.0])
    # A server's capacity relative to the other's: the inverse ratio of their CPU per
    # request.  It still measures the servers when the generator is the limit.  Each
    # server's best round is used, as timeit does: on a shared VM, interference (the
    # host's steal, caches) only ever adds cost, and it hits rounds unevenly.
    best = {s: min((r["server_us_per_request"] for r in rounds[s]
                    if r.get("server_us_per_request")), default=None) for s in (a, b)}
    capacity = ratio(best[b], best[a])
    capacity_median = ratio(summary[b]["server_us_per_request"],
                            summary[a]["server_us_per_request"])
    gen_bound = any((summary[s]["cpu_percent"] or 0) >= SATURATED for s in (a, b))
    judged_by = "capacity" if gen_bound and capacity is not None else "throughput"
    judged = capacity if judged_by == "capacity" else tput
    value = judged if kind == "ratio" or judged is None else 100 * (1 - judged)
    met = None if target is None or value is None else (
        value >= target if kind == "ratio" else value <= target)
    troubles = sum(bool(r.get("failed") or r.get("error_replies") or r.get("closed_by_server"))
                   for s in (a, b) for r in rounds[s])
    # The C generator does not read replies: the same command answered alike on both
    # sides has the same size, so a difference flags an error reply.
    sizes = {r["bytes_per_reply"] for s in (a, b) for r in rounds[s] if r.get("bytes_per_reply")}
    troubles += len(sizes) > 1
    return {"name": name, "conns": conns, "depth": depth, "command": command, "a": a, "b": b,
            "kind": kind, "target": target, "value": value, "met": met, "troubles": troubles,
            "throughput_ratio": tput, "paired_ratio": paired, "summary": summary,
            "rounds": rounds, "capacity_ratio": capacity,
            "capacity_ratio_of_medians": capacity_median, "best_us_per_request": best,
            "judged_by": judged_by, "bytes_per_reply": sorted(sizes),
            "p50_ratio": ratio(summary[a]["p50_ms"], summary[b]["p50_ms"]),
            "p99_ratio": ratio(summary[a]["p99_ms"], summary[b]["p99_ms"])}
