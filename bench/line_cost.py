"""What one line costs smanager's own code, in process: no sockets, no kernel, no peer.

    python bench/line_cost.py              # 1 and 16 lines a read, best of 5 runs
    python bench/line_cost.py --lines 4 --lines 64

Runs a server in-process with line_path.py's stand-in transport and hands one
connection reads of N pipelined `systemstatus echo hi` lines, as asyncio
would, from a plain callback: the microseconds per line of everything from the
read to the reply written.  Then the same for a connection's whole life (made,
one line, the client's EOF, lost), asyncio's own transport work aside.  The socket benchmarks (run.py) measure the whole
server on a shared machine, whose noise moves them by 10 % or more from run to
run; this moves by a few per cent, so it shows what a change to the path of a
line did.  A measurement, not a test.
"""

import argparse
import asyncio
import os
import sys
import time

from line_path import ROOT, Transport

sys.path.insert(0, str(ROOT))

from smanager.config import Config  # noqa: E402 - after the path is set
from smanager.server.connection import Connection  # noqa: E402
from smanager.server.server import Server  # noqa: E402

LINE = b"systemstatus echo hi\n"
BUDGET = 0.5  # seconds per run


def per_line(connection, buffer, transport, lines):
    """Best of 5 runs: microseconds per line, reads of `lines` lines."""
    data = LINE * lines
    buffer[:len(data)] = data
    reads, best = max(1, int(200_000 / lines)), float("inf")
    for _ in range(5):
        began, deadline, done = time.perf_counter(), time.perf_counter() + BUDGET, 0
        while done < reads and time.perf_counter() < deadline:
            for _ in range(100):
                connection.buffer_updated(len(data))
            transport.written.clear()
            done += 100
        best = min(best, (time.perf_counter() - began) / done / lines * 1e6)
    return best


class ClosingTransport(Transport):
    """The stand-in transport, which can also be closed: for a connection's whole life."""

    closing = False

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    abort = close


async def per_connection(server, runs=5, connections=2000):
    """Best of `runs`: microseconds of one connection's life as asyncio drives it --
    made, one line read and answered, the client's EOF, lost -- with the loop turns
    between them (and its worker task's, had it needed one)."""
    loop, buffer, best = asyncio.get_running_loop(), server.receive_buffer, float("inf")
    for _ in range(runs):
        done, began = loop.create_future(), time.perf_counter()

        def open_one(left):
            if not left:
                done.set_result((time.perf_counter() - began) / connections * 1e6)
                return
            connection = Connection(server)
            connection.connection_made(ClosingTransport())
            buffer[:len(LINE)] = LINE
            connection.buffer_updated(len(LINE))
            connection.eof_received()
            loop.call_soon(lose, connection, left)

        def lose(connection, left):
            connection.connection_lost(None)
            loop.call_soon(open_one, left - 1)

        loop.call_soon(open_one, connections)
        best = min(best, await done)
    return best


async def main(counts):
    server = Server(Config(host="127.0.0.1", port=0))
    await server.start()
    connection, transport = Connection(server), Transport()
    connection.connection_made(transport)
    loop = asyncio.get_running_loop()
    result = loop.create_future()

    def measure():  # from a callback, as asyncio calls a protocol
        result.set_result({n: per_line(connection, server.receive_buffer, transport, n)
                           for n in counts})

    loop.call_soon(measure)
    for lines, micros in (await result).items():
        print(f"{lines:4d} line(s) a read: {micros:6.3f} us a line")
    print(f"a connection (made, one line, EOF, lost): {await per_connection(server):6.2f} us")
    sys.stdout.flush()
    os._exit(0)  # the stand-in transport cannot be closed the usual way


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, action="append",
                        help="lines a read (repeatable; default 1 and 16)")
    asyncio.run(main(parser.parse_args().lines or [1, 16]))
