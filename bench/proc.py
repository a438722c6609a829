"""proc against supervisord: the same programs, side by side, in one run.

    python3 bench/proc.py                    # 5 rounds, N = 100, ~6 min
    python3 bench/proc.py --quick            # 2 rounds, N = 25, ~1 min
    python3 bench/proc.py --supervisord /tmp/benchvenv/bin/supervisord --rounds 9

Without --supervisord, supervisor is pip-installed once into
bench/results/supervisor-venv.  Every round starts a fresh manager of each
kind for each figure, the two back to back, the order swapped every round:

- start:   N `sleep 3600` programs (start secs 1, autostart off): from the
           start-all request until all N pids exist (the manager's children,
           polled every 0.5 ms), and until its reply, which comes once all
           are RUNNING (`proc start all`; startAllProcesses(wait=True)).
- idle:    2N such programs running: the manager's CPU over a window
           (utime+stime of its own process), VmRSS, threads, pidfds; status
           (`proc list` in text and in JSON on an open connection, on a new
           one, and through tshell, against getAllProcessInfo on a kept and on
           a new connection and `supervisorctl status`); then SIGTERM to exit.
- restart: one program (start secs 0) SIGKILLed, then the time until the
           manager has a new child and until its status says RUNNING with
           it.  Odd kills poll only /proc (every 0.1 ms) until the new pid,
           then the status; even kills poll the status as fast as it answers
           from the kill on, which also wakes a manager's loop.
- watcher: asyncio's two child watchers of Python 3.11 alone, in a bare
           process with 2N children: threads, memory, spawn time, exit seen.

It prints a line per round, then medians and smanager / supervisord ratios,
and saves every round to bench/results/proc-latest.json.  A measurement, not
a test: it asserts nothing and exits 0.  Every manager is stopped at the end,
even on an error, Ctrl-C or SIGTERM; then any program of the run still alive
(found by a token in its environment) is killed and named.
"""

import argparse
import http.client
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client

import proc_peers as peers
from figures import end_on_sigterm, measuring, median
from proc_peers import ROOT, SManager, Supervisord, Wire
from servers import source_version

RESULTS = ROOT / "bench" / "results"
VENV = RESULTS / "supervisor-venv"
SLEEP = ("sleep", "3600")
TSHELL = [sys.executable, "-c", "import sys; from smanager.tshell import main; sys.exit(main())"]
FAILURES = (OSError, RuntimeError, ValueError, subprocess.SubprocessError, xmlrpc.client.Error,
            http.client.HTTPException)
# key, label, unit, scale from the stored value, target (smanager below it) or None.
# Every figure is a time or a cost: lower is better on every row.
FIGURES = [
    ("pids", "start {n}: all pids exist", "s", 1, None),
    ("running", "start {n}: all RUNNING (reply)", "s", 1, None),
    ("cpu", "idle {n2}: CPU % of one core", "%", 1, None),
    ("rss", "idle {n2}: RSS", "MB", 1 / 1024, None),
    ("threads", "idle {n2}: threads", "", 1, None),
    ("list", "status {n2}: text, open conn", "ms", 1000, 20),
    ("list_json", "status {n2}: JSON, open conn", "ms", 1000, 20),
    ("list_new", "status {n2}: new connection", "ms", 1000, None),
    ("cli", "status {n2}: CLI", "ms", 1000, None),
    ("shutdown", "SIGTERM to exit, {n2} running", "s", 1, None),
    ("new_pid", "restart, /proc polled: new pid", "ms", 1000, None),
    ("back", "restart, /proc polled: RUNNING", "ms", 1000, None),
    ("new_pid_polled", "restart, status polled: new pid", "ms", 1000, None),
    ("back_polled", "restart, status polled: RUNNING", "ms", 1000, None),
]
WATCHER_FIGURES = [("Threads", "threads", "", 1), ("VmRSS", "RSS", "MB", 1 / 1024),
                   ("VmSize", "address space", "MB", 1 / 1024), ("spawn", "spawn all", "s", 1),
                   ("exit_seen", "KILL to exit seen", "ms", 1000)]


