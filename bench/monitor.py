"""monitor against plain sqlite3, carbon-cache and collectd: side by side, in one run.

    python3 bench/monitor.py              # 5 rounds; 60 s of collector CPU; ~2 min
    python3 bench/monitor.py --quick      # 3 smaller rounds; 30 s of collector CPU; ~50 s
    python3 bench/monitor.py --parts 1,3  # some of the four parts only

Four parts, each with its own peers, measured back to back in every round (the
order rotated every round), from the same samples (monitor_peers.samples):

1. ingest:     SampleStore.add for N samples across 50 series, then flush():
               rows committed per second, rollups included; against plain sqlite3
               (executemany, a commit per 1,000 rows, WAL, synchronous=NORMAL,
               WITHOUT ROWID (series, ts)), the floor.
2. push:       `monitor push NAME VALUE TS` lines written in one go on one TCP
               connection to `python -m smanager`, replies read as they arrive:
               samples/s until the last reply; against part 1's in-process rate,
               carbon-cache's line receiver (`NAME VALUE TS` lines on one
               connection, until a last line's metric is in its cache), and
               as many `systemstatus echo hi` lines: the command path alone.
3. query:      `monitor get bench.sNN since=24h step=1m` over the wire, text and
               JSON mode, on 14 days of 50 series at 10 s (6 M raw rows, built
               once and kept in the scratch directory); against SampleStore.get
               in-process and the same 24 h of one-minute buckets in plain
               sqlite3 on the raw table.  Median of the asks of each round.
4. collectors: one smanager running the 8 bundled system collectors every 10 s,
               one whose monitor has none (defaults = false), and collectd with
               the matching 8 plugins writing CSV, all at once: each one's CPU
               over the same window after a warm-up (utime + stime from
               /proc/PID/stat, and its process CPU clock), split into 3 rounds,
               and its RSS.

It prints a line per round, then one table of medians, ratios and targets, and
saves every round to bench/results/monitor-latest.json.  A measurement, not a
test: it asserts nothing and exits 0.  Every peer is stopped at the end, even on
an error, Ctrl-C or SIGTERM; then any process still alive whose command line
holds the run's directory is killed and named.
"""

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import monitor_peers as peers
from figures import end_on_sigterm, fmt, measuring, median, ratio
from monitor_peers import SERIES, STEP, Carbon, Collectd, MonitorSManager, SampleStore
from proc_peers import Wire, cpu_seconds, memory
from scripts_peers import leftovers
from servers import ROOT, TICK, source_version

RESULTS = ROOT / "bench" / "results"
SYSTEM = ("cpu", "mem", "load", "disk", "diskio", "net", "tcp", "procs")
ECHO = b"systemstatus echo hi\n"
ISSUE = {"floor": 384_000, "raw query ms": 2.5}  # the issue's reference figures


def rotated(kinds, number):
    """KINDS in the order round NUMBER measures them: each goes first in turn."""
    return kinds[number % len(kinds):] + kinds[:number % len(kinds)]


class Run:
    """One benchmark run: its settings, its directory, every peer still up, its notes."""

    def __init__(self, args):
        self.args, self.live, self.notes = args, [], []
        self.dir = Path(tempfile.mkdtemp(prefix="bench-monitor-", dir=args.scratch))

    def peer(self, kind, name, *options, **settings):
        (self.dir / name).mkdir()
        peer = kind(self.dir / name, *options, **settings)
        self.live.append(peer)
        return peer

    def stop(self, peer):
        peer.stop()
        self.live.remove(peer)

    def stop_all(self):
        for peer in list(self.live):
            self.stop(peer)

    def sweep(self):
        """Stop every peer still up, then KILL and name any process of the run left."""
        self.stop_all()
        left = leftovers(str(self.dir))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        return left

    def monitor_answers(self, server, line):
        """Whether smanager's monitor answers LINE; if not, a note says what it said."""
        wire = Wire(server.port)
        try:
            reply = wire.ask(line)
        finally:
            wire.close()
        if reply.startswith("ERROR"):
            self.notes.append(f"smanager: `{line}` answers {reply.strip()[:200]}")
            return False
        return True


