"""Shared test helpers: servers on loopback port 0, and a raw line client.

Every server a test starts listens on 127.0.0.1, on a port the OS picks, and is
stopped by the helper that started it.
"""

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from smanager.auth.peer import Peer
from smanager.config import Config, bundled_services_dir
from smanager.core.manager import Manager
from smanager.core.runner import Outcome
from smanager.server.server import Server
from smanager.wire.protocol import SEPARATOR, render_reply

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SERVICES = Path(__file__).resolve().parent / "fixture_services"
SEP_LINE = SEPARATOR.encode() + b"\n"
TIMEOUT = 10.0  # seconds any single read in a test may wait


def config(**settings):
    """A Config for tests: loopback, any port, bundled + fixture services."""
    settings.setdefault("services", [str(FIXTURE_SERVICES)])
    return Config(host="127.0.0.1", port=0).updated(settings)


@contextlib.asynccontextmanager
async def started_manager(*directories, **settings):
    """The core without sockets: a Manager with these services, started, then stopped."""
    manager = Manager(directories or [bundled_services_dir()], **settings)
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


async def run_line(manager, line, peer=None):
    """One line through the core's one entry (Manager.answer), as the pipeline
    sends it, run to its end: its Outcome, or None for a blank line."""
    raw = line if isinstance(line, bytes) else line.encode()
    outcome = manager.answer(raw, peer or Peer("test:1"))
    return outcome if outcome is None or type(outcome) is Outcome else await outcome


async def ask_core(manager, line, peer=None):
    """Run one line through the core; the reply exactly as the wire would carry it."""
    outcome = await run_line(manager, line, peer)
    assert outcome is not None and outcome.stream is None
    return render_reply(outcome).decode()


@contextlib.asynccontextmanager
async def running_server(**settings):
    """An in-process server; yields it, then shuts it down."""
    server = Server(config(**settings))
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


class ServerThread:
    """Servers on an event loop of their own, in a thread: for blocking clients
    and child processes (tshell, demo_script) that talk to them."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT * 3)

    def start(self, **settings):
        """A started server; returns its port."""
        server = Server(config(**settings))
        self.run(server.start())
        self.servers.append(server)
        return server.address[1]

    def stop(self, port):
        """Shut down the server on that port (its clients see the connection close)."""
        server = next(s for s in self.servers if s.address[1] == port)
        self.servers.remove(server)
        self.run(server.shutdown())

    def close(self):
        async def stop_all():
            await asyncio.gather(*(server.shutdown() for server in self.servers))
        self.run(stop_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def server_thread():
    servers = ServerThread()
    yield servers
    servers.close()


class LineClient:
    """The least a client can be: send bytes, read up to the separator."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port, read_banner=True):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if read_banner:
            client.banner = await client.reply()
        return client

    async def send(self, data):
        self.writer.write(data if isinstance(data, bytes) else data.encode() + b"\n")
        await self.writer.drain()

    async def reply(self):
        """Bytes up to and including the separator line."""
        return await asyncio.wait_for(self.reader.readuntil(SEP_LINE), TIMEOUT)

    async def ask(self, line):
        await self.send(line)
        return (await self.reply()).decode()

    async def read_all(self):
        """Everything until the server closes."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def close(self):
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def server():
    async with running_server() as server:
        yield server


@pytest.fixture
async def client(server):
    client = await LineClient.connect(server.address[1])
    yield client
    await client.close()


class ServerProcess:
    """``python -m smanager`` in a child process, as a user would start it."""

    def __init__(self, *args, env=None):
        self.args = ["--host", "127.0.0.1", "--port", "0", *args]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.process = None
        self.port = None
        self.log = []

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smanager", *self.args], cwd=ROOT, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:  # bounded: the process exits or logs the address
            self.log.append(line)
            match = re.search(r"listening on \S+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                return self
        raise RuntimeError("server did not start:\n" + "".join(self.log))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.process.stderr.closed:
            self.log += self.process.stderr.readlines()
            self.process.stderr.close()
        return self.process.returncode


@pytest.fixture
def server_process():
    started = []

    def start(*args, **kwargs):
        started.append(ServerProcess(*args, **kwargs).start())
        return started[-1]

    yield start
    for process in started:
        process.stop()


def need(tool):
    """Skip unless a real client is installed (CI installs them and sets
    SMANAGER_REQUIRE_CLIENTS=1, which turns the skip into a failure)."""
    if shutil.which(tool):
        return
    if os.environ.get("SMANAGER_REQUIRE_CLIENTS"):
        pytest.fail(f"{tool} is required but not installed")
    pytest.skip(f"{tool} is not installed")
