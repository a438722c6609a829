"""Load generator: closed-loop, pipelined clients, one process, no asyncio.

Run it as its own process (bench/run.py does) so it never shares the server's
core or GIL.  It is plain non-blocking sockets on one epoll-backed selector:
the least Python per event, so that it stays well below one core while it
drives a server flat out, and its own CPU use is reported to prove it.

Each connection reads the banner, then loops: send ``depth`` copies of the
command in ONE write, wait for ``depth`` separators, repeat.  A request's
latency is from the send of its batch to the arrival of its own separator.
Requests finishing during the warm-up are not counted.  Prints one JSON object;
with --sync it also prints ``start`` and ``stop`` lines at the edges of the
measured window, so the driver can sample the server's CPU over the same span.

    python bench/loadgen.py --port P --conns 50 --depth 16 --duration 5
"""

import argparse
import json
import os
import selectors
import socket
import sys
import time

# A separator is a whole line of 50 dashes, so it always follows a newline.  A
# dash-stuffed body line (51+ dashes) never matches: a dash precedes its last 50.
# (bytes.count does not see two separators sharing one newline, i.e. an empty
# reply; every command benchmarked has a non-empty reply.)
MARK = b"\n" + b"-" * 50 + b"\n"
KEEP = len(MARK) - 1  # bytes kept between reads so a MARK split in two is still found


class Conn:
    __slots__ = ("sock", "tail", "pending", "sent_at")

    def __init__(self, sock):
        self.sock, self.tail, self.pending, self.sent_at = sock, b"", 0, 0.0


def connect(host, port, timeout):
    """A connected socket whose banner has been read (blocking, bounded by timeout)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    banner = b""
    while MARK not in banner:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the banner")
        banner += chunk
    if not banner.endswith(MARK):
        raise ConnectionError("data after the banner before any request")
    sock.setblocking(False)
    return sock


def send(conn, payload):
    sent = conn.sock.send(payload)
    if sent < len(payload):  # never for a few hundred bytes, but be correct
        conn.sock.setblocking(True)
        conn.sock.sendall(payload[sent:])
        conn.sock.setblocking(False)


def cpu_seconds():
    times = os.times()
    return times.user + times.system


def percentile(samples, total, fraction):
    """samples: sorted (latency, count) pairs; the latency below which `fraction` falls."""
    rank, seen = fraction * total, 0
    for latency, count in samples:
        seen += count
        if seen >= rank:
            return latency
    return samples[-1][0] if samples else None


def run(host, port, conns, depth, command, duration, warmup, sync=False, timeout=10.0):
    payload = (command.strip() + "\n").encode() * depth
    clients = [Conn(connect(host, port, timeout)) for _ in range(conns)]
    selector = selectors.DefaultSelector()
    for conn in clients:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    samples = []  # (latency, how many separators arrived together): one per read
    completed = errors = closed = 0
    measuring = False
    clock = time.perf_counter
    start = clock()
    begin, end = start + warmup, start + warmup + duration
    for conn in clients:
        conn.pending, conn.sent_at = depth, clock()
        send(conn, payload)
    now = clock()
    while now < end:  # bounded in time even if the server stops answering
        if not measuring and now >= begin:
            measuring, begin, cpu0 = True, now, cpu_seconds()
            if sync:
                print("start", flush=True)
        for key, _ in selector.select(min(0.05, end - now)):
            conn = key.data
            try:
                data = conn.sock.recv(65536)
            except ConnectionError:
                data = b""
            now = clock()
            if not data:
                selector.unregister(conn.sock)
                closed += 1
                continue
            if b"ERROR" in data:
                errors += 1
            buffer = conn.tail + data
            arrived = buffer.count(MARK)
            conn.tail = buffer[-KEEP:]
            if not arrived:
                continue
            if measuring:
                completed += arrived
                samples.append((now - conn.sent_at, arrived))
            conn.pending -= arrived
            if conn.pending <= 0 and now < end:
                conn.pending, conn.sent_at = depth, clock()
                send(conn, payload)
        now = clock()
        if closed == conns:
            break
    if not measuring:  # the server never answered past the warm-up
        begin, cpu0 = now, cpu_seconds()
    cpu = cpu_seconds() - cpu0
    wall = max(clock() - begin, 1e-9)
    if sync:
        print("stop", flush=True)
    for conn in clients:
        conn.sock.close()
    samples.sort()
    ms = lambda value: None if value is None else round(value * 1000, 3)
    return {
        "conns": conns, "depth": depth, "command": command,
        "requests": completed, "seconds": round(wall, 4),
        "throughput": round(completed / wall, 1),
        "p50_ms": ms(percentile(samples, completed, 0.50)),
        "p99_ms": ms(percentile(samples, completed, 0.99)),
        "cpu_seconds": round(cpu, 4), "cpu_percent": round(100 * cpu / wall, 1),
        "error_replies": errors, "closed_by_server": closed,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="closed-loop pipelined load generator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--command", default="systemstatus echo hi")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--sync", action="store_true", help="print start/stop lines")
    parser.add_argument("--cpu", type=int, help="run only on this CPU (Linux)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = run(args.host, args.port, args.conns, args.depth, args.command,
                 args.duration, args.warmup, args.sync)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
