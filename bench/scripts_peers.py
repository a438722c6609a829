"""What bench/scripts.py runs a trivial script with, and the clients that drive each.

Rules:
- Every peer and every client is a subprocess in a session of its own (Ctrl-C
  reaches only the driver, which then stops them), on loopback only.  smanager
  listens on 127.0.0.1 port 0 (proc_peers' SManager finds the port in its log),
  webhook on 127.0.0.1 port 0 too (found in /proc: it does not say it).
- They all run the same file, DIR/scripts/hi.sh, in that directory, with an
  environment of PATH, LANG and HOME only: smanager builds that one itself,
  webhook is started under `env -i` with it (it passes its own environment
  on), and the floor gives it explicitly.
- A client prints "start" and "stop" at the edges of its measured window (so
  the driver reads the peer's CPU over the same span), then one JSON object
  with loadgen.py's keys.  Only runs that end inside the window count; a
  run's latency is from its request (or spawn) to its whole reply (or exit).
- ``leftovers(marker)`` names every live process whose command line holds
  the run's directory: the peers, the clients and every script they spawned.
- Every wait here is bounded in time.

    python bench/scripts_peers.py http --port P --conns 10 --duration 4 --warmup 1
    python bench/scripts_peers.py floor --watcher pidfd --script DIR/scripts/hi.sh --conns 10
"""

import argparse
import asyncio
import json
import os
import selectors
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager

import proc_peers
from loadgen import Conn, cpu_seconds, percentile, send
from proc_peers import Manager, SManager, alive, stat_fields

HI = "#!/bin/sh\necho hi\n"
SCRIPT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LANG": "C.UTF-8", "HOME": os.path.expanduser("~")}
JOJO = """#!/bin/sh
# -- jojo --
# description: idle script {number}: report the state of thing {number}
# param: thing - what to look at (pattern=[a-z0-9]+, default=all)
# tags: bench, group{group}
# -- jojo --
echo "$THING"
"""


def write_scripts(folder, count):
    """FOLDER/hi.sh, and COUNT - 1 more scripts with a jojo block each."""
    folder.mkdir(parents=True)
    for number in range(count):
        path = folder / ("hi.sh" if number == 0 else f"idle{number:03d}.sh")
        path.write_text(HI if number == 0 else JOJO.format(number=number, group=number % 7))
        path.chmod(0o755)


