"""What bench/monitor.py measures smanager's monitor beside: the sample data, the
sqlite floors, collectd, carbon-cache, and the clients that talk to them.

Rules:
- Every peer gets the same samples (``samples``): SERIES series named
  bench.sNN, one sample per series every STEP seconds, interleaved in time as
  collectors hand them on.  Even series carry two decimals (like percentages),
  odd ones whole numbers (like byte counts; sqlite stores those smaller).
- Every server is a subprocess in a session of its own (proc_peers.Manager:
  Ctrl-C reaches only the driver; stop() is SIGTERM, then SIGKILL), on
  127.0.0.1 only, its files in a directory of its own.  smanager takes port 0
  and logs it; carbon-cache cannot take 0 for its line receiver (0 turns it
  off), so it gets a port found free just before; its cache-query port is 0,
  read from its log.
- A text-mode reply ends with MARK; pipelined replies are counted by it.
- ``database`` builds the query benchmark's file once (its name holds a hash
  of rollup.SCHEMA, the data and the builder) and again once the clock has
  moved past what it covers.  Its rows run until a day
  ahead of the build, so one build serves the `since=24h` query for a day.
- Every wait here is bounded in time.
"""

import hashlib
import inspect
import json
import os
import pickle
import re
import socket
import sqlite3
import struct
import sys
import threading
import time
from pathlib import Path

from loadgen import KEEP, MARK, connect
from proc_peers import Manager, SManager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from smanager.metrics import rollup  # (after the path is set)
from smanager.metrics.store import SampleStore

SERIES, STEP, DAY = 50, 10, 86400
FLOOR_BATCH = 1000
AHEAD = DAY  # the built database's rows run this far past its build
RAW_QUERY = ("SELECT ts - ts % 60 AS bucket, avg(value) FROM samples WHERE series = ? "
             "AND ts >= ? AND ts <= ? AND value IS NOT NULL GROUP BY bucket ORDER BY bucket")
BUSY = 60.0  # seconds any one read or wait may take


def series_name(index):
    return f"bench.s{index:02d}"


def value(series, tick):
    if series % 2:
        return float(3_000_000_000 + tick * 1500 + series)
    return (tick * 7919 + series * 104729) % 10000 / 100


def samples(count, end):
    """COUNT samples (series index, ts, value), ticks STEP apart, the last before END."""
    ticks = count // SERIES
    first = end - ticks * STEP
    return [(series, first + tick * STEP, value(series, tick))
            for tick in range(ticks) for series in range(SERIES)]


# -- in-process: the floor and the store ------------------------------------------------

def floor_ingest(path, rows):
    """Plain sqlite3: ROWS into a WITHOUT ROWID table, executemany and a commit per
    FLOOR_BATCH, WAL, synchronous=NORMAL; rows/s."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE samples (series INTEGER NOT NULL, ts INTEGER NOT NULL, "
                   "value REAL, PRIMARY KEY (series, ts)) WITHOUT ROWID")
        began = time.perf_counter()
        for at in range(0, len(rows), FLOOR_BATCH):
            db.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows[at:at + FLOOR_BATCH])
            db.commit()
        return len(rows) / (time.perf_counter() - began)
    finally:
        db.close()


def store_ingest(path, rows):
    """A collector's path: SampleStore.add for every row, then flush(); rows committed
    per second (raw rows and rollups), add() calls per second (queued only), what was
    dropped, and the file's bytes."""
    names = [series_name(series) for series in range(SERIES)]
    named = [(names[series], number, ts) for series, ts, number in rows]
    store = SampleStore(path)
    try:
        add, began = store.add, time.perf_counter()
        for name, number, ts in named:
            add(name, number, ts)
        added = time.perf_counter() - began
        store.flush()
        seconds = time.perf_counter() - began
        written, dropped = store.written, store.dropped
    finally:
        store.close()  # checkpoints the WAL into the file: its size is then the data's
    return {"rate": written / seconds, "add_rate": len(named) / added, "dropped": dropped,
            "bytes": os.path.getsize(path)}


# -- the query benchmark's database -----------------------------------------------------

