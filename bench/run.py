"""The benchmark driver: smanager against the reference server, in one run.

It starts every server it needs (subprocesses, 127.0.0.1, port 0), then for
each scenario measures the two servers being compared in turn, R rounds,
alternating which goes first, and reports medians and ratios.  The load
generator is a separate process (bench/loadgen.py), so it has its own core.
This is a measurement, never a test: a missed target is printed, not raised.

    python bench/run.py            # 5 rounds of 4 s (+1 s warm-up) each
    python bench/run.py --quick    # 3 rounds of 1 s, to check it works
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from servers import (
    BENCH,
    ROOT,
    Server,
    machine_busy_seconds,
    server_commands,
    source_version,
    write_services,
)

ECHO, PING = "systemstatus echo hi", "benchsvc ping"
# (name, connections, depth, command, server A, server B, kind, target)
# kind "ratio": A/B throughput should reach target; "cost": A's loss vs B, in %, at most target.
SCENARIOS = [
    ("1x1", 1, 1, ECHO, "smanager", "reference", "ratio", 0.85),
    ("50x1", 50, 1, ECHO, "smanager", "reference", "ratio", 0.85),
    ("50x16", 50, 16, ECHO, "smanager", "reference", "ratio", 0.5),
    ("blocking", 50, 1, PING, "smanager+benchsvc", "reference", "ratio", None),
    ("1000 services", 50, 1, ECHO, "smanager+1000svc", "smanager", "cost", 10.0),
]
SATURATED = 90  # loadgen CPU% from which its own core, not the server, may be the limit


def measure(server, conns, depth, command, seconds, warmup, cpu=None):
    """One loadgen run; the server's CPU is sampled at the loadgen's start/stop lines."""
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--port", str(server.port),
            "--conns", str(conns), "--depth", str(depth), "--command", command,
            "--duration", str(seconds), "--warmup", str(warmup), "--sync"]
    argv += [] if cpu is None else ["--cpu", str(cpu)]
    gen = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(seconds + warmup + 30, gen.kill)  # bounds every read below
    watchdog.start()
    marks, result = {}, None
    try:
        for line in gen.stdout:
            if line.strip() in ("start", "stop"):
                marks[line.strip()] = (time.monotonic(), server.cpu_seconds(),
                                       machine_busy_seconds())
            elif line.startswith("{"):
                result = json.loads(line)
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
    result["server_us_per_request"] = (round(1e6 * (c1 - c0) / result["requests"], 2)
                                       if result["requests"] else None)
    # Whatever else kept the machine busy meanwhile (other sessions, the host's steal):
    # a round with much of it is a noisy round.
    other = 100 * (m1 - m0) / wall - result["server_cpu_percent"] - result["cpu_percent"]
    result["other_cpu_percent"] = round(max(other, 0.0), 1)
    return result


def median(rounds, key):
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, digits=2):
    return "-" if value is None else f"{value:,.{digits}f}"


def run_scenario(scenario, servers, args):
    name, conns, depth, command, a, b, kind, target = scenario
    rounds = {a: [], b: []}
    for index in range(args.rounds):
        # Alternate who goes first, so a drift of the (shared) machine hits both alike.
        for who in ((a, b) if index % 2 == 0 else (b, a)):
            r = measure(servers[who], conns, depth, command, args.seconds, args.warmup,
                        args.gen_cpu)
            rounds[who].append(r)
            print(f"  {name:<14} round {index + 1}/{args.rounds}  {who:<18}"
                  f"{fmt(r['throughput'], 0):>9} req/s  p50 {fmt(r.get('p50_ms'), 3):>7} ms"
                  f"  loadgen CPU {fmt(r.get('cpu_percent'), 0):>3}%"
                  f"  server CPU {fmt(r.get('server_cpu_percent'), 0):>3}%"
                  f"  other CPU {fmt(r.get('other_cpu_percent'), 0):>3}%", flush=True)
    keys = ("throughput", "p50_ms", "p99_ms", "cpu_percent", "server_cpu_percent",
            "other_cpu_percent", "server_us_per_request")
    summary = {s: {k: median(rounds[s], k) for k in keys} for s in (a, b)}
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
    judged = capacity if gen_bound and capacity is not None else tput
    value = judged if kind == "ratio" or judged is None else 100 * (1 - judged)
    met = None if target is None or value is None else (
        value >= target if kind == "ratio" else value <= target)
    troubles = sum(bool(r.get("failed") or r.get("error_replies") or r.get("closed_by_server"))
                   for s in (a, b) for r in rounds[s])
    return {"name": name, "conns": conns, "depth": depth, "command": command, "a": a, "b": b,
            "kind": kind, "target": target, "value": value, "met": met, "troubles": troubles,
            "throughput_ratio": tput, "paired_ratio": paired, "summary": summary, "rounds": rounds,
            "capacity_ratio": capacity, "capacity_ratio_of_medians": capacity_median,
            "best_us_per_request": best, "judged_by": "capacity" if gen_bound and capacity is not None else "throughput",
            "p50_ratio": ratio(summary[a]["p50_ms"], summary[b]["p50_ms"]),
            "p99_ratio": ratio(summary[a]["p99_ms"], summary[b]["p99_ms"])}


def report(results, servers, args):
    print(f"\nMedians of {args.rounds} rounds of {args.seconds:g} s (+{args.warmup:g} s warm-up);"
          " ratio = first / second (req/s: higher is better; latency: lower is better)")
    print(f"{'scenario':<14} {'server':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'loadgen CPU%':>12} {'server CPU%':>11} {'server us/req':>13} {'other CPU%':>10}")
    for r in results:
        for label, s in ((r["name"], r["a"]), ("", r["b"])):
            m = r["summary"][s]
            print(f"{label:<14} {s:<18} {fmt(m['throughput'], 0):>9} {fmt(m['p50_ms'], 3):>8}"
                  f" {fmt(m['p99_ms'], 3):>8} {fmt(m['cpu_percent'], 0):>12}"
                  f" {fmt(m['server_cpu_percent'], 0):>11} {fmt(m['server_us_per_request']):>13}"
                  f" {fmt(m['other_cpu_percent'], 0):>10}")
        print(f"{'':<14} {'ratio':<18} {fmt(r['throughput_ratio']):>9} {fmt(r['p50_ratio']):>8}"
              f" {fmt(r['p99_ratio']):>8} {'':>12} {'':>11} {fmt(r['capacity_ratio']):>13}")
    print("\nTargets (a measurement: nothing fails here)")
    for r in results:
        if r["kind"] == "ratio":
            goal = "none, reported only" if r["target"] is None else f">= {r['target']:g} x reference"
            got = f"{fmt(r['value'])} x (paired {fmt(r['paired_ratio'])})"
            if r["judged_by"] == "capacity":
                got = (f"{fmt(r['value'])} x by CPU/request, best rounds"
                       f" (medians: {fmt(r['capacity_ratio_of_medians'])})")
        else:
            goal = f"cost <= {r['target']:g}%"
            got = f"{fmt(r['value'], 1)}% (paired {fmt(100 * (1 - r['paired_ratio']), 1)}%)"
            got = "cost " + got
        verdict = {True: "MET", False: "NOT MET", None: "-"}[r["met"]]
        trouble = f"  ({r['troubles']} round(s) saw errors or closes)" if r["troubles"] else ""
        print(f"  {r['name']:<14} {got:<25} target {goal:<24} {verdict}{trouble}")
    print("  (CPU/request compares each server's best round: noise on a shared machine"
          " only adds cost)")
    print("\nLoad generator (one process, at most one core = 100%)")
    for r in results:
        a, b = (r["summary"][s] for s in (r["a"], r["b"]))
        print(f"  {r['name']:<14} drove {r['a']} at {fmt(a['throughput'], 0)} req/s using"
              f" {fmt(a['cpu_percent'], 0)}% CPU; {r['b']} at {fmt(b['throughput'], 0)} req/s"
              f" using {fmt(b['cpu_percent'], 0)}%")
        for s, m in ((r["a"], a), (r["b"], b)):
            if (m["cpu_percent"] or 0) >= SATURATED:
                print(f"  {'':<14} ! near a full core against {s}: its req/s is a lower"
                      " bound, so this row is judged by server CPU per request")
    print("  start-up: " + ", ".join(f"{s.name} {s.startup_seconds:.2f} s" for s in servers.values()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted per round")
    parser.add_argument("--prime", type=float, default=4.0,
                        help="seconds of unmeasured load each fresh server gets first")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s")
    parser.add_argument("--only", action="append", metavar="SCENARIO",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the OS place servers and generator (default: CPU 0 and 1)")
    args = parser.parse_args(argv)
    # Pinned, the server and the generator each have a core, always the same ones: a
    # wake-up across cores costs ~100 us on this VM against ~20 on one, so letting the
    # scheduler choose makes 1x1 swing by 4x from round to round.
    pin = args.pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    server_cpu, args.gen_cpu = sorted(os.sched_getaffinity(0))[:2] if pin else (None, None)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.prime = 3, 1.0, 0.3, 2.0
    scenarios = [s for s in SCENARIOS if not args.only or s[0] in args.only]
    record = {**source_version(), "python": sys.version.split()[0], "platform": platform.platform(),
              "cpus": os.cpu_count(), "loadavg_before": os.getloadavg(), "args": vars(args)}
    servers = {}
    with tempfile.TemporaryDirectory(prefix="smanager-bench-") as tmp:
        tmp = Path(tmp)
        write_services(tmp)
        (tmp / "logs").mkdir()
        commands = server_commands(tmp)
        try:
            for name in sorted({s[4] for s in scenarios} | {s[5] for s in scenarios}):
                servers[name] = Server(name, commands[name], tmp / "logs", server_cpu)
            if {"smanager", "reference"} <= servers.keys() and \
                    servers["smanager"].banner() != servers["reference"].banner():
                print("NOTE: the reference banner no longer matches smanager's")
            # A fresh server runs at a third of its speed for its first seconds of load
            # (tens of thousands of page faults while malloc settles), so each is primed
            # once, unmeasured, before any round; the per-round warm-up is not enough.
            for server in servers.values():
                measure(server, 50, 1, ECHO, args.prime, 0, args.gen_cpu)
            results = [run_scenario(s, servers, args) for s in scenarios]
        finally:
            for server in servers.values():
                server.stop()
    record["startup_seconds"] = {s.name: round(s.startup_seconds, 3) for s in servers.values()}
    record["loadavg_after"] = os.getloadavg()
    record["scenarios"] = results
    report(results, servers, args)
    out = BENCH / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nall rounds: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