@contextmanager
def placed(cpu):
    """Processes started inside run on CPU only (they inherit the driver's affinity)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def children_cpu_seconds(pid):
    """cutime + cstime: the CPU of PID's children it has reaped (the scripts)."""
    fields = stat_fields(pid)
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def leftovers(marker):
    """Live processes, other than this one, whose command line holds MARKER."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read() and alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


# -- the peers --------------------------------------------------------------------------

class ScriptsSManager(SManager):
    """smanager with [service.scripts] over SCRIPTS_DIR (or none), its state in
    STATE_DIR (default: a directory of its own), under cProfile if asked."""

    def __init__(self, directory, name, scripts_dir=None, profile=None, state_dir=None):
        self.name, self.scripts_dir, self.profile = name, scripts_dir, profile
        self.state_dir = state_dir
        super().__init__(directory, [], None)

    def argv(self):
        state_dir = self.state_dir or self.dir / "state"
        lines = [] if self.scripts_dir is None else [
            "[service.scripts]", f"dir = {json.dumps(str(self.scripts_dir))}",
            f"state_dir = {json.dumps(str(state_dir))}"]
        (self.dir / "smanager.toml").write_text("\n".join(lines) + "\n")
        python = [sys.executable] + (["-m", "cProfile", "-o", str(self.profile)]
                                     if self.profile else [])
        return python + ["-m", "smanager", "--host", "127.0.0.1", "--port", "0",
                         "--config", str(self.dir / "smanager.toml")]

    def cpu_seconds(self):  # what bench/run.py's measure() reads
        return proc_peers.cpu_seconds(self.pid)


class Webhook(Manager):
    """Debian's webhook serving the hook "hi": DIRECTORY's hi.sh, output in the response."""

    name = "webhook"
    binary = "/usr/bin/webhook"

    def __init__(self, directory, scripts_dir):
        self.scripts_dir = scripts_dir
        super().__init__(directory, [], None)

    def argv(self):
        hooks = [{"id": "hi", "execute-command": str(self.scripts_dir / "hi.sh"),
                  "command-working-directory": str(self.scripts_dir),
                  "include-command-output-in-response": True}]
        (self.dir / "hooks.json").write_text(json.dumps(hooks))
        env = [f"{key}={value}" for key, value in SCRIPT_ENV.items()]
        return ["env", "-i", *env, self.binary, "-hooks", str(self.dir / "hooks.json"),
                "-ip", "127.0.0.1", "-port", "0"]

    def _until_ready(self, deadline):
        while time.monotonic() < deadline:
            self._dead("starting")
            self.port = listening_port(self.pid)
            if self.port:
                return
            time.sleep(0.02)
        raise RuntimeError(f"webhook did not listen in 60 s: {self.last_words()}")


def listening_port(pid):
    """The TCP port PID listens on (IPv4), from its fds and /proc/PID/net/tcp; or None."""
    inodes = set()
    try:
        for entry in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{entry}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open(f"/proc/{pid}/net/tcp") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return int(fields[1].rsplit(":", 1)[1], 16)
    except OSError:
        pass
    return None


# -- the clients ------------------------------------------------------------------------

def _summary(completed, errors, closed, samples, wall, cpu, conns):
    samples.sort()
    ms = lambda value: None if value is None else round(value * 1000, 3)
    return {"conns": conns, "requests": completed, "seconds": round(wall, 4),
            "throughput": round(completed / wall, 1),
            "p50_ms": ms(percentile(samples, completed, 0.50)),
            "p99_ms": ms(percentile(samples, completed, 0.99)),
            "cpu_seconds": round(cpu, 4), "cpu_percent": round(100 * cpu / wall, 1),
            "error_replies": errors, "closed_by_server": closed}


def _responses(conn):
    """Whole HTTP responses at the front of conn.tail, taken off it: (count, not 200)."""
    count = bad = 0
    while (head_end := conn.tail.find(b"\r\n\r\n")) >= 0:
        head = conn.tail[:head_end].lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            raise ConnectionError("a response without Content-Length")
        length = int(head[at + 17:].split(b"\r\n", 1)[0])
        if len(conn.tail) < head_end + 4 + length:
            break
        bad += head[9:12] != b"200"
        conn.tail = conn.tail[head_end + 4 + length:]
        count += 1
    return count, bad


def http_run(port, conns, path, duration, warmup, sync):
    """Closed loop over kept HTTP/1.1 connections: one GET in flight per connection."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    clients = []
    for _ in range(conns):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        clients.append(Conn(sock))
    selector = selectors.DefaultSelector()
    samples, completed, errors, closed, measuring = [], 0, 0, 0, False
    clock = time.perf_counter
    now = clock()
    begin, end = now + warmup, now + warmup + duration
    for conn in clients:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.sent_at = clock()
        send(conn, request)
    while now < end and closed < conns:
        if not measuring and now >= begin:
            measuring, begin, cpu0 = True, now, cpu_seconds()
            if sync:
                print("start", flush=True)
        for key, _ in selector.select(min(0.05, end - now)):
            conn = key.data
            data = conn.sock.recv(65536)
            now = clock()
            if not data:
                selector.unregister(conn.sock)
                closed += 1
                continue
            conn.tail += data
            arrived, bad = _responses(conn)
            if arrived and measuring:
                completed += arrived
                errors += bad
                samples.append((now - conn.sent_at, arrived))
            if arrived and now < end:
                conn.sent_at = clock()
                send(conn, request)
        now = clock()
    if not measuring:
        begin, cpu0 = now, cpu_seconds()
    cpu, wall = cpu_seconds() - cpu0, max(clock() - begin, 1e-9)
    if sync:
        print("stop", flush=True)
    for conn in clients:
        conn.sock.close()
    return _summary(completed, errors, closed, samples, wall, cpu, conns)


async def floor_run(script, watcher, conns, duration, warmup, sync):
    """The floor: CONNS tasks in one bare asyncio process, each spawning SCRIPT as
    smanager does (own session, pipes for stdout and stderr, stdin from /dev/null,
    SCRIPT_ENV, in its directory) and reading it to the end, again and again."""
    if watcher == "pidfd":  # else 3.11's default, the ThreadedChildWatcher
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pidfd = asyncio.PidfdChildWatcher()
            pidfd.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(pidfd)
    window, samples, errors = [None, None], [], [0]

    async def client():
        while window[1] is None or time.perf_counter() < window[1]:
            began = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                script, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=SCRIPT_ENV, cwd=os.path.dirname(script), start_new_session=True)
            out, _ = await proc.communicate()
            done = time.perf_counter()
            if window[0] is not None and done >= window[0] and (window[1] is None or done < window[1]):
                samples.append((done - began, 1))
                errors[0] += proc.returncode != 0 or out != b"hi\n"
    tasks = [asyncio.create_task(client()) for _ in range(conns)]
    try:
        await asyncio.sleep(warmup)
        window[0], cpu0 = time.perf_counter(), cpu_seconds()
        if sync:
            print("start", flush=True)
        window[1] = window[0] + duration
        await asyncio.sleep(duration)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - window[0]
        if sync:
            print("stop", flush=True)
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return _summary(len(samples), errors[0], 0, samples, wall, cpu, conns)


def main(argv=None):
    parser = argparse.ArgumentParser(description="the clients of bench/scripts.py")
    parser.add_argument("kind", choices=["http", "floor"])
    parser.add_argument("--port", type=int, help="http: the server's port")
    parser.add_argument("--path", default="/hooks/hi", help="http: the URL path to GET")
    parser.add_argument("--script", help="floor: the script to spawn")
    parser.add_argument("--watcher", choices=["threaded", "pidfd"], default="threaded")
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--sync", action="store_true", help="print start/stop lines")
    args = parser.parse_args(argv)
    if args.kind == "http":
        result = http_run(args.port, args.conns, args.path, args.duration, args.warmup, args.sync)
    else:
        result = asyncio.run(floor_run(args.script, args.watcher, args.conns, args.duration,
                                       args.warmup, args.sync))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
