"""The client processes of bursts.py: new connections, timed from this side.

Rules:
1. ``rate``: keeps ``--slots`` connections going, each: connect, read the
   banner, send ``systemstatus echo hi``, read the reply, close; then the next
   begins at once.  Only connections that end inside the measured window
   (after ``--warmup``) count; ``start``/``stop`` lines mark that window, so
   the driver samples the server's CPU over the same span.
2. ``burst``: begins ``--count`` non-blocking connects at once and times each
   from its own connect(): until it is established, and until its banner has
   arrived.  A connection with no banner by the deadline is "stalled".
3. Bounded in time; every socket opened here is closed here.  One JSON line.

    python bench/bursts_client.py rate --port P --slots 8 --seconds 4
    python bench/bursts_client.py burst --port P --count 500
"""

import argparse
import json
import os
import selectors
import socket
import sys
import time

MARK = b"\n" + b"-" * 50 + b"\n"
ECHO = b"systemstatus echo hi\n"
BURST_WAIT = 10.0  # seconds a burst's connections are given to be greeted


def _ms(seconds, fraction):
    """The value (in ms) below which `fraction` of `seconds` fall; fraction 1 is the max."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return round(1000 * ordered[min(int(fraction * len(ordered)), len(ordered) - 1)], 3)


def client_rate(port, slots, seconds, warmup):
    """connect, banner, one command, its reply, close -- by `slots` at once."""
    selector, clock = selectors.DefaultSelector(), time.perf_counter
    begin = clock() + warmup
    end = begin + seconds
    times, failures = [], 0

    def start():
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect_ex(("127.0.0.1", port))
        # [when it began, what has arrived, whether the banner has been read]
        selector.register(sock, selectors.EVENT_READ, [clock(), b"", False])

    for _ in range(slots):
        start()
    now, cpu0 = clock(), None
    while now < end:
        if cpu0 is None and now >= begin:
            cpu0, begin = os.times(), now
            print("start", flush=True)
        for key, _ in selector.select(min(0.05, end - now)):
            sock, state = key.fileobj, key.data
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            state[1] += chunk
            now = clock()
            if chunk and MARK not in state[1]:
                continue
            if chunk and not state[2]:  # the banner: now the command
                state[1], state[2] = b"", True
                try:
                    sock.send(ECHO)
                    continue
                except OSError:
                    chunk = b""
            selector.unregister(sock)
            sock.close()
            if not chunk:
                failures += 1
            elif now >= begin and cpu0 is not None:
                times.append(now - state[0])
            if now < end:
                start()
        now = clock()
    stopped = os.times()
    print("stop", flush=True)
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    if cpu0 is None:
        cpu0, begin = stopped, now
    wall = max(now - begin, 1e-9)
    cpu = stopped.user + stopped.system - cpu0.user - cpu0.system
    return {"slots": slots, "connections": len(times), "per_second": round(len(times) / wall, 1),
            "p50_ms": _ms(times, 0.5), "p99_ms": _ms(times, 0.99), "failures": failures,
            "cpu_percent": round(100 * cpu / wall, 1)}


def client_burst(port, count, timeout):
    """`count` connects begun at once; each one's connect and banner times."""
    selector, clock = selectors.DefaultSelector(), time.perf_counter
    socks, connected, bannered, failures = [], [], [], 0
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        began = clock()
        sock.connect_ex(("127.0.0.1", port))
        # [when its connect() began, what has arrived]
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, [began, b""])
        socks.append(sock)
    deadline = clock() + timeout
    waiting = count
    while waiting and clock() < deadline:
        for key, events in selector.select(0.1):
            sock, state = key.fileobj, key.data
            now = clock()
            if events & selectors.EVENT_WRITE:  # established (or failed)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected.append(now - state[0])
                selector.modify(sock, selectors.EVENT_READ, state)
                continue
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            state[1] += chunk
            if chunk and MARK not in state[1]:
                continue
            selector.unregister(sock)
            waiting -= 1
            if chunk:
                bannered.append(now - state[0])
            else:
                failures += 1
    for sock in socks:
        sock.close()
    # Still waiting at the deadline: established here but never accepted (the server
    # dropped the handshake's last ACK on a full queue), so never greeted.
    return {"count": count, "failures": failures, "stalled": waiting,
            "connect_max_ms": _ms(connected, 1), "connect_p99_ms": _ms(connected, 0.99),
            "banner_max_ms": _ms(bannered, 1), "banner_p99_ms": _ms(bannered, 0.99),
            "banner_p50_ms": _ms(bannered, 0.5), "bannered": len(bannered)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("kind", choices=("rate", "burst"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args(argv)
    result = (client_rate(args.port, args.slots, args.seconds, args.warmup) if args.kind == "rate"
              else client_burst(args.port, args.count, BURST_WAIT))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
