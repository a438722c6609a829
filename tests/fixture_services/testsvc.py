"""Services whose behaviour the tests control: slow, blocking, streaming, failing."""

import asyncio
import threading
import time

from smanager import CommandError, SService

# Released by tests that leave a blocking command running past its time limit.
RELEASE = threading.Event()


class TestSvc(SService):
    """Commands for the tests"""

    name = "testsvc"

    def __init__(self):
        super().__init__()
        self.active = 0
        self.peak = 0
        self.left = []
        self.stream_closed = None

    async def start(self):
        self.stream_closed = asyncio.Event()

    async def cmd_add(self, a: int, b: int = 1):
        """Adds A and B"""
        return a + b

    async def cmd_sleep(self, seconds: float):
        """Sleeps SECONDS on the event loop"""
        await asyncio.sleep(seconds)
        return f"slept {seconds:g}"

    def cmd_block(self, seconds: float):
        """Sleeps SECONDS in a worker thread, counting how many run at once"""
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            time.sleep(seconds)
        finally:
            self.active -= 1
        return f"blocked {seconds:g}"

    def cmd_hang(self):
        """Blocks its thread until the test releases it"""
        RELEASE.wait(30)
        return "released"

    def cmd_peak(self):
        """How many blocking commands ran at once, at most"""
        return self.peak

    async def cmd_count(self, n: int, delay: float = 0.0):
        """Streams the numbers 1..N"""
        for i in range(1, n + 1):
            yield i
            await asyncio.sleep(delay)

    async def cmd_forever(self):
        """Streams ticks until stopped"""
        i = 0
        try:
            while True:
                i += 1
                yield f"tick {i}"
                await asyncio.sleep(0.01)
        finally:
            self.stream_closed.set()

    async def cmd_fail(self):
        """Raises an unexpected exception"""
        raise RuntimeError("kaput\nsecond line")

    async def cmd_refuse(self, why="no reason"):
        """Raises a CommandError"""
        raise CommandError(f"refused: {why}")

    async def cmd_whoami(self, session):
        """The client's address, and how often it asked"""
        session.data["asked"] = session.data.get("asked", 0) + 1
        return f"{session.peer} asked {session.data['asked']}"

    async def cmd_dashes(self):
        """A body that contains separator-like lines"""
        return "a\n" + "-" * 50 + "\n  " + "-" * 60 + " \nb"

    async def cmd_data(self):
        """A structured value"""
        return {"b": [1, 2], "a": None}

    def cmd_big(self, kib: int):
        """KIB kibibytes of text"""
        return ("x" * 1023 + "\n") * kib

    def client_disconnected(self, session):
        self.left.append(session.peer)

    def toplevel_cmd_hostname(self):
        """Shadowed by systemstatus's hostname"""
        return "not me"
