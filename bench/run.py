"""The benchmark driver: smanager against the reference server, in one run.

Rules:
1. Every server is a subprocess on 127.0.0.1, port 0, pinned to the first CPU
   this process may use, and every load generator to the second (taskset, as
   ../shared/perf/compare.sh pins), when there are two or more.
2. Each scenario measures its two sides in turn, R rounds, alternating which
   goes first, and reports medians and their ratio (measure.py).  Plain-text
   loads use the C generator of ../shared/perf; JSON mode and TLS use
   bench/loadgen.py for BOTH sides of their ratio.  Each generator reports its
   own CPU, so the reader sees it was not the limit.
3. Then the measures of many clients: 10,000 idle connections' memory and a
   trivial command's p99 beside blocking clients (crowds.py), and new
   connections per second and a burst of 500 (bursts.py), each on servers of
   its own.
4. A measurement, never a test: a missed target is printed, not raised, and
   every round is saved in bench/results/latest.json.

    python bench/run.py            # 5 rounds of 4 s (+1 s warm-up) each
    python bench/run.py --quick    # 3 rounds of 1 s, to check it works
    python bench/run.py --only 50x16 --only bursts --rounds 9
"""

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import bursts
import cloadgen
import crowds
from measure import (  # scripts.py imports measure and run_scenario from here
    SATURATED,
    Endpoint,
    fmt,
    measure,  # noqa: F401
    prime,
    run_scenario,
)
from servers import (
    BENCH,
    ROOT,
    Server,
    cpus_to_pin,
    server_commands,
    source_version,
    write_services,
)

ECHO, PING = "systemstatus echo hi", "benchsvc ping"
# (name, connections, depth, command, side A, side B, kind, target)
# kind "ratio": A/B throughput should reach target; "cost": A's loss vs B, in %, at most target.
# "smanager json" and "smanager text" are the same server driven by bench/loadgen.py.
SCENARIOS = [
    ("1x1", 1, 1, ECHO, "smanager", "reference", "ratio", 0.85),
    ("50x1", 50, 1, ECHO, "smanager", "reference", "ratio", 0.8),
    ("50x16", 50, 16, ECHO, "smanager", "reference", "ratio", 0.5),
    ("blocking", 50, 1, PING, "smanager+benchsvc", "reference", "ratio", None),
    ("1000 services", 50, 1, ECHO, "smanager+1000svc", "smanager", "cost", 10.0),
    ("json 50x1", 50, 1, ECHO, "smanager json", "smanager text", "ratio", None),
    ("json 50x16", 50, 16, ECHO, "smanager json", "smanager text", "ratio", 0.8),
    ("tls 50x1", 50, 1, ECHO, "smanager+tls", "smanager text", "ratio", None),
    ("tls 50x16", 50, 16, ECHO, "smanager+tls", "smanager text", "ratio", None),
]
CROWDS, BURSTS = ("idle", "blocking p99"), "bursts"
NOISY = 25  # median other CPU% from which a row shares the machine with someone else
VIEWS = {  # side -> (its server, how the generator talks to it)
    "smanager json": ("smanager", {"json_mode": True, "generator": "python"}),
    "smanager text": ("smanager", {"generator": "python"}),
}


def report(results):
    print(f"\n{'scenario':<14} {'side':<20} {'gen':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'gen CPU%':>8} {'server CPU%':>11} {'server us/req':>13} {'other CPU%':>10}")
    for r in results:
        for label, s in ((r["name"], r["a"]), ("", r["b"])):
            m = r["summary"][s]
            print(f"{label:<14} {s:<20} {m['generator'] or '-':>6} {fmt(m['throughput'], 0):>9}"
                  f" {fmt(m['p50_ms'], 3):>8} {fmt(m['p99_ms'], 3):>8}"
                  f" {fmt(m['cpu_percent'], 0):>8}"
                  f" {fmt(m['server_cpu_percent'], 0):>11} {fmt(m['server_us_per_request']):>13}"
                  f" {fmt(m['other_cpu_percent'], 0):>10}")
        print(f"{'':<14} {'ratio':<20} {'':>6} {fmt(r['throughput_ratio']):>9}"
              f" {fmt(r['p50_ratio']):>8}"
              f" {fmt(r['p99_ratio']):>8} {'':>8} {'':>11} {fmt(r['capacity_ratio']):>13}")
    print("\nTargets (a measurement: nothing fails here)")
    for r in results:
        if r["kind"] == "ratio":
            goal = (f">= {r['target']:g} x {r['b']}" if r["target"] is not None
                    else "none, reported only")
            got = f"{fmt(r['value'])} x (paired {fmt(r['paired_ratio'])})"
            if r["judged_by"] == "capacity":
                got = (f"{fmt(r['value'])} x by CPU/request, best rounds"
                       f" (medians: {fmt(r['capacity_ratio_of_medians'])})")
        else:
            goal = f"cost <= {r['target']:g}%"
            got = (f"cost {fmt(r['value'], 1)}% (paired"
                   f" {fmt(100 * (1 - r['paired_ratio']), 1)}%)")
        verdict = {True: "MET", False: "NOT MET", None: "-"}[r["met"]]
        trouble = f"  ({r['troubles']} round(s) saw errors or closes)" if r["troubles"] else ""
        noise = max(r["summary"][s]["other_cpu_percent"] or 0 for s in (r["a"], r["b"]))
        if noise >= NOISY:
            trouble += f"  (noisy: other CPU {noise:.0f}%)"
        print(f"  {r['name']:<14} {got:<34} target {goal:<30} {verdict}{trouble}")
    print("\nLoad generators (one process each, on its own core: 100% = that core)")
    for r in results:
        a, b = (r["summary"][s] for s in (r["a"], r["b"]))
        print(f"  {r['name']:<14} {a['generator']}: {r['a']} {fmt(a['throughput'], 0)} req/s at"
              f" {fmt(a['cpu_percent'], 0)}% CPU; {b['generator']}: {r['b']}"
              f" {fmt(b['throughput'], 0)} req/s at {fmt(b['cpu_percent'], 0)}%")
        for s, m in ((r["a"], a), (r["b"], b)):
            if (m["cpu_percent"] or 0) >= SATURATED:
                print(f"  {'':<14} ! near a full core against {s}: its req/s is a lower"
                      " bound, so this row is judged by server CPU per request")
    if not any(r["judged_by"] == "capacity" for r in results):
        print(f"  no generator reached {SATURATED}% of its core: none limited its row")


