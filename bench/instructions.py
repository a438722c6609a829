"""Instructions, not seconds: what a connection and a one-line read cost, exactly.

    python bench/instructions.py                 # needs valgrind (Debian: valgrind)
    python bench/instructions.py --connections 2000 --reads 10000

On a shared machine a socket benchmark moves 10-30 % between runs, and even
line_cost.py's microseconds move a few per cent; a change worth 2 % cannot be
seen.  This counts the CPU instructions (callgrind) of a region run in
process, synchronously in one callback, so nothing else can run inside it:

- a connection: made, one line read and answered, the client's EOF, lost;
- a one-line read on an open connection (`systemstatus echo hi`);
- a read of 16 such lines (``--lines``), what a pipelining client sends;

for smanager and for the reference server, driven the same way (line_cost.py's
stand-in transports).  The region is marked by os.getppid() (counters zeroed)
and os.getpgrp() (counters written), the hash seed is fixed, and only the
systemstatus service is loaded (the bundled services' timers and threads
would run while valgrind slows the process 50 times), so a run gives the same
figures to the instruction.  A measurement, not a test.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from line_path import ROOT, Transport

sys.path.insert(0, str(ROOT))

from line_cost import LINE, ClosingTransport  # noqa: E402 - after the path is set
from reference_server import Reference  # noqa: E402

from smanager.config import Config  # noqa: E402
from smanager.server.connection import Connection  # noqa: E402
from smanager.server.server import Server  # noqa: E402

WARM = 50  # connections and reads before the region, so it measures the steady state


def smanager_steps(server, batch):
    """(one connection's life, one read of ``batch`` on an open connection), as asyncio
    calls them."""
    buffer = server.receive_buffer

    def connection():
        conn = Connection(server)
        conn.connection_made(ClosingTransport())
        buffer[:len(LINE)] = LINE
        conn.buffer_updated(len(LINE))
        conn.eof_received()
        conn.connection_lost(None)

    conn, transport = Connection(server), Transport()
    conn.connection_made(transport)

    def read():
        buffer[:len(batch)] = batch
        conn.buffer_updated(len(batch))
        transport.written.clear()
    return connection, read


def reference_steps(batch):
    def connection():
        conn, transport = Reference(), ClosingTransport()
        conn.connection_made(transport)
        conn.data_received(LINE)
        conn.eof_received()
        transport.close()
        conn.connection_lost(None)

    conn, transport = Reference(), Transport()
    conn.connection_made(transport)

    def read():
        conn.data_received(batch)
        transport.written.clear()
    return connection, read


async def region(server_name, what, count, services):
    """The measured run, in the valgrind child."""
    server = Server(Config(host="127.0.0.1", port=0, no_default_services=True,
                           services=[services]))
    await server.start()
    lines = what.removeprefix("read") if what.startswith("read") else ""
    batch = LINE * int(lines or 1)  # "read16": a read of 16 lines
    connection, read = reference_steps(batch) if server_name == "reference" \
        else smanager_steps(server, batch)
    step = connection if what == "connection" else read
    loop, done = asyncio.get_running_loop(), asyncio.get_running_loop().create_future()

    def run():  # one callback: no other task or timer can run inside the region
        for _ in range(WARM):
            step()
        os.getppid()
        for _ in range(count):
            step()
        os.getpgrp()
        done.set_result(None)
    loop.call_soon(run)
    await done
    os._exit(0)  # the stand-in transports cannot be closed the usual way


def count(server_name, what, number, services):
    """Instructions per step, from callgrind's dump at the end of the region."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", "--zero-before=getppid",
                        "--dump-before=getpgrp", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--child", server_name, what, str(number),
                        services],
                       env={**os.environ, "PYTHONHASHSEED": "0"}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for dump in Path(scratch).glob("callgrind.out*"):
            text = dump.read_text()
            if re.search(r"^desc: Trigger: --dump-before=getpgrp", text, re.M):
                return int(re.search(r"^summary: (\d+)", text, re.M).group(1)) / number
    raise RuntimeError("callgrind wrote no dump for the region")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--lines", type=int, default=16, help="lines in the pipelined read")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        server_name, what, number, services = args.child
        asyncio.run(region(server_name, what, int(number), services))
    if shutil.which("valgrind") is None:
        sys.exit("instructions.py needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as services:
        shutil.copy(ROOT / "services" / "systemstatus.py", services)
        print("instructions (callgrind), in process; smanager / reference = ratio")
        for what, number, label in (
                ("connection", args.connections, "a connection's life"),
                ("read", args.reads, "a one-line read"),
                (f"read{args.lines}", args.reads // 4, f"a read of {args.lines} lines")):
            ours = count("smanager", what, number, services)
            theirs = count("reference", what, number, services)
            print(f"{label:>20}: {ours:9,.0f} / {theirs:9,.0f} = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
