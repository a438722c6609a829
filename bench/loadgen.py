"""Load generator in Python: closed-loop, a sliding window per connection.

Rules:
1. Each connection reads the banner, then (with --setup) sends one setup line
   such as ``mode json`` and reads its reply, then keeps ``depth`` requests in
   flight: as replies arrive, as many new requests go out, in ONE write per
   read (never batch-then-wait).
2. A reply ends with the terminator: by default a separator line (50 dashes
   after a newline, so a dash-stuffed body line never matches); ``--terminator
   '\\n'`` for JSON mode, whose replies are one line each.
3. A request's latency runs from the write that sent it to the read that
   completed its reply; replies completing in the warm-up are not counted.
4. Its own CPU time over the measured window is reported (``cpu_percent``,
   100 = one core), so a reader can see it was not the limit.
5. Every run is bounded in time: it ends at warm-up + duration even if the
   server stops answering.

It is plain non-blocking sockets on one epoll-backed selector (TLS with
--tls-ca: the ssl module over the same sockets).  bench/cloadgen.py runs the C
generator of ../shared/perf for the plain-text scenarios; this one serves
where that cannot go (a setup line, TLS) and as its fallback.  Prints one JSON
object; with --sync also ``start`` and ``stop`` lines at the edges of the
measured window, so the driver samples the server's CPU over the same span.

    python bench/loadgen.py --port P --conns 50 --depth 16 --duration 5
"""

import argparse
import collections
import json
import os
import selectors
import socket
import ssl
import sys
import time

MARK = b"\n" + b"-" * 50 + b"\n"  # a separator line: a reply's end in text mode
KEEP = len(MARK) - 1  # bytes kept between reads so a MARK split in two is still found


class Conn:
    """A client connection.  Conn, send, connect, cpu_seconds, percentile, MARK and KEEP
    are shared with scripts_peers.py and monitor_peers.py; the former's clients keep
    one request in flight and time it by sent_at."""

    __slots__ = ("in_flight", "sent_at", "sock", "tail")

    def __init__(self, sock):
        self.sock, self.tail, self.sent_at = sock, b"", 0.0
        self.in_flight = collections.deque()  # [sent at, requests] per write, oldest first


def read_until(sock, terminator, deadline):
    """Blocking read up to and including the first terminator; what follows is an error."""
    data = b""
    while terminator not in data:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server during set-up")
        data += chunk
    if not data.endswith(terminator):
        raise ConnectionError("data before any request was sent")
    return data


def connect(host, port, timeout, terminator=MARK, setup=None, tls=None):
    """A connected non-blocking socket, its banner (and setup reply) read."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=host)
    read_until(sock, MARK, deadline)  # the banner is text in every mode
    if setup:
        sock.sendall(setup.encode() + b"\n")
        read_until(sock, terminator, deadline)
    sock.setblocking(False)
    return sock


def receive(sock):
    """What a readable socket holds now (b"" when closed); TLS may hold more than one record."""
    try:
        # 64 KiB, not more: CPython allocates the whole size per call, and at 256 KiB
        # (mmap'd, then freed) this generator ran at a third of its speed.
        data = sock.recv(65536)
        while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
            data += sock.recv(65536)
        return data
    except (ssl.SSLWantReadError, BlockingIOError):
        return None  # readable at the socket, but not a whole TLS record yet
    except (ConnectionError, ssl.SSLError):
        return b""


def send(conn, payload):
    sock = conn.sock
    try:
        sent = sock.send(payload)
    except (ssl.SSLWantWriteError, BlockingIOError):
        sent = 0
    if sent < len(payload):  # never for a few KB on loopback, but stay correct
        sock.setblocking(True)
        sock.sendall(payload[sent:])
        sock.setblocking(False)


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


def run(host, port, conns, depth, command, duration, warmup, terminator=MARK,
        setup=None, tls=None, sync=False, timeout=10.0):
    request = (command.strip() + "\n").encode()
    keep = len(terminator) - 1  # bytes kept between reads, so a split terminator is found
    clients = [Conn(connect(host, port, timeout, terminator, setup, tls)) for _ in range(conns)]
    selector = selectors.DefaultSelector()
    for conn in clients:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    samples = []  # (latency, requests completing together)
    completed = errors = closed = 0
    measuring = False
    clock = time.perf_counter
    begin = clock() + warmup
    end = begin + duration
    now = clock()
    for conn in clients:
        conn.in_flight.append([now, depth])
        send(conn, request * depth)
    while now < end and closed < conns:  # bounded in time even if the server goes quiet
        if not measuring and now >= begin:
            measuring, begin, cpu0 = True, now, cpu_seconds()
            if sync:
                print("start", flush=True)
        for key, _ in selector.select(min(0.05, end - now)):
            conn = key.data
            data = receive(conn.sock)
            if data is None:
                continue
            now = clock()
            if not data:
                selector.unregister(conn.sock)
                closed += 1
                continue
            if b"ERROR" in data or b'"ok": false' in data:
                errors += 1
            buffer = conn.tail + data if conn.tail else data
            arrived = buffer.count(terminator)
            conn.tail = buffer[-keep:] if keep else b""
            if not arrived:
                continue
            if measuring:
                completed += arrived
            owed, in_flight = arrived, conn.in_flight
            while owed and in_flight:  # the oldest writes are the ones answered
                batch = in_flight[0]
                taken = min(owed, batch[1])
                if measuring:
                    samples.append((now - batch[0], taken))
                owed -= taken
                batch[1] -= taken
                if not batch[1]:
                    in_flight.popleft()
            if now < end:  # refill the window at once: one request per reply
                in_flight.append([now, arrived])
                send(conn, request * arrived)
        now = clock()
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
        "generator": "python", "conns": conns, "depth": depth, "command": command,
        "requests": completed, "seconds": round(wall, 4),
        "throughput": round(completed / wall, 1),
        "p50_ms": ms(percentile(samples, completed, 0.50)),
        "p99_ms": ms(percentile(samples, completed, 0.99)),
        "max_ms": ms(samples[-1][0]) if samples else None,
        "cpu_seconds": round(cpu, 4), "cpu_percent": round(100 * cpu / wall, 1),
        "error_replies": errors, "closed_by_server": closed,
    }


def unescape(text):
    return text.encode().decode("unicode_escape").encode("latin-1")


def main(argv=None):
    parser = argparse.ArgumentParser(description="closed-loop sliding-window load generator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    parser.add_argument("--command", default="systemstatus echo hi")
    parser.add_argument("--setup", help="a line sent once per connection first, e.g. 'mode json'")
    parser.add_argument("--terminator", help="what ends a reply, with \\n escapes"
                        " (default: a separator line)")
    parser.add_argument("--tls-ca", metavar="PEM", help="speak TLS, trusting this certificate")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--sync", action="store_true", help="print start/stop lines")
    args = parser.parse_args(argv)
    terminator = MARK if args.terminator is None else unescape(args.terminator)
    tls = None if args.tls_ca is None else ssl.create_default_context(cafile=args.tls_ca)
    try:
        result = run(args.host, args.port, args.conns, args.depth, args.command, args.duration,
                     args.warmup, terminator, args.setup, tls, args.sync)
    except (OSError, ssl.SSLError) as error:
        print(f"loadgen: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