def run_scenarios(scenarios, start, args):
    """Each scenario's rounds, on servers started (and primed) once for all of them;
    (results, each server's start-up seconds)."""
    servers = {}
    try:
        for name in sorted({VIEWS.get(side, (side,))[0] for s in scenarios for side in s[4:6]}):
            servers[name] = start(name)
            prime(servers[name], args.prime, args.gen_cpu)
        if {"smanager", "reference"} <= servers.keys() and \
                servers["smanager"].banner() != servers["reference"].banner():
            print("NOTE: the reference banner no longer matches smanager's")
        views = {side: Endpoint(servers[name], **how) for side, (name, how) in VIEWS.items()
                 if name in servers}
        results = [run_scenario(s, {**servers, **views}, args) for s in scenarios]
    finally:
        for server in servers.values():
            server.stop()
    return results, {s.name: round(s.startup_seconds, 3) for s in servers.values()}


def run_crowds(start, wanted, args):
    """crowds.py's two measures, each on fresh servers; (idle rows, blocking) or Nones."""
    idle = blocking = None
    if "idle" in wanted:
        idle = []
        for name in ("smanager+wide", "reference"):
            with start(name) as server:
                idle.append(crowds.idle_memory(server))
    if "blocking p99" in wanted:
        with start("smanager+benchsvc") as server:
            prime(server, args.prime, args.gen_cpu)
            blocking = crowds.latency_beside_blocking(server, args.rounds, args.seconds,
                                                      args.warmup, args.gen_cpu)
    return idle, blocking


def run_bursts(start, args):
    names = dict.fromkeys(bursts.RATE_SIDES + bursts.BURST_SIDES)
    servers = {}
    try:
        for name in names:
            servers[name] = start(name)
            prime(servers[name], args.prime, args.gen_cpu)
        print("\nconnections", flush=True)
        return bursts.measure_rate(servers, args), bursts.measure_bursts(servers, args)
    finally:
        for server in servers.values():
            server.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted per round")
    parser.add_argument("--prime", type=float, default=4.0,
                        help="seconds of unmeasured load each fresh server gets first")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this scenario, or idle, 'blocking p99', bursts (repeatable)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the OS place servers and generators (default: CPU 0 and 1)")
    args = parser.parse_args(argv)
    # Pinned, the server and the generator each have a core, always the same ones: a
    # wake-up across cores costs ~100 us on this VM against ~20 on one, so letting the
    # scheduler choose makes 1x1 swing by 4x from round to round.
    server_cpu, args.gen_cpu = cpus_to_pin() if args.pin else (None, None)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.prime = 3, 1.0, 0.3, 2.0
    wanted = set(args.only or [s[0] for s in SCENARIOS] + [*CROWDS, BURSTS])
    scenarios = [s for s in SCENARIOS if s[0] in wanted]
    if cloadgen.binary() is None:
        print(f"NOTE: {cloadgen.why_not()}; bench/loadgen.py drives every scenario")
    print(f"pinning: {'none' if server_cpu is None else f'servers on CPU {server_cpu},'}"
          f"{'' if server_cpu is None else f' generators on CPU {args.gen_cpu} (taskset)'}")
    record = {**source_version(), "python": sys.version.split()[0], "platform": platform.platform(),
              "cpus": os.cpu_count(), "loadavg_before": os.getloadavg(), "args": vars(args),
              "c_generator": str(cloadgen.binary())}
    with tempfile.TemporaryDirectory(prefix="smanager-bench-") as tmp:
        tmp = Path(tmp)
        write_services(tmp)
        (tmp / "logs").mkdir()
        commands = server_commands(tmp)
        for skipped in [s for s in scenarios if s[4] not in {*commands, *VIEWS}]:
            print(f"NOTE: {skipped[0]} skipped: no {skipped[4]} (is openssl installed?)")
            scenarios.remove(skipped)
        start = lambda name: Server(name, commands[name], tmp / "logs", server_cpu)
        crowds.allow_open_files(crowds.IDLE)  # before any server starts: they inherit it
        results, record["startup_seconds"] = run_scenarios(scenarios, start, args)
        idle, blocking = run_crowds(start, wanted, args)
        rate, burst = run_bursts(start, args) if BURSTS in wanted else (None, None)
    record.update(loadavg_after=os.getloadavg(), scenarios=results, idle=idle,
                  blocking_p99=blocking, connection_rate=rate, bursts=burst)
    print(f"\nMedians of {args.rounds} rounds of {args.seconds:g} s (+{args.warmup:g} s warm-up);"
          " ratio = A / B (req/s: higher is better; latency: lower is better)")
    if results:
        report(results)
    extra = crowds.report(idle, blocking) + bursts.report(rate, burst)
    if extra:
        print("\nMany clients\n" + "\n".join(extra))
    out = BENCH / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nall rounds: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
