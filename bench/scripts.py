"""scripts run against the floor and webhook: one trivial script, side by side, in one run.

    python3 bench/scripts.py              # 5 rounds of 4 s (+1 s warm-up), ~4 min
    python3 bench/scripts.py --quick      # 2 rounds of 1 s: checks that it all works
    python3 bench/scripts.py --profile    # then one more round under cProfile, top functions

The script is `#!/bin/sh` + `echo hi`.  Four things run it, closed loop (each
client asks again once its reply is complete), at 1 and at 10 clients:

- smanager:       `scripts run hi` in text mode, a kept TCP connection per
                  client (bench/loadgen.py, a separate process);
- floor threaded: a bare asyncio process spawning it with
                  create_subprocess_exec and reading it to the end, under
                  Python 3.11's default ThreadedChildWatcher;
- floor pidfd:    the same under asyncio.PidfdChildWatcher;
- webhook:        Debian's webhook (Go), GET /hooks/hi on a kept HTTP/1.1
                  connection per client.

Every round measures all four at each client count, back to back, the order
rotated every round.  Then "an idle scripts service costs nothing": the
`systemstatus echo hi` throughput (bench/run.py's 50x1 scenario and its code)
of smanager with [service.scripts] over 100 scripts against one without.
It prints a line per round, medians, ratios and targets, and saves every round
to bench/results/scripts-latest.json.  A measurement, not a test: it asserts
nothing and exits 0.  Every peer is stopped at the end, even on an error,
Ctrl-C or SIGTERM; then any process still alive whose command line holds the
run's directory (a peer, a client, a script) is killed and named.
"""

import argparse
import json
import os
import platform
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import proc_peers
import scripts_peers as peers
from figures import end_on_sigterm, fmt, measuring, median, ratio
from run import measure as echo_measure
from run import run_scenario
from servers import ROOT, source_version

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
KINDS = ["smanager", "floor threaded", "floor pidfd", "webhook"]
CLIENTS = (1, 10)
ECHO = "systemstatus echo hi"
IDLE_COST_TARGET = 5.0  # %: "nothing measurable" is within a round's noise on this VM
TARGETS = {"best floor": 0.8, "webhook": 1.0}  # smanager's runs/s at least this x theirs


class Run:
    """One benchmark run: its settings, its directory, every peer still up."""

    def __init__(self, args, directory):
        self.args, self.dir, self.live = args, Path(directory), []
        self.scripts = self.dir / "scripts"
        peers.write_scripts(self.scripts, 1)
        # Elsewhere only if asked (to see what the file system costs); removed by sweep().
        self.state_parent = (Path(tempfile.mkdtemp(prefix="bench-scripts-", dir=args.state_dir))
                             if args.state_dir else None)

    def state_dir(self, name):
        return None if self.state_parent is None else self.state_parent / name

    def peer(self, make, cpu):
        with peers.placed(cpu):
            peer = make()
        self.live.append(peer)
        return peer

    def stop(self, peer):
        seconds = peer.stop()
        self.live.remove(peer)
        return seconds

    def sweep(self):
        """Stop every peer still up, then KILL and name any process of the run left."""
        for peer in list(self.live):
            self.stop(peer)
        left = peers.leftovers(str(self.dir))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.state_parent is not None:
            shutil.rmtree(self.state_parent, ignore_errors=True)
        return left

    def client_argv(self, kind, conns, seconds, warmup):
        timing = ["--conns", str(conns), "--duration", str(seconds), "--warmup", str(warmup),
                  "--sync"]
        if kind == "smanager":
            return [str(BENCH / "loadgen.py"), "--port", str(self.smanager.port),
                    "--command", "scripts run hi", *timing]
        if kind == "webhook":
            return [str(BENCH / "scripts_peers.py"), "http", "--port", str(self.webhook.port),
                    *timing]
        return [str(BENCH / "scripts_peers.py"), "floor", "--watcher", kind.split()[1],
                "--script", str(self.scripts / "hi.sh"), *timing]

    def measure(self, kind, conns, seconds, warmup):
        """One client run against KIND; its figures, with the CPU the peer (the floor
        process itself for a floor) and its scripts used per run over the window."""
        floor = kind.startswith("floor")
        with peers.placed(self.args.server_cpu if floor else self.args.client_cpu):
            client = subprocess.Popen([sys.executable, *self.client_argv(kind, conns, seconds,
                                                                         warmup)],
                                      cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      text=True, start_new_session=True)
        target = client.pid if floor else {"smanager": self.smanager,
                                           "webhook": self.webhook}[kind].pid
        watchdog = threading.Timer(seconds + warmup + 40, client.kill)  # bounds every read
        watchdog.start()
        marks, result = {}, {"failed": True}
        try:
            for line in client.stdout:
                if line.strip() in ("start", "stop"):
                    marks[line.strip()] = (proc_peers.cpu_seconds(target),
                                           peers.children_cpu_seconds(target))
                elif line.startswith("{"):
                    result = json.loads(line)
            client.wait(10)
        finally:
            watchdog.cancel()
            if client.poll() is None:
                client.kill()
                client.wait()
        if len(marks) == 2 and result.get("requests"):
            (own0, kids0), (own1, kids1) = marks["start"], marks["stop"]
            result["server_us"] = 1e6 * (own1 - own0) / result["requests"]
            result["children_us"] = 1e6 * (kids1 - kids0) / result["requests"]
        return result