def database_key(days):
    """What the built file depends on: the schema, the data and how it is built."""
    text = repr((rollup.SCHEMA, SERIES, STEP, days, AHEAD, inspect.getsource(value),
                 inspect.getsource(build_database)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_database(folder, days, now):
    """The path of a database of DAYS days built in FOLDER that still covers NOW, or None."""
    path = Path(folder) / f"monitor-{days}d-{database_key(days)}.db"
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (first, last), = db.execute("SELECT min(ts), max(ts) FROM samples").fetchall()
    # Nothing the server could prune while it runs, and the last 24 h all there.
    return path if first is not None and now - days * DAY + 3600 < first \
        and now + 3600 < last else None


def database(folder, days, now):
    """A database of DAYS of SERIES series at STEP seconds covering NOW: the cached one,
    or one built in FOLDER (replacing older builds); (path, seconds spent building)."""
    path = cached_database(folder, days, now)
    if path is not None:
        return path, 0.0
    for old in Path(folder).glob(f"monitor-{days}d-*.db*"):
        old.unlink()
    path = Path(folder) / f"monitor-{days}d-{database_key(days)}.db"
    began = time.perf_counter()
    build_database(path, days, int(now))
    return path, time.perf_counter() - began


def build_database(path, days, now):
    """The store's tables filled directly: raw rows in time order as the store writes
    them, then the rollups summed from them as rollup._sum_again sums them."""
    building = Path(f"{path}.building")
    building.unlink(missing_ok=True)
    db = sqlite3.connect(building, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = OFF")  # a half-built file is never renamed into use
        db.execute("PRAGMA synchronous = OFF")
        rollup.create(db)
        db.execute("BEGIN")
        db.executemany("INSERT INTO series (id, name) VALUES (?, ?)",
                       [(series + 1, series_name(series)) for series in range(SERIES)])
        end = now + AHEAD - (now + AHEAD) % 3600
        first, ticks = end - days * DAY, days * DAY // STEP
        db.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                       ((series + 1, first + tick * STEP, value(series, tick))
                        for tick in range(ticks) for series in range(SERIES)))
        db.execute("INSERT INTO rollup_1m SELECT series, ts - ts % 60, sum(value), count(value), "
                   "min(value), max(value) FROM samples WHERE value IS NOT NULL "
                   "GROUP BY series, ts - ts % 60")
        db.execute("INSERT INTO rollup_1h SELECT series, ts - ts % 3600, sum(sum), sum(count), "
                   "min(min), max(max) FROM rollup_1m GROUP BY series, ts - ts % 3600")
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode = WAL")
    finally:
        db.close()
    os.replace(building, path)


def raw_query(db, series, now):
    """The floor of `monitor get`: 24 h of one series in one-minute buckets, from the
    raw table, in plain sqlite3; the rows."""
    return db.execute(RAW_QUERY, (series + 1, int(now) - DAY, int(now))).fetchall()


def cpu_clock(pid):
    """PID's CPU time in seconds, all its threads (the dead ones too), to the
    nanosecond: its process CPU clock (clock_getcpuclockid), read from outside."""
    return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9  # CPUCLOCK_SCHED of process PID


# -- the servers ------------------------------------------------------------------------

class MonitorSManager(SManager):
    """smanager whose [service.monitor] keeps its samples in STATE_DIR: the bundled
    collectors DEFAULTS or not, and COLLECTORS (kind names) every INTERVAL seconds."""

    def __init__(self, directory, state_dir, defaults=False, collectors=(), interval=10):
        self.state_dir, self.defaults = Path(state_dir), defaults
        self.collectors, self.interval = collectors, interval
        super().__init__(directory, [], None)

    def argv(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lines = ["[service.monitor]", f"state_dir = {json.dumps(str(self.state_dir))}",
                 f"defaults = {str(self.defaults).lower()}", ""]
        for kind in self.collectors:
            lines += [f"[service.monitor.collectors.{kind}]", f'collector = "{kind}"',
                      f"interval = {self.interval}", ""]
        (self.dir / "smanager.toml").write_text("\n".join(lines))
        return [sys.executable, "-m", "smanager", "--host", "127.0.0.1", "--port", "0",
                "--config", str(self.dir / "smanager.toml")]


COLLECTD_PLUGINS = ("cpu", "memory", "load", "df", "disk", "interface", "tcpconns", "processes")


class Collectd(Manager):
    """collectd in the foreground: COLLECTD_PLUGINS every INTERVAL s, written as CSV."""

    name = "collectd"
    binary = "/usr/sbin/collectd"

    def __init__(self, directory, interval=10):
        self.interval = interval
        super().__init__(directory, [], None)

    def argv(self):
        conf, log = self.dir / "collectd.conf", self.dir / "collectd.log"
        lines = [f"Interval {self.interval}", f'BaseDir "{self.dir}"',
                 f'PIDFile "{self.dir / "collectd.pid"}"', "LoadPlugin logfile",
                 f'<Plugin logfile>\n  LogLevel info\n  File "{log}"\n</Plugin>',
                 *(f"LoadPlugin {plugin}" for plugin in (*COLLECTD_PLUGINS, "csv")),
                 # tcpconns: all connections by state, as smanager's tcp collector counts them
                 "<Plugin tcpconns>\n  ListeningPorts false\n  AllPortsSummary true\n</Plugin>",
                 f'<Plugin csv>\n  DataDir "{self.dir / "csv"}"\n  StoreRates true\n</Plugin>']
        conf.write_text("\n".join(lines) + "\n")
        return [self.binary, "-f", "-C", str(conf)]

    def _until_ready(self, deadline):
        log = self.dir / "collectd.log"
        while time.monotonic() < deadline:
            self._dead("starting")
            if log.exists() and "entering read-loop" in log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"collectd did not start in 60 s: {self.last_words()}")


class Carbon(Manager):
    """Graphite's carbon-cache in the foreground: a plaintext line receiver, whisper
    files of 10 s for 14 days, its cache readable on the cache-query port."""

    name = "carbon"
    binary = "/usr/bin/carbon-cache"

    def __init__(self, directory):
        super().__init__(directory, [], None)

    def argv(self):
        with socket.socket() as probe:  # carbon cannot take port 0 for its line receiver
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.whisper = self.dir / "storage" / "whisper"
        settings = {"STORAGE_DIR": self.dir / "storage", "LOCAL_DATA_DIR": self.whisper,
                    "CONF_DIR": self.dir, "LOG_DIR": self.dir / "log", "PID_DIR": self.dir,
                    "USER": "", "MAX_CACHE_SIZE": "inf", "LINE_RECEIVER_INTERFACE": "127.0.0.1",
                    "LINE_RECEIVER_PORT": self.port, "ENABLE_UDP_LISTENER": "False",
                    "PICKLE_RECEIVER_PORT": 0,  # 0: off
                    "CACHE_QUERY_INTERFACE": "127.0.0.1", "CACHE_QUERY_PORT": 0}
        (self.dir / "carbon.conf").write_text(
            "[cache]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
        (self.dir / "storage-schemas.conf").write_text(
            f"[bench]\npattern = .*\nretentions = {STEP}s:14d\n")
        return [self.binary, f"--config={self.dir / 'carbon.conf'}", "--nodaemon", "start"]

    def _until_ready(self, deadline):
        while time.monotonic() < deadline:
            self._dead("starting")
            text = (self.dir / "manager.log").read_text(errors="replace")
            found = re.search(r"ServerFactory starting on (\d+)", text)
            if found and f"ReceiverFactory starting on {self.port}" in text:
                self.query_port = int(found.group(1))
                return
            time.sleep(0.05)
        raise RuntimeError(f"carbon-cache did not start in 60 s: {self.last_words()}")

    def received(self, query, metric):
        """METRIC reached carbon: in its cache (query: a cache-query connection), or
        already written to its whisper file."""
        request = pickle.dumps({"type": "cache-query", "metric": metric}, protocol=2)
        query.sendall(struct.pack("!L", len(request)) + request)
        (length,) = struct.unpack("!L", _read_exactly(query, 4))
        if pickle.loads(_read_exactly(query, length))["datapoints"]:
            return True
        return (self.whisper / (metric.replace(".", "/") + ".wsp")).exists()


def _read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        data += chunk
    return data


# -- the clients ------------------------------------------------------------------------

def push_pipelined(port, payload, count):
    """PAYLOAD (COUNT request lines) written in one go on one new connection, replies
    read as they arrive; (seconds from the first write to the last reply, the replies)."""
    sock = connect("127.0.0.1", port, BUSY)
    sock.setblocking(True)
    sock.settimeout(BUSY)
    failed = []

    def write():
        try:
            sock.sendall(payload)
        except OSError as exc:
            failed.append(exc)
    writer = threading.Thread(target=write, daemon=True)
    chunks, found, tail = [], 0, b""
    try:
        began = time.perf_counter()
        writer.start()
        while found < count:
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise ConnectionError(f"smanager closed the connection after {found} replies")
            chunks.append(chunk)
            window = tail + chunk
            found += window.count(MARK)
            tail = window[-KEEP:]
        seconds = time.perf_counter() - began
        writer.join(BUSY)
    finally:
        sock.close()
    if failed:
        raise failed[0]
    return seconds, b"".join(chunks).split(MARK)[:count]


def carbon_ingest(carbon, payload, sentinel):
    """PAYLOAD (plaintext lines) on one new connection to carbon's line receiver, then
    the line of metric SENTINEL; seconds until SENTINEL is received (carbon reads one
    connection's lines in order, so every line before it is too)."""
    with socket.create_connection(("127.0.0.1", carbon.query_port), timeout=BUSY) as query, \
            socket.create_connection(("127.0.0.1", carbon.port), timeout=BUSY) as lines:
        began = time.perf_counter()
        lines.sendall(payload + f"{sentinel} 1 {int(time.time())}\n".encode())
        while not carbon.received(query, sentinel):
            if time.perf_counter() - began > BUSY:
                raise TimeoutError(f"carbon-cache did not take {sentinel} in {BUSY:g} s")
            time.sleep(0.002)
        return time.perf_counter() - began
