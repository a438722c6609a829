"""Which of smanager's modules one new line passes through, from the read to the written reply.

    python bench/line_path.py

Runs a server in-process with a stand-in transport, sends one line the server
has not seen before (so the memo cannot shorten its path), and prints the
modules whose code ran, in order of first use, and how many calls crossed
from one module into another.  A measurement, not a test.
"""

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smanager.config import Config  # noqa: E402 - after the path is set
from smanager.server.connection import Connection  # noqa: E402
from smanager.server.server import Server  # noqa: E402

LINE = b"systemstatus echo a-line-never-seen-before\n"


class Transport:
    """Just enough of an asyncio transport: it keeps what is written."""

    def __init__(self):
        self.written = []

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default

    def write(self, data):
        self.written.append(data)

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0


def module_of(frame):
    """The file of smanager's (or of a bundled service) a frame runs, or None."""
    path = Path(frame.f_code.co_filename)
    if path.is_relative_to(ROOT / "smanager") or path.is_relative_to(ROOT / "services"):
        return str(path.relative_to(ROOT))
    return None


def trace(connection, buffer, transport):
    """Feed LINE as asyncio would, from a plain callback; what ran, and the crossings."""
    modules, crossings = [], 0

    def profile(frame, event, arg):
        nonlocal crossings
        module = module_of(frame) if event == "call" else None
        if module is not None:
            if module not in modules:
                modules.append(module)
            if frame.f_back is not None and module_of(frame.f_back) not in (None, module):
                crossings += 1

    transport.written.clear()
    buffer[:len(LINE)] = LINE
    sys.setprofile(profile)
    try:
        connection.buffer_updated(len(LINE))
    finally:
        sys.setprofile(None)
    assert transport.written, "no reply was written"
    return modules, crossings


async def main():
    server = Server(Config(host="127.0.0.1", port=0))
    await server.start()
    connection, transport = Connection(server), Transport()
    connection.connection_made(transport)
    warm_up = b"systemstatus echo warm\n"  # the connection's worker exists, as for any later line
    server.receive_buffer[:len(warm_up)] = warm_up
    loop = asyncio.get_running_loop()
    result = loop.create_future()
    loop.call_soon(lambda: (connection.buffer_updated(len(warm_up)), result.set_result(
        trace(connection, server.receive_buffer, transport))))
    modules, crossings = await result
    print(f"{len(modules)} modules, {crossings} calls from one module into another:")
    print("  " + "\n  ".join(modules))
    sys.stdout.flush()
    os._exit(0)  # the stand-in transport cannot be closed the usual way


if __name__ == "__main__":
    asyncio.run(main())