def round_line(number, conns, results):
    parts = [f"{kind} {fmt(r.get('throughput'))}/s p50 {fmt(r.get('p50_ms'), 2)} ms"
             for kind, r in results.items()]
    print(f"round {number}, {conns:2d} client(s): " + "; ".join(parts), flush=True)


def summary(rounds, conns):
    """kind -> medians of its figures over the rounds, at CONNS clients."""
    keys = ("throughput", "p50_ms", "p99_ms", "server_us", "children_us", "cpu_percent")
    return {kind: {key: median([r[conns][kind].get(key) for r in rounds if kind in r[conns]])
                   for key in keys} for kind in rounds[0][conns]}


def report(rounds, args):
    print(f"\nmedians of {len(rounds)} rounds of {args.seconds:g} s; ratio = smanager / other: "
          "for runs/s higher is better, for latency and CPU lower is better")
    head = (f"{'clients':>7}  {'':24} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'server us/run':>13} {'scripts us/run':>14}")
    verdicts = []
    print(head + "\n" + "-" * len(head))
    for conns in CLIENTS:
        medians = summary(rounds, conns)
        for kind, m in medians.items():
            print(f"{conns:>7}  {kind:24} {fmt(m['throughput']):>8} {fmt(m['p50_ms'], 2):>8} "
                  f"{fmt(m['p99_ms'], 2):>8} {fmt(m['server_us']):>13} "
                  f"{fmt(m['children_us']):>14}")
        floors = [kind for kind in medians if kind.startswith("floor")]
        best = max(floors, key=lambda kind: medians[kind]["throughput"] or 0)
        sm = medians["smanager"]
        for label, other in (("best floor", best), ("webhook", "webhook")):
            if other not in medians:
                continue
            them = medians[other]
            runs = ratio(sm["throughput"], them["throughput"])
            paired = median([ratio(r[conns]["smanager"].get("throughput"),
                                   r[conns][other].get("throughput")) for r in rounds])
            cells = [runs, ratio(sm["p50_ms"], them["p50_ms"]), ratio(sm["p99_ms"], them["p99_ms"]),
                     ratio(sm["server_us"], them["server_us"]),
                     ratio(sm["children_us"], them["children_us"])]
            name = f"smanager / {other}" if label == "webhook" else f"smanager / {best}"
            print(f"{'':>7}  {name:24} " + " ".join(
                f"{fmt(cell, 2):>{width}}" for cell, width in zip(cells, (8, 8, 8, 13, 14))))
            better = "smanager" if (runs or 0) >= 1 else other
            met = None if runs is None else runs >= TARGETS[label]
            verdicts.append(f"  {conns:>2} client(s): smanager / {label} runs/s {fmt(runs, 2)} "
                            f"(paired {fmt(paired, 2)}; {better} is faster), target >= "
                            f"{TARGETS[label]:g}: {'met' if met else 'MISSED'}")
    print("\ntargets (a measurement: nothing fails here)")
    print("\n".join(verdicts))


def idle_cost(run, args):
    """bench/run.py's 50x1 echo scenario: smanager with 100 scripts configured / without."""
    many = run.dir / "many"
    peers.write_scripts(many, 100)
    servers = {}
    servers["smanager+100 scripts"] = run.peer(
        lambda: peers.ScriptsSManager(run.dir, "with-scripts", many,
                                      state_dir=run.state_dir("with-scripts")),
        args.echo_server_cpu)
    servers["smanager"] = run.peer(lambda: peers.ScriptsSManager(run.dir, "without"),
                                   args.echo_server_cpu)
    echo_args = argparse.Namespace(rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                                   gen_cpu=args.echo_client_cpu)
    for server in servers.values():
        echo_measure(server, 50, 1, ECHO, args.prime, 0, args.echo_client_cpu)
    print(f"\nidle scripts service: `{ECHO}`, 50 connections, smanager with [service.scripts] "
          "over 100 scripts / without", flush=True)
    result = run_scenario(("idle scripts", 50, 1, ECHO, "smanager+100 scripts", "smanager",
                           "cost", IDLE_COST_TARGET), servers, echo_args)
    for server in servers.values():
        run.stop(server)
    return result


