"""New connections, not requests: how many a second, and a burst of them at once.

Rules:
1. Rate: a client process (bursts_client.py ``rate``, pinned to the
   generator's CPU) keeps ``slots`` connections going, each: connect, read the
   banner, send ``systemstatus echo hi``, read the reply, close; then the next
   begins at once.  Serial is 1 slot, parallel PARALLEL.  Only connections that
   end inside the measured window (after the warm-up) count.  smanager and the
   reference are measured back to back, R rounds, the order swapped each
   round; the ratio of medians is judged (target >= RATE_TARGET).
2. Burst: a client process (bursts_client.py ``burst``) begins BURST non-blocking
   connects at once and times each from its own connect(): until it is
   established (connect) and until its banner has arrived (banner; what a
   user waits for).  Max, p99 and p50 of a burst; R bursts per server:
   smanager with its default backlog, with ``--backlog 100``, and the
   reference (backlog 1024); smanager with room for them all (servers.WIDE:
   the default 100 per address would refuse most).  Target: no banner later
   than BURST_MS.  A connection with no banner after BURST_WAIT s is "stalled":
   established here, but its last handshake ACK met a full accept queue and
   the server dropped it, so it is never greeted.  Between bursts the sockets
   are closed and the server's open files polled back to where they were
   (bounded), so a burst never meets the last one's closes.
3. Each client process is bounded in time and prints one JSON line; the
   server's CPU is sampled at its ``start``/``stop`` lines.

    python bench/bursts.py [--rounds 5] [--seconds 4]     (starts its own servers)
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bursts_client import BURST_WAIT
from measure import fmt, median, prime, ratio
from servers import BENCH, Server, cpus_to_pin, pinned, server_commands, write_services

PARALLEL, RATE_TARGET = 8, 0.8
BURST, BURST_MS = 500, 100.0
RATE_SIDES = ("smanager", "reference")
BURST_SIDES = ("smanager+wide", "smanager+wide+backlog100", "reference")


def run_client(server, words, cpu, bound):
    """bursts_client.py as a process on CPU `cpu`; its JSON, with the server's CPU."""
    argv = pinned(cpu) + [sys.executable, str(BENCH / "bursts_client.py"), *words,
                          "--port", str(server.port)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(bound, child.kill)
    watchdog.start()
    marks, result = {}, {"failed": True}
    try:
        for line in child.stdout:
            if line.strip() in ("start", "stop"):
                marks[line.strip()] = server.cpu_seconds()
            elif line.startswith("{"):
                result = json.loads(line)
        child.wait(10)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    if len(marks) == 2 and result.get("connections"):
        result["server_us_per_connection"] = round(
            1e6 * (marks["stop"] - marks["start"]) / result["connections"], 1)
    return result


def settle(server, files, timeout=10.0):
    """Poll until the server holds no more open files than `files` (bounded)."""
    deadline = time.monotonic() + timeout
    while server.open_files() > files and time.monotonic() < deadline:
        time.sleep(0.01)


def measure_rate(servers, args):
    rows = {}
    for slots in (1, PARALLEL):
        rounds = {name: [] for name in RATE_SIDES}
        for index in range(args.rounds):
            for name in RATE_SIDES if index % 2 == 0 else RATE_SIDES[::-1]:
                r = run_client(servers[name], ["rate", "--slots", str(slots), "--seconds",
                                               str(args.seconds), "--warmup", str(args.warmup)],
                               args.gen_cpu, args.seconds + args.warmup + 30)
                rounds[name].append(r)
                print(f"  connections x{slots}  round {index + 1}/{args.rounds}  {name:<10}"
                      f" {fmt(r.get('per_second'), 0):>7}/s  p99 {fmt(r.get('p99_ms'), 3)} ms"
                      f"  client CPU {fmt(r.get('cpu_percent'), 0)}%  failures"
                      f" {r.get('failures', '-')}", flush=True)
        summary = {name: {k: median(rounds[name], k) for k in
                          ("per_second", "p50_ms", "p99_ms", "cpu_percent",
                           "server_us_per_connection")} for name in RATE_SIDES}
        value = ratio(*(summary[name]["per_second"] for name in RATE_SIDES))
        # Each round's two sides ran back to back: their ratio is free of the
        # machine's slower drifts (which move both), so it is shown beside.
        pairs = [ratio(a.get("per_second"), b.get("per_second"))
                 for a, b in zip(*(rounds[name] for name in RATE_SIDES))]
        pairs = [p for p in pairs if p is not None]  # (a failed round has no ratio)
        paired = statistics.median(pairs) if pairs else None
        rows[slots] = {"summary": summary, "rounds": rounds, "ratio": value, "paired": paired,
                       "met": None if value is None else value >= RATE_TARGET,
                       "failures": sum(r.get("failures", 1) for v in rounds.values() for r in v)}
    return rows


def measure_bursts(servers, args):
    rows = {}
    for name in BURST_SIDES:
        server, bursts = servers[name], []
        files = server.open_files()
        for _ in range(args.rounds):
            bursts.append(run_client(server, ["burst", "--count", str(BURST)], args.gen_cpu, 60))
            settle(server, files)
        worst = max((b.get("banner_max_ms") or 0) for b in bursts)
        rows[name] = {"bursts": bursts, "worst_banner_ms": worst,
                      "worst_connect_ms": max((b.get("connect_max_ms") or 0) for b in bursts),
                      **{k: median(bursts, k) for k in ("banner_max_ms", "banner_p99_ms",
                                                        "banner_p50_ms", "connect_max_ms",
                                                        "connect_p99_ms")},
                      "failures": sum(b.get("failures", BURST) for b in bursts),
                      "stalled": sum(b.get("stalled", 0) for b in bursts)}
        print(f"  burst of {BURST}  {name:<26} banner max per burst: "
              + ", ".join(fmt(b.get("banner_max_ms"), 1) for b in bursts) + " ms; no banner: "
              + ", ".join(str(b.get("stalled", "-")) for b in bursts), flush=True)
    return rows


def report(rate, bursts):
    lines = []
    for slots, row in (rate or {}).items():
        s, r = (row["summary"][name] for name in RATE_SIDES)
        lines.append(f"  {'serial' if slots == 1 else f'{slots} parallel':<11} smanager"
                     f" {fmt(s['per_second'], 0)}/s (p99 {fmt(s['p99_ms'], 2)} ms, server"
                     f" {fmt(s['server_us_per_connection'], 0)} us/conn), reference"
                     f" {fmt(r['per_second'], 0)}/s (p99 {fmt(r['p99_ms'], 2)} ms, server"
                     f" {fmt(r['server_us_per_connection'], 0)} us/conn); client CPU"
                     f" {fmt(s['cpu_percent'], 0)}% / {fmt(r['cpu_percent'], 0)}%:"
                     f" ratio {fmt(row['ratio'])} (paired {fmt(row['paired'])})"
                     f"  target >= {RATE_TARGET:g}:"
                     f" {'MET' if row['met'] else 'NOT MET'}"
                     + (f"  ({row['failures']} failed)" if row["failures"] else ""))
    for name, row in (bursts or {}).items():
        met = row["worst_banner_ms"] <= BURST_MS and not row["failures"] and not row["stalled"]
        goal = (f"target none > {BURST_MS:g} ms: {'MET' if met else 'NOT MET'}"
                if name == "smanager+wide" else "for comparison")
        lines.append(f"  {name:<26} banner max {fmt(row['banner_max_ms'], 1)} ms, p99"
                     f" {fmt(row['banner_p99_ms'], 1)}, p50 {fmt(row['banner_p50_ms'], 1)};"
                     f" connect max {fmt(row['connect_max_ms'], 1)} p99"
                     f" {fmt(row['connect_p99_ms'], 1)} (medians of bursts); worst banner"
                     f" {fmt(row['worst_banner_ms'], 1)} ms  {goal}"
                     + (f"; {row['stalled']} of {BURST * len(row['bursts'])} no banner in"
                        f" {BURST_WAIT:g} s" if row["stalled"] else "")
                     + (f"; {row['failures']} refused or closed" if row["failures"] else ""))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    server_cpu, args.gen_cpu = cpus_to_pin()
    with tempfile.TemporaryDirectory(prefix="smanager-bursts-") as tmp:
        tmp = Path(tmp)
        write_services(tmp)
        (tmp / "logs").mkdir()
        commands, servers = server_commands(tmp), {}
        try:
            for name in (*RATE_SIDES, *BURST_SIDES):
                if name not in servers:
                    servers[name] = Server(name, commands[name], tmp / "logs", server_cpu)
                    prime(servers[name], 2.0, args.gen_cpu)
            rate, bursts = measure_rate(servers, args), measure_bursts(servers, args)
        finally:
            for server in servers.values():
                server.stop()
    print("\n".join(["", "Connections (medians)"] + report(rate, bursts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