def part_ingest(run, args):
    rows = peers.samples(args.samples, int(time.time()) - 60)
    rounds = []
    for number in range(1, args.rounds + 1):
        result = {}
        for kind in rotated(["floor", "store"], number):
            path = run.dir / f"ingest-{kind}-{number}.db"
            gc.collect()
            result[kind] = (peers.store_ingest(path, rows) if kind == "store"
                            else {"rate": peers.floor_ingest(path, rows)})
            for leftover in run.dir.glob(f"ingest-{kind}-{number}.db*"):
                leftover.unlink()
        store = result["store"]
        store["bytes_per_day"] = store["bytes"] / SERIES / (len(rows) // SERIES * STEP / 86400)
        print(f"round {number} ingest: sqlite3 floor {fmt(result['floor']['rate'])} rows/s, "
              f"SampleStore add+flush {fmt(store['rate'])} rows/s ({store['dropped']} dropped)",
              flush=True)
        rounds.append(result)
    return rounds


def push_payloads(count, block):
    """kind -> its COUNT lines: the same samples as smanager push lines and as carbon
    lines, and as many echo lines; BLOCK picks the samples' seconds, so that no round's
    samples replace another's."""
    span = count // SERIES * STEP
    rows = peers.samples(count, int(time.time()) - 60 - block * span)
    named = [(peers.series_name(series), ts, number) for series, ts, number in rows]
    return {"smanager": "".join(f"monitor push {name} {number!r} {ts}\n"
                                for name, ts, number in named).encode(),
            "carbon": "".join(f"{name} {number!r} {ts}\n" for name, ts, number in named).encode(),
            "echo": ECHO * count}


def push_smanager(server, payload, count):
    cpu = cpu_seconds(server.pid)
    seconds, replies = peers.push_pipelined(server.port, payload, count)
    cpu = cpu_seconds(server.pid) - cpu
    errors = [reply for reply in replies if reply.startswith(b"ERROR")]
    return {"rate": None if errors else count / seconds, "cpu_us": 1e6 * cpu / count,
            "errors": len(errors), "first_error": errors[0][:200].decode() if errors else None}


def push_carbon(carbon, payload, count, sentinel):
    cpu = cpu_seconds(carbon.pid)
    seconds = peers.carbon_ingest(carbon, payload, sentinel)
    return {"rate": count / seconds, "cpu_us": 1e6 * (cpu_seconds(carbon.pid) - cpu) / count}


def part_push(run, args):
    count, kinds = args.pushes, []
    server = run.peer(MonitorSManager, "push", run.dir / "push" / "state")
    if run.monitor_answers(server, "monitor push bench.probe 1"):
        kinds.append("smanager")
    if os.access(Carbon.binary, os.X_OK):
        carbon = run.peer(Carbon, "carbon")
        kinds.append("carbon")
    else:
        run.notes.append(f"no carbon-cache at {Carbon.binary}: push has no carbon peer")
    kinds.append("echo")  # the command path alone, on the same server
    measure = {"smanager": lambda lines, number: push_smanager(server, lines["smanager"], count),
               "echo": lambda lines, number: push_smanager(server, lines["echo"], count),
               "carbon": lambda lines, number: push_carbon(carbon, lines["carbon"], count,
                                                          f"bench.sentinel.r{number}")}
    warm = push_payloads(count, 0)  # a fresh server runs slower for its first seconds
    for kind in kinds:
        measure[kind](warm, 0)
    rounds = []
    for number in range(1, args.rounds + 1):
        payloads = push_payloads(count, number)
        result = {kind: measure[kind](payloads, number) for kind in rotated(kinds, number)}
        print(f"round {number} push: " + "; ".join(
            f"{kind} {fmt(r['rate'])}/s, {fmt(r['cpu_us'], 1)} us CPU each"
            + (f" ({r['errors']} error replies: {r['first_error']})" if r.get("errors") else "")
            for kind, r in result.items()), flush=True)
        rounds.append(result)
    return rounds


def timed(ask, times):
    """The median milliseconds of TIMES calls of ask(series), the series going round."""
    spent = []
    for number in range(times):
        began = time.perf_counter()
        ask(number % SERIES)
        spent.append(time.perf_counter() - began)
    return 1000 * statistics.median(spent)


def part_query(run, args, database):
    state = run.dir / "query-state"
    state.mkdir(parents=True)
    shutil.copyfile(database, state / "metrics.db")
    server = run.peer(MonitorSManager, "query", state)
    line = "monitor get {} since=24h step=1m"
    raw = sqlite3.connect(database)
    store = SampleStore(database)
    asks = {"sqlite3 raw": lambda series: peers.raw_query(raw, series, time.time()),
            "SampleStore.get": lambda series: store.get(peers.series_name(series),
                                                        time.time() - 86400, step=60)}
    wires = []
    try:
        if run.monitor_answers(server, line.format(peers.series_name(0))):
            text, in_json = Wire(server.port), Wire(server.port).json_mode()
            wires = [text, in_json]
            asks["wire text"] = lambda series: text.ask(line.format(peers.series_name(series)))
            asks["wire JSON"] = lambda series: in_json.ask(line.format(peers.series_name(series)))
            points = in_json.ask(line.format(peers.series_name(0)))["result"]["points"]
            print(f"query: {len(points)} buckets over the wire, "
                  f"{len(peers.raw_query(raw, 0, time.time()))} from the raw rows", flush=True)
        kinds = list(asks)
        rounds = []
        for number in range(1, args.rounds + 1):
            result = {kind: timed(asks[kind], args.asks) for kind in rotated(kinds, number)}
            print(f"round {number} query (median of {args.asks}): " + "; ".join(
                f"{kind} {fmt(ms, 2)} ms" for kind, ms in result.items()), flush=True)
            rounds.append(result)
        return rounds
    finally:
        for wire in wires:
            wire.close()
        store.close()
        raw.close()


def part_collectors(run, args):
    """The three processes side by side; per window, each one's CPU seconds by ticks
    and by its CPU clock; RSS at the end."""
    procs = {"collectd": run.peer(Collectd, "collectd", STEP),
             "smanager": run.peer(MonitorSManager, "collecting", run.dir / "collecting" / "state",
                                  collectors=SYSTEM, interval=STEP),
             "idle baseline": run.peer(MonitorSManager, "idle", run.dir / "idle" / "state")}
    for name in ("smanager", "idle baseline"):
        if not run.monitor_answers(procs[name], "monitor list"):
            del procs[name]
    print(f"collectors: {args.warmup:g} s of warm-up, then {args.windows} windows of "
          f"{args.window:g} s", flush=True)
    time.sleep(args.warmup)

    def reading():
        return {name: (cpu_seconds(proc.pid), peers.cpu_clock(proc.pid))
                for name, proc in procs.items()}
    windows, first = [], reading()
    before, began = first, time.perf_counter()
    for number in range(1, args.windows + 1):
        start = time.perf_counter()
        time.sleep(args.window)
        after = reading()
        windows.append(cpu_shares(before, after, time.perf_counter() - start))
        print(f"round {number} collectors: " + "; ".join(
            f"{name} {w['ticks']} ticks = {fmt(w['percent'], 2)} % (clock "
            f"{fmt(w['clock_percent'], 3)} %)" for name, w in windows[-1].items()), flush=True)
        before = after
    whole = cpu_shares(first, before, time.perf_counter() - began)
    rss = {name: memory(proc.pid)["VmRSS"] / 1024 for name, proc in procs.items()}
    return {"windows": windows, "whole": whole, "rss_mb": rss}


def cpu_shares(before, after, seconds):
    """name -> CPU over SECONDS between two readings: ticks, and % of one core by them
    and by the CPU clock."""
    return {name: {"ticks": round((after[name][0] - before[name][0]) * TICK),
                   "percent": 100 * (after[name][0] - before[name][0]) / seconds,
                   "clock_percent": 100 * (after[name][1] - before[name][1]) / seconds}
            for name in after}


def part_database(args):
    """The query benchmark's file: (path, its days, seconds spent building it)."""
    now = time.time()
    days = args.days or (14 if not args.quick or peers.cached_database(args.scratch, 14, now)
                         else 2)  # --quick builds 2 days (~2 s) unless 14 are at hand
    print(f"query database: {days} days of {SERIES} series every {STEP} s in {args.scratch}",
          flush=True)
    path, built = peers.database(args.scratch, days, now)
    print(f"  {'built in ' + fmt(built, 1) + ' s' if built else 'cached'}: "
          f"{fmt(os.path.getsize(path) / 2**20, 1)} MB", flush=True)
    return path, days, built


# -- the table --------------------------------------------------------------------------

def at_least(text, value, least):
    return text, None if value is None else value >= least


def at_most(text, value, most):
    return text, None if value is None else value <= most


def rows_of(results):
    """(part, figure, smanager, peer, theirs, digits, paired ratio, target (text, met))."""
    rows, ingest, push = [], results.get("ingest"), results.get("push")
    get = lambda rounds, kind, key: median([r.get(kind, {}).get(key) for r in rounds])
    if ingest:
        ours, floor = get(ingest, "store", "rate"), get(ingest, "floor", "rate")
        paired = median([ratio(r["store"]["rate"], r["floor"]["rate"]) for r in ingest])
        rows.append(("1", "ingest: rows/s committed", ours, "sqlite3 executemany", floor, 0,
                     paired, at_least("ratio >= 0.5", ratio(ours, floor), 0.5)))
    if push:
        ours = get(push, "smanager", "rate")
        target = at_least("push >= 50,000/s", ours, 50_000)
        if ingest:
            paired = median([ratio(p.get("smanager", {}).get("rate"), i["store"]["rate"])
                             for p, i in zip(push, ingest)])
            rows.append(("2", "push over TCP: samples/s", ours, "SampleStore add+flush",
                         get(ingest, "store", "rate"), 0, paired, target))
            rows.append(("2", "push over TCP: samples/s", ours, "SampleStore.add alone",
                         get(ingest, "store", "add_rate"), 0, None, None))
        paired = median([ratio(r.get("smanager", {}).get("rate"), r.get("carbon", {}).get("rate"))
                         for r in push])
        rows.append(("2", "push over TCP: samples/s", ours, "carbon-cache lines",
                     get(push, "carbon", "rate"), 0, paired, target))
        paired = median([ratio(r.get("smanager", {}).get("rate"), r["echo"]["rate"])
                         for r in push])
        rows.append(("2", "push over TCP: samples/s", ours, "pipelined echo",
                     get(push, "echo", "rate"), 0, paired, None))
        for peer, name in (("carbon", "carbon-cache"), ("echo", "pipelined echo")):
            rows.append(("2", "push: server CPU us/sample", get(push, "smanager", "cpu_us"),
                         name, get(push, peer, "cpu_us"), 1, None, None))
    if query := results.get("query"):
        rounds = query["rounds"]
        get_ms = lambda kind: median([r.get(kind) for r in rounds])
        for kind in ("wire text", "wire JSON", "SampleStore.get"):
            paired = median([ratio(r.get(kind), r["sqlite3 raw"]) for r in rounds])
            target = None if kind == "SampleStore.get" else at_most("<= 10 ms", get_ms(kind), 10)
            rows.append(("3", f"get since=24h step=1m, {kind}: ms", get_ms(kind),
                         "sqlite3 on raw rows", get_ms("sqlite3 raw"), 2, paired, target))
        rows.append(("3", f"bytes/metric/day, the {query['days']}-day file", query["per_day"],
                     "", None, 0, None, None))
    if ingest:
        rows.append(("1", "bytes/metric/day, written by the store", median(
            [r["store"]["bytes_per_day"] for r in ingest]), "", None, 0, None, None))
    if collecting := results.get("collectors"):
        whole, windows, rss = collecting["whole"], collecting["windows"], collecting["rss_mb"]
        for name in ("smanager", "idle baseline"):
            for key, how in (("percent", "ticks"), ("clock_percent", "CPU clock")):
                ours, theirs = whole.get(name, {}).get(key), whole["collectd"][key]
                paired = median([ratio(w.get(name, {}).get(key), w["collectd"][key])
                                 for w in windows])
                target = at_most("ratio <= 2", ratio(ours, theirs), 2) \
                    if name == "smanager" else None
                rows.append(("4", f"{name}: CPU % of a core ({how})", ours, "collectd",
                             theirs, 3, paired, target))
            rows.append(("4", f"{name}: RSS MB", rss.get(name), "collectd", rss["collectd"],
                         1, None, None))
    return rows


def report(results, args):
    print(f"\nmedians of {args.rounds} rounds (part 4: the whole window; paired: the median "
          "of the per-round ratios); ratio = smanager / peer")
    head = (f"{'part':4} {'figure':46} {'smanager':>10}  {'peer':22} {'peer':>10} {'ratio':>7} "
            f"{'paired':>7}  target")
    print(head + "\n" + "-" * len(head))
    for part, figure, ours, name, theirs, digits, paired, target in rows_of(results):
        verdict = "" if target is None else (
            f"{target[0]}: {'-' if target[1] is None else 'met' if target[1] else 'MISSED'}")
        print(f"{part:4} {figure:46} {fmt(ours, digits):>10}  {name:22} "
              f"{fmt(theirs, digits):>10} {fmt(ratio(ours, theirs), 2):>7} "
              f"{fmt(paired, 2):>7}  {verdict}")
    if collecting := results.get("collectors"):
        ticks = ", ".join(f"{name} {w['ticks']}" for name, w in collecting["whole"].items())
        span = args.windows * args.window
        print(f"part 4 ticks over {span:g} s: {ticks} (one tick = {100 / TICK / span:.3f} % "
              "of a core over that window)")
    print(f"the issue's figures: the sqlite3 floor ~{ISSUE['floor']:,} rows/s, the raw query "
          f"{ISSUE['raw query ms']} ms (this machine, another day)")


def main():
    end_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds (default 5, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts, e.g. 1,3")
    parser.add_argument("--days", type=int, help="days in the query database (default 14; "
                        "2 with --quick unless a 14-day one is cached)")
    scratch = os.path.join(tempfile.gettempdir(), "smanager-bench-monitor")
    parser.add_argument("--scratch", default=scratch, help="the run's files and the cached "
                        f"query database go here (default {scratch})")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.samples = args.pushes = 20_000 if args.quick else 100_000
    args.asks = 20 if args.quick else 50
    args.warmup, args.window, args.windows = (10.0, 10.0, 3) if args.quick else (20.0, 20.0, 3)
    parts = {part.strip() for part in args.parts.split(",")}
    os.makedirs(args.scratch, exist_ok=True)
    source = source_version()
    changed = " + uncommitted changes" if source["uncommitted"] else ""
    print(f"smanager {(source['commit'] or '?')[:12]}{changed}, Python "
          f"{platform.python_version()}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs",
          flush=True)
    results, run = {}, Run(args)
    with measuring(run, "peers", "checked by the run's directory"):
        if "1" in parts:
            results["ingest"] = part_ingest(run, args)
        if "2" in parts:
            results["push"] = part_push(run, args)
            run.stop_all()
        if "3" in parts:
            path, days, built = part_database(args)
            results["query"] = {"days": days, "built_seconds": built,
                                "per_day": os.path.getsize(path) / SERIES / days,
                                "rounds": part_query(run, args, path)}
            run.stop_all()
        if "4" in parts and os.access(Collectd.binary, os.X_OK):
            results["collectors"] = part_collectors(run, args)
        elif "4" in parts:
            run.notes.append(f"no collectd at {Collectd.binary}: part 4 not measured")
    for note in run.notes:
        print(f"note: {note}")
    if results:
        report(results, args)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "monitor-latest.json").write_text(json.dumps(
            {"source": source, "python": platform.python_version(), "args": vars(args),
             "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