def supervisord_binary(given):
    if given:
        return given
    binary = VENV / "bin" / "supervisord"
    if not binary.exists():
        print(f"installing supervisor into {VENV.relative_to(ROOT)} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "supervisor"], check=True)
    return str(binary)


def until(check, seconds, pause):
    """Poll check() until it returns something true: that value, or None after SECONDS."""
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        value = check()
        if value:
            return value
        time.sleep(pause)
    return None


def timed(action, reps):
    """The median seconds one call of action() takes."""
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def command(argv):
    """Run a command line to its end (bounded), its output captured; the CompletedProcess."""
    return subprocess.run(argv, cwd=ROOT, check=False, capture_output=True, timeout=30)


class Run:
    """One benchmark run: its settings, its token, every manager still up."""

    def __init__(self, args, directory):
        self.args, self.dir, self.token = args, directory, secrets.token_hex(8)
        self.live, self.notes = [], []

    def manager(self, kind, programs):
        manager = kind(tempfile.mkdtemp(dir=self.dir), programs, self.token)
        self.live.append(manager)
        return manager

    def stop(self, manager):
        seconds = manager.stop()
        self.live.remove(manager)
        return seconds

    def sweep(self):
        """Stop what is still up, then KILL and name any program of the run left alive."""
        for manager in list(self.live):
            self.stop(manager)
        left = peers.leftovers(self.token)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return left

    def all_running(self, manager, client, count, seconds):
        def running():
            return sum(state == "RUNNING" for state, _ in manager.states(client).values())
        if until(lambda: running() == count, seconds, 0.1) is None:
            self.notes.append(f"{manager.name}: not all {count} programs RUNNING in {seconds} s")

    # -- the figures, a fresh manager each ------------------------------------------------

    def start(self, kind):
        count = self.args.programs
        manager = self.manager(kind, [(f"p{i:03d}", SLEEP, 1, False) for i in range(count)])
        try:
            client, replied = manager.connect(), []

            def call():  # in a thread, while this one watches the pids appear
                try:
                    manager.start_all(client)
                    replied.append(time.perf_counter())
                except FAILURES as exc:
                    self.notes.append(f"{manager.name}: start all failed: {exc}")
            caller = threading.Thread(target=call, daemon=True)
            began = time.perf_counter()
            caller.start()
            until(lambda: len(peers.children(manager.pid)) >= count, 60, 0.0005)
            pids = time.perf_counter() - began
            caller.join(90)
            self.all_running(manager, client, count, 5)
            return {"pids": pids, "running": replied[0] - began if replied else None}
        finally:
            self.stop(manager)

    def idle(self, kind):
        count = 2 * self.args.programs
        manager = self.manager(kind, [(f"p{i:03d}", SLEEP, 1, True) for i in range(count)])
        try:
            self.all_running(manager, manager.connect(), count, 60)
            time.sleep(1)
            cpu, began = peers.cpu_seconds(manager.pid), time.perf_counter()
            time.sleep(self.args.window)
            cpu = peers.cpu_seconds(manager.pid) - cpu
            memory = peers.memory(manager.pid)
            result = {"cpu": 100 * cpu / (time.perf_counter() - began), "rss": memory["VmRSS"],
                      "threads": memory["Threads"], "pidfds": peers.pidfds(manager.pid)}
            result.update(self.status_calls(manager, self.args.reps))
        except BaseException:
            self.stop(manager)
            raise
        result["shutdown"] = self.stop(manager)
        return result

    def status_calls(self, manager, reps):
        cli_reps = max(2, reps // 4)
        if isinstance(manager, Supervisord):
            kept = peers.rpc(manager.socket)
            call = timed(lambda: kept.supervisor.getAllProcessInfo(), reps)
            return {"list": call, "list_json": call,  # XML-RPC is its only form for programs
                    "list_new": timed(lambda: peers.rpc(manager.socket).supervisor
                                      .getAllProcessInfo(), reps),
                    "cli": timed(lambda: command(manager.ctl()), cli_reps)}
        text, json_mode = Wire(manager.port), Wire(manager.port).json_mode()

        def fresh():
            wire = Wire(manager.port)
            wire.ask("proc list")
            wire.close()
        cli = TSHELL + [f"127.0.0.1:{manager.port}", "-c", "proc list"]
        return {"list": timed(lambda: text.ask("proc list"), reps),
                "list_json": timed(lambda: json_mode.ask("proc list"), reps),
                "list_new": timed(fresh, reps),
                "cli": timed(lambda: command(cli), cli_reps)}

    def restart(self, kind):
        manager = self.manager(kind, [("victim", SLEEP, 0, True)])
        try:
            client = manager.connect()
            times = {key: [] for key in ("new_pid", "back", "new_pid_polled", "back_polled")}
            for number in range(self.args.kills):
                polled = "_polled" if number % 2 else ""
                taken = self._kill(manager, client, polled)
                if taken is None:
                    break
                times["new_pid" + polled].append(taken[0])
                times["back" + polled].append(taken[1])
            return {key: median(values) for key, values in times.items()}
        finally:
            self.stop(manager)

    def _kill(self, manager, client, polled):
        """KILL the victim: (seconds to its new pid, seconds to RUNNING), or None."""
        old = until(lambda: running_pid(manager, client), 10, 0.01)
        if old is None:
            self.notes.append(f"{manager.name}: the victim was not RUNNING in 10 s")
            return None
        time.sleep(0.05)  # up longer than smanager's backoff.reset_after
        began, seen = time.perf_counter(), []
        os.kill(old, signal.SIGKILL)

        def back():
            if not seen and peers.children(manager.pid) - {old}:
                seen.append(time.perf_counter() - began)
            if not (seen or polled):
                return False
            state, pid = manager.state(client, "victim")
            if pid not in (None, old) and not seen:  # it came between the two looks
                seen.append(time.perf_counter() - began)
            return state == "RUNNING" and pid not in (None, old)
        if not until(back, 5, 0 if polled else 0.0001):
            self.notes.append(f"{manager.name}: not RUNNING again 5 s after a KILL")
            return None
        return seen[0], time.perf_counter() - began

    def watchers(self, number):
        if sys.version_info >= (3, 12):
            return None  # 3.12 watches children with pidfds itself; the choice is gone
        order = ["threaded", "pidfd"][:: 1 if number % 2 else -1]
        count, kills = 2 * self.args.programs, self.args.kills
        return {kind: peers.probe_watcher(kind, count, kills, self.token) for kind in order}


def running_pid(manager, client):
    state, pid = manager.state(client, "victim")
    return pid if state == "RUNNING" else None


def shown(value, unit, scale):
    if value is None:
        return "-"
    value *= scale
    return f"{value:.0f}" if unit == "" or value >= 100 else f"{value:.3g}"


def watcher_of(result, programs):
    """Which child watcher smanager runs, from what it holds with PROGRAMS children."""
    if result["pidfds"] >= programs:
        return "pidfd"
    return "threaded" if result["threads"] >= programs else "unknown"


def round_line(number, result, watchers):
    def pair(key, scale, unit):
        sv, sm = result["sv"].get(key), result["sm"].get(key)
        return f"{shown(sv, unit, scale)}/{shown(sm, unit, scale)}"
    line = (f"round {number} (supervisord/smanager): start pids {pair('pids', 1, 's')} s, "
            f"RUNNING {pair('running', 1, 's')} s; idle CPU {pair('cpu', 1, '%')} %, "
            f"RSS {pair('rss', 1 / 1024, 'MB')} MB, threads {pair('threads', 1, '')}; "
            f"list {pair('list', 1000, 'ms')} ms, CLI {pair('cli', 1000, 'ms')} ms; restart "
            f"pid {pair('new_pid', 1000, 'ms')} ms, RUNNING {pair('back', 1000, 'ms')} ms "
            f"(status polled: {pair('new_pid_polled', 1000, 'ms')}, "
            f"{pair('back_polled', 1000, 'ms')} ms)")
    if watchers:
        line += f"; watcher threads {watchers['threaded']['Threads']}/1 (threaded/pidfd)"
    print(line, flush=True)


def report(rounds, watchers, args):
    n2 = 2 * args.programs
    print(f"\nmedians of {len(rounds)} rounds, N = {args.programs}; ratio = smanager / "
          "supervisord; lower is better on every row, ratio below 1 favours smanager")
    head = f"{'figure':34} {'supervisord':>11} {'smanager':>9} {'ratio':>7}  {'unit':4}  target"
    print(head + "\n" + "-" * len(head))
    for key, label, unit, scale, target in FIGURES:
        sv, sm = (median([r[kind].get(key) for r in rounds]) for kind in ("sv", "sm"))
        ratio = f"{sm / sv:7.3g}" if sm is not None and sv else "      -"
        met = ("-" if target is None or sm is None else
               f"< {target} {unit}: {'met' if sm * scale < target else 'MISSED'}")
        print(f"{label.format(n=args.programs, n2=n2):34} {shown(sv, unit, scale):>11} "
              f"{shown(sm, unit, scale):>9} {ratio}  {unit:4}  {met}")
    last, kinds = rounds[-1]["sm"], sorted({watcher_of(r["sm"], n2) for r in rounds})
    print(f"smanager's child watcher: {', '.join(kinds)} ({last['threads']} threads and "
          f"{last['pidfds']} pidfds with {n2} programs)")
    if watchers:
        print(f"\nasyncio's child watchers on Python 3.11, a bare process with {n2} children; "
              "ratio = pidfd / threaded, lower is better")
        for key, label, unit, scale in WATCHER_FIGURES:
            th, pf = (median([w[kind][key] for w in watchers]) for kind in ("threaded", "pidfd"))
            print(f"{label:34} threaded {shown(th, unit, scale):>7} {unit:2}  "
                  f"pidfd {shown(pf, unit, scale):>7} {unit:2}  ratio {pf / th:.3g}")


def main():
    end_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supervisord", help="the supervisord to run (default: pip-install one)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and programs")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.programs, args.window = (25, 3.0) if args.quick else (100, 10.0)
    args.reps, args.kills = (8, 10) if args.quick else (20, 20)
    try:
        Supervisord.binary = supervisord_binary(args.supervisord)
        version = command([Supervisord.binary, "--version"]).stdout.decode().strip()
        version = version.splitlines()[0] if version else "of unknown version"
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"no supervisord: {exc}; give --supervisord PATH")
        return 0
    source = source_version()
    changed = " + uncommitted changes" if source["uncommitted"] else ""
    print(f"smanager {source['commit'][:12]}{changed}, supervisord {version}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    rounds, watchers = [], []
    with tempfile.TemporaryDirectory(prefix="bench-proc-") as directory:
        run = Run(args, directory)
        with measuring(run, "managers", "checked by the run's token"):
            for number in range(1, args.rounds + 1):
                kinds = [("sv", Supervisord), ("sm", SManager)][:: 1 if number % 2 else -1]
                result = {"sv": {}, "sm": {}}
                for figure in (run.start, run.idle, run.restart):
                    for key, kind in kinds:
                        result[key].update(figure(kind))
                probe = run.watchers(number)
                rounds.append(result)
                watchers += [probe] if probe else []
                round_line(number, result, probe)
    for note in run.notes:
        print(f"note: {note}")
    if rounds:
        report(rounds, watchers, args)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "proc-latest.json").write_text(json.dumps(
            {"source": source, "supervisord": version, "args": vars(args), "rounds": rounds,
             "watchers": watchers}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