def idle_line(result):
    a, b = (result["summary"][name] for name in (result["a"], result["b"]))
    how = "CPU/request, best rounds" if result["judged_by"] == "capacity" else "req/s"
    return (f"  idle scripts service: with {fmt(a['throughput'])} req/s, without "
            f"{fmt(b['throughput'])}: cost {fmt(result['value'], 1)} % by {how} (req/s paired "
            f"{fmt(100 * (1 - result['paired_ratio']), 1)} %), target <= {IDLE_COST_TARGET:g} %:"
            f" {'met' if result['met'] else 'MISSED'}")


def profile(run, args):
    """One more round against a fresh smanager under cProfile; the profile's path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scripts-profile.prof"
    path.unlink(missing_ok=True)
    server = run.peer(lambda: peers.ScriptsSManager(run.dir, "profiled", run.scripts, path,
                                                    run.state_dir("profiled")), args.server_cpu)
    run.smanager = server
    for conns in CLIENTS:
        r = run.measure("smanager", conns, args.seconds, args.warmup)
        print(f"under cProfile, {conns:2d} client(s): {fmt(r.get('throughput'))} runs/s, "
              f"server {fmt(r.get('server_us'))} us/run")
    run.stop(server)  # SIGTERM: smanager returns from main, cProfile writes the file
    if not path.exists():
        print(f"no profile written: {server.last_words()}")
        return None
    return path


def print_profile(path):
    print(f"\nthe profiled server's main thread (all of it, start-up included), "
          f"saved to {path.relative_to(ROOT)}")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def main():
    end_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds (default 5, 2 with --quick)")
    parser.add_argument("--seconds", type=float, help="measured seconds (default 4, 1 quick)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s")
    parser.add_argument("--pin", action="store_true",
                        help="peers (and their scripts) on the first CPU, clients on the second")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="keep smanager's run history in a fresh directory under DIR "
                             "(default: in the run's directory, under /tmp); /dev/shm leaves "
                             "the file system out")
    parser.add_argument("--webhook", default=peers.Webhook.binary, help="the webhook binary")
    parser.add_argument("--profile", action="store_true",
                        help="then profile smanager's server for one more round")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.seconds = args.seconds or (1.0 if args.quick else 4.0)
    args.warmup, args.prime = (0.3, 1.0) if args.quick else (1.0, 3.0)
    cpus = sorted(os.sched_getaffinity(0))
    # The echo scenario is pinned as bench/run.py pins it; the script runs are not,
    # unless --pin: a spawn keeps a second core busy, and webhook's Go uses it.
    args.echo_server_cpu, args.echo_client_cpu = cpus[:2] if len(cpus) >= 2 else (None, None)
    args.server_cpu, args.client_cpu = (cpus[:2] if args.pin and len(cpus) >= 2
                                        else (None, None))
    kinds = KINDS if os.access(args.webhook, os.X_OK) else KINDS[:3]
    peers.Webhook.binary = args.webhook
    source = source_version()
    changed = " + uncommitted changes" if source["uncommitted"] else ""
    print(f"smanager {(source['commit'] or '?')[:12]}{changed}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{'pinned' if args.pin else 'not pinned'}, run history in "
          f"{args.state_dir or tempfile.gettempdir()}"
          + ("" if "webhook" in kinds else f"; no webhook at {args.webhook}"))
    rounds, idle, profiled = [], None, None
    with tempfile.TemporaryDirectory(prefix="bench-scripts-") as directory:
        run = Run(args, directory)
        with measuring(run, "peers", "checked by the run's directory"):
            run.smanager = run.peer(lambda: peers.ScriptsSManager(
                run.dir, "smanager", run.scripts, state_dir=run.state_dir("smanager")),
                args.server_cpu)
            if "webhook" in kinds:
                run.webhook = run.peer(lambda: peers.Webhook(run.dir, run.scripts),
                                       args.server_cpu)
            for kind in ("smanager", "webhook"):  # primed: a fresh server starts slow
                if kind in kinds:
                    run.measure(kind, 10, args.prime, 0)
            for number in range(1, args.rounds + 1):
                result = {}
                for conns in CLIENTS:
                    order = kinds[number % len(kinds):] + kinds[:number % len(kinds)]
                    measured = {kind: run.measure(kind, conns, args.seconds, args.warmup)
                                for kind in order}
                    result[conns] = {kind: measured[kind] for kind in kinds}
                    round_line(number, conns, result[conns])
                rounds.append(result)
            for peer in list(run.live):
                run.stop(peer)
            idle = idle_cost(run, args)
            if args.profile:
                profiled = profile(run, args)
    if rounds:
        report(rounds, args)
    if idle:
        print(idle_line(idle))
    if profiled:
        print_profile(profiled)
    if rounds or idle:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scripts-latest.json").write_text(json.dumps(
            {"source": source, "python": platform.python_version(), "args": vars(args),
             "rounds": [{str(conns): r for conns, r in rnd.items()} for rnd in rounds],
             "idle": idle}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
