"""Many clients that ask little: idle connections' memory, and latency beside blocking work.

Rules:
1. ``idle_memory(server, count)``: ``count`` connections opened from this
   process (non-blocking, in waves of WAVE), each kept once its banner has
   arrived, none sending anything.  The server's VmRSS is read before and once
   all are open; the connections are closed after.  Target: 10,000 idle
   connections stay under IDLE_RSS_MB of RSS.
2. ``latency_beside_blocking(server, ...)``: a trivial command
   (``systemstatus echo hi``, one connection, one request in flight, the
   bench's generator) alone, then while BLOCKERS other clients each loop on a
   1-second plain command (``benchnap nap``, a ``concurrent`` service, so all
   ten block a worker thread at once).  Target: its p99 stays under P99_MS.
   The naps finished during the window are counted, to show they ran.
3. Every wait is bounded; every socket opened here is closed here.
"""

import resource
import selectors
import socket
import statistics
import threading
import time

from measure import fmt, measure

MARK = b"\n" + b"-" * 50 + b"\n"
WAVE = 500  # connections begun at once: within the listen backlog, so no SYN is dropped
IDLE, IDLE_RSS_MB = 10_000, 150
BLOCKERS, NAP, P99_MS = 10, "benchnap nap 1", 5.0
ECHO = "systemstatus echo hi"


def allow_open_files(count):
    """Raise this process's soft limit of open files to fit count more (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft - 256 if soft != resource.RLIM_INFINITY else count


def open_idle(port, count, deadline):
    """Up to `count` sockets whose banners have arrived, opened WAVE at a time."""
    ready = []
    with selectors.DefaultSelector() as selector:
        while len(ready) < count and time.monotonic() < deadline:
            waiting = {}
            for _ in range(min(WAVE, count - len(ready))):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                selector.register(sock, selectors.EVENT_READ)
                waiting[sock] = b""
            while waiting and time.monotonic() < deadline:
                for key, _ in selector.select(0.5):
                    sock = key.fileobj
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        chunk = b""
                    waiting[sock] += chunk
                    if not chunk or MARK in waiting[sock]:
                        selector.unregister(sock)
                        del waiting[sock]
                        if chunk:
                            ready.append(sock)
                        else:  # refused or closed before its banner
                            sock.close()
            for sock in waiting:  # the deadline passed with these still silent
                selector.unregister(sock)
                sock.close()
            if not ready:
                break
    return ready


def idle_memory(server, count=IDLE, timeout=120.0):
    """The server's RSS with no client, then with `count` idle connections open."""
    count = min(count, allow_open_files(count))
    before_kb, files_before = server.status("VmRSS"), server.open_files()
    began = time.monotonic()
    socks = open_idle(server.port, count, began + timeout)
    try:
        opened_in = time.monotonic() - began
        after_kb = server.status("VmRSS")
        held = server.open_files() - files_before
    finally:
        for sock in socks:
            sock.close()
    return {"server": server.name, "asked": count, "connections": len(socks),
            "server_sockets": held, "seconds_to_open": round(opened_in, 2),
            "rss_before_mb": round(before_kb / 1024, 1), "rss_mb": round(after_kb / 1024, 1),
            "kb_per_connection": round((after_kb - before_kb) / max(len(socks), 1), 2)}


def _read_reply(sock):
    data = b""
    while MARK not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed a blocking client")
        data += chunk


def _nap_loop(port, stop, naps, failures):
    """One blocking client: `benchnap nap 1` again and again until stop is set."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            _read_reply(sock)  # the banner
            while not stop.is_set():
                sock.sendall(NAP.encode() + b"\n")
                _read_reply(sock)
                naps.append(time.monotonic())
    except OSError as error:
        failures.append(str(error))


def latency_beside_blocking(server, rounds, seconds, warmup, gen_cpu):
    """Per round, the echo's 1x1 figures alone and beside BLOCKERS napping clients."""
    alone, beside, nap_rates, failures = [], [], [], []
    for _ in range(rounds):
        alone.append(measure(server, 1, 1, ECHO, seconds, warmup, gen_cpu))
        stop, naps = threading.Event(), []
        threads = [threading.Thread(target=_nap_loop, args=(server.port, stop, naps, failures),
                                    daemon=True)
                   for _ in range(BLOCKERS)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        beside.append(measure(server, 1, 1, ECHO, seconds, warmup, gen_cpu))
        ended = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(5)  # each finishes the nap it is in: at most a second
        nap_rates.append(sum(began + warmup <= t <= ended for t in naps) / max(seconds, 1e-9))
    med = lambda rows, key: statistics.median(r.get(key) or 0 for r in rows)
    return {"alone": alone, "beside": beside, "naps_per_second": nap_rates,
            "p99_alone_ms": med(alone, "p99_ms"), "p99_beside_ms": med(beside, "p99_ms"),
            "p50_beside_ms": med(beside, "p50_ms"),
            "worst_p99_beside_ms": max(r.get("p99_ms") or 0 for r in beside),
            "throughput_beside": med(beside, "throughput"),
            "naps_median": statistics.median(nap_rates), "blocker_failures": failures}


def report(idle, blocking):
    """The printed lines of both measures (either may be None: not run)."""
    lines = []
    for row in idle or []:
        goal = (f"target < {IDLE_RSS_MB} MB: {'MET' if row['rss_mb'] < IDLE_RSS_MB else 'NOT MET'}"
                if row["server"].startswith("smanager") else "for comparison")
        lines.append(f"  {row['server']:<22} {row['connections']:,} of {row['asked']:,} idle"
                     f" connections open ({row['server_sockets']:,} sockets in the server,"
                     f" {row['seconds_to_open']:g} s to open): RSS {row['rss_mb']:g} MB"
                     f" (from {row['rss_before_mb']:g} MB, {row['kb_per_connection']:g} kB"
                     f" each)  {goal}")
    if blocking:
        b = blocking
        met = b["p99_beside_ms"] < P99_MS
        lines.append(f"  `{ECHO}` 1x1 while {BLOCKERS} clients run 1-second blocking commands"
                     f" ({fmt(b['naps_median'], 1)} naps/s finished): p99"
                     f" {fmt(b['p99_beside_ms'], 3)} ms (worst round"
                     f" {fmt(b['worst_p99_beside_ms'], 3)};"
                     f" p50 {fmt(b['p50_beside_ms'], 3)}; {fmt(b['throughput_beside'], 0)} req/s),"
                     f" alone {fmt(b['p99_alone_ms'], 3)} ms  target < {P99_MS:g} ms:"
                     f" {'MET' if met else 'NOT MET'}")
        if b["blocker_failures"]:
            lines.append(f"  ! {len(b['blocker_failures'])} blocking client(s) failed:"
                         f" {b['blocker_failures'][0]}")
    return lines
