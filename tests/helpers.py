"""What the test files share: paths and constants, the polling helper, servers
(in-process, in a thread, in a child process), raw clients, the pty driver,
tshell runners, certificates, users files, and the processes proc supervises.

Every server a test starts listens on 127.0.0.1 (or a Unix socket in a private
directory), on a port the OS picks, and is stopped by the helper or test that
started it.  pytest fixtures built on these live in conftest.py.
"""

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from smanager.auth import levels, users
from smanager.auth import scram as passwords
from smanager.auth.peer import Peer
from smanager.client import Client, tls_context
from smanager.config import Config, bundled_services_dir
from smanager.core.manager import Manager
from smanager.core.runner import Outcome
from smanager.server.server import Server
from smanager.tshell.main import main as tshell_main
from smanager.wire.protocol import SEPARATOR, render_reply

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_SERVICES = FIXTURES / "testsvc"  # every test server loads it unless told otherwise
MEETING = str(FIXTURES / "meeting")  # callers that wait for each other, across servers
REV = FIXTURES / "rev"  # probes for the eager pipeline

TIMEOUT = 10.0  # seconds any single read in a test may wait
QUICK = 2.0  # seconds: the bound on a reply a test expects "now"
SEP = SEPARATOR + "\n"
SEP_LINE = SEP.encode()
BANNER = (b"*" * 50 + b"\nService Manager\n" + b"*" * 50 + b"\nAvailable Services:\n"
          b"-monitor\n-proc\n-scrapman\n-scripts\n-systemstatus\n-testsvc\n" + SEP_LINE)  # a default test server's
BARE_BANNER = (b"*" * 50 + b"\nService Manager\n" + b"*" * 50 + b"\nAvailable Services:\n"
               + SEP_LINE)  # a banner listing no service
TOO_LONG = b"ERROR: line longer than 65536 bytes; closing the connection\n" + SEP_LINE
RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
POLL = 0.005  # seconds between two looks of until()


def with_fixtures(*names):
    """A services list: the test service, and these directories of tests/fixtures."""
    return [str(FIXTURE_SERVICES), *(str(FIXTURES / name) for name in names)]


def fixture_source(name):
    """The text of tests/fixtures/NAME/NAME.py: a template for tests that write variants."""
    return (FIXTURES / name / f"{name}.py").read_text()


# -- waiting -------------------------------------------------------------------------------

async def until(predicate, seconds=TIMEOUT, give_up=None):
    """Poll a state the code under test reaches by itself (nothing to read or wait
    on): True once ``predicate()`` holds; False if ``seconds`` pass first, or as
    soon as ``give_up()`` says the outcome is already known to be wrong.  Bounded
    in time and in the number of looks.  Callers that need the state write
    ``assert await until(...)``: a clear failure naming the condition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for _ in range(2 * int(seconds / POLL) + 10):  # the deadline ends it first
        if predicate():
            return True
        if (give_up is not None and give_up()) or loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return bool(predicate())


# -- the core without sockets ----------------------------------------------------------------

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
    if type(outcome) is str:  # a text reply done at once comes as it is
        return Outcome(outcome)
    return outcome if outcome is None or type(outcome) is Outcome else await outcome


async def ask_core(manager, line, peer=None):
    """Run one line through the core; the reply exactly as the wire would carry it."""
    outcome = await run_line(manager, line, peer)
    assert outcome is not None and outcome.stream is None
    return render_reply(outcome).decode()


def rev_of(server_or_manager):
    """The running instance of the rev service (tests/fixtures/rev)."""
    manager = getattr(server_or_manager, "manager", server_or_manager)
    return manager.catalog.services["rev"].instance


def the_testsvc(server):
    """The running instance of the test service (tests/fixtures/testsvc)."""
    return server.manager.catalog.services["testsvc"].instance


# -- servers -------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def running_server(**settings):
    """An in-process server; yields it, then shuts it down."""
    server = Server(config(**settings))
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


def rev_server(**settings):
    """A running_server that also loads the rev service."""
    settings.setdefault("services", with_fixtures("rev"))
    return running_server(**settings)


def the_connection(server):
    """The server's only connection."""
    (connection,) = server.connections
    return connection


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

    def server_on(self, port):
        return next(s for s in self.servers if s.address[1] == port)

    def stop(self, port):
        """Shut down the server on that port (its clients see the connection close)."""
        server = self.server_on(port)
        self.servers.remove(server)
        self.run(server.shutdown())

    def close(self):
        async def stop_all():
            await asyncio.gather(*(server.shutdown() for server in self.servers))
        self.run(stop_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


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


@contextlib.contextmanager
def short_dir():
    """A private directory with a short path (a Unix socket path is at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sm-", dir="/tmp") as name:
        yield Path(name)


class Records(logging.Handler):
    """Collects the messages of one logger while the test runs."""

    def __init__(self, name, level=logging.DEBUG):
        super().__init__(level)
        self.logger, self.messages = logging.getLogger(name), []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def count(self, text):
        return sum(text in message for message in self.messages)

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)


def unexpected_errors(caplog):
    """ERROR records other than 'a service genuinely raised'."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
            and not (r.name == "smanager.runner" and r.msg == "%s raised")]


def need(tool):
    """Skip unless a real client is installed (CI installs them and sets
    SMANAGER_REQUIRE_CLIENTS=1, which turns the skip into a failure)."""
    if shutil.which(tool):
        return
    if os.environ.get("SMANAGER_REQUIRE_CLIENTS"):
        pytest.fail(f"{tool} is required but not installed")
    pytest.skip(f"{tool} is not installed")


# -- raw clients ---------------------------------------------------------------------------------

class LineClient:
    """The least a client can be: send bytes, read up to the separator."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port, read_banner=True):
        return await cls._greeted(*await asyncio.open_connection("127.0.0.1", port), read_banner)

    @classmethod
    async def connect_unix(cls, path, read_banner=True):
        """The same over a Unix socket."""
        return await cls._greeted(*await asyncio.open_unix_connection(str(path)), read_banner)

    @classmethod
    async def _greeted(cls, reader, writer, read_banner):
        client = cls(reader, writer)
        if read_banner:
            client.banner = await client.reply()
        return client

    async def send(self, data):
        self.writer.write(data if isinstance(data, bytes) else data.encode() + b"\n")
        await self.writer.drain()

    async def reply(self, seconds=TIMEOUT):
        """Bytes up to and including the separator line."""
        return await asyncio.wait_for(self.reader.readuntil(SEP_LINE), seconds)

    async def reply_text(self, seconds=TIMEOUT):
        return (await self.reply(seconds)).decode()

    async def replies(self, count, seconds=TIMEOUT):
        """The next COUNT replies, as text."""
        return [await self.reply_text(seconds) for _ in range(count)]

    async def ask(self, line, seconds=TIMEOUT):
        await self.send(line)
        return await self.reply_text(seconds)

    async def read_all(self):
        """Everything until the server closes."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def close(self):
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


TELNET_ANSWER = re.compile(rb"\xff[\xfb-\xfe].", re.DOTALL)  # 0xFF is never in UTF-8 text


async def read_reply(client, timeout=TIMEOUT):
    """A reply's lines up to one that is exactly the separator (a help body's lines
    of 51 dashes do not end it), telnet refusals removed; as text."""
    async def lines():
        out = []
        while True:
            line = TELNET_ANSWER.sub(b"", await client.reader.readline())
            if not line and client.reader.at_eof():
                raise EOFError(f"connection closed after {b''.join(out)!r}")
            out.append(line)
            if line == SEP_LINE:
                return b"".join(out).decode()
    return await asyncio.wait_for(lines(), timeout)


async def json_lines(client, count):
    """The next COUNT lines of a connection in JSON mode, decoded."""
    return [json.loads(await asyncio.wait_for(client.reader.readline(), TIMEOUT))
            for _ in range(count)]


async def small_buffer_client(server):
    """A LineClient, banner read, with small socket buffers at both ends, so the
    server's own buffer fills as soon as it does not read; and its connection."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, server.address)
    reader, writer = await asyncio.open_connection(sock=sock)
    client = LineClient(reader, writer)
    client.banner = await client.reply()
    conn = the_connection(server)
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return client, conn


def reset(client):
    """Drop a LineClient with a TCP RST, as a crashed or hostile client does."""
    client.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                      RESET_ON_CLOSE)
    client.writer.transport.abort()


async def read_steadily(reader, rate, want):
    """Read ``want`` bytes at ``rate`` bytes a second, as a slow but steady
    client does, or until the server closes; how many came."""
    total, began = 0, time.monotonic()
    for _ in range(100_000):  # bounded: seconds of 1 ms steps, and the reads
        if total >= want:
            break
        allowed = rate * (time.monotonic() - began) - total
        if allowed < 4096:
            await asyncio.sleep(0.001)  # the pace of this client
            continue
        try:
            data = await asyncio.wait_for(reader.read(int(min(allowed, 65536))), TIMEOUT)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            break
        total += len(data)
    return total


async def start_daemon(argv, ready_text):
    """A real server (redis-server, nginx...) started from ARGV once its output showed
    READY_TEXT, within TIMEOUT; stopped if it never did."""
    server = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(TIMEOUT):
            while ready_text not in (line := await server.stdout.readline()):
                assert line, f"{argv[0]} exited before it was ready"
    except BaseException:
        await stop_daemon(server)
        raise
    return server


async def stop_daemon(server):
    """TERM, then KILL after TIMEOUT; reaped either way."""
    if server.returncode is None:
        server.terminate()
        try:
            async with asyncio.timeout(TIMEOUT):
                await server.wait()
        except TimeoutError:
            server.kill()
            await server.wait()


@contextlib.asynccontextmanager
async def running_daemon(argv, ready_text):
    server = await start_daemon(argv, ready_text)
    try:
        yield server
    finally:
        await stop_daemon(server)


def closed_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_peer(handle, connections=1):
    """A TCP listener on a thread of its own that hands each of CONNECTIONS
    accepted connections to HANDLE, then closes.  Returns its port and its thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            listener.settimeout(TIMEOUT)
            for _ in range(connections):
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                handle(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def talker(script):
    """A one-connection TCP server that sends the SCRIPT of (bytes to send, lines
    to read first) steps, then closes.  Returns its port and its thread."""
    def talk(connection):
        with connection, connection.makefile("rb") as lines:
            for wait_for_lines, data in script:
                for _ in range(wait_for_lines):
                    lines.readline()
                connection.sendall(data)

    return fake_peer(talk)


def resetting_listener(connections=1):
    """A listener that accepts and at once resets (RST) each connection."""
    def reset_it(connection):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        connection.close()

    return fake_peer(reset_it, connections)


@contextlib.contextmanager
def blackhole():
    """A port whose listen queue is full: a connect to it hangs (SYNs are dropped)."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def blocking_ask(port, line):
    """One line on a fresh blocking socket, then quit: the reply, as text."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(line.encode() + b"\nquit\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    banner, _, rest = data.partition(SEP_LINE)
    return rest.decode().removesuffix("bye\n" + SEP)


def exchange(port, chunks, gap=0.0, half_close=False):
    """Connect, read the banner, send ``chunks`` (``gap`` seconds apart), then read
    until the server closes.  Returns (what came after the banner, how it ended)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        data = b""
        while SEP_LINE not in data:
            chunk = sock.recv(65536)
            assert chunk, "no banner"
            data += chunk
        data = data.partition(SEP_LINE)[2]
        with contextlib.suppress(ConnectionError):  # the server may close before the last chunk
            for n, chunk in enumerate(chunks):
                if n and gap:
                    time.sleep(gap)  # the attack's own pace
                sock.sendall(chunk)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        ending = "eof"
        try:
            while len(data) < 1 << 20 and (chunk := sock.recv(65536)):
                data += chunk
        except ConnectionResetError:
            ending = "reset"
        return data, ending


def http(port, request_line, body, content_type="text/plain", extra=b""):
    """An HTTP request with a body, as a browser or curl would send it."""
    return (request_line + b"\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (port, content_type.encode(), len(body), extra)
            + body)


# -- a pseudo-terminal, for tests that drive a real interactive program (telnet, tshell) --------

# Make the pty the program's controlling terminal, so Ctrl-C there is SIGINT for it.
LOGIN_TTY = "import os, sys; os.login_tty(0); os.execvp(sys.argv[1], sys.argv[1:])"


class Terminal:
    """The master side of a pty: collects output, waits for text in it."""

    def __init__(self, fd):
        self.fd, self.output, self.pos, self.closed = fd, bytearray(), 0, False
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(fd, self._readable)

    def _readable(self):
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            chunk = b""
        self.output += chunk
        if not chunk:
            self.closed = True
            self.loop.remove_reader(self.fd)
        self.changed.set()

    async def _more(self, deadline):
        """Wait for more output until ``deadline``; False once closed or past it."""
        left = deadline - self.loop.time()
        if self.closed or left <= 0:
            return False
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), left)
        return True

    def type(self, data):
        os.write(self.fd, data)

    async def expect(self, needle):
        """Output (CRs removed) from where the last expect stopped, through NEEDLE."""
        deadline = self.loop.time() + TIMEOUT
        for _ in range(100_000):
            text = self.output.replace(b"\r", b"")
            found = text.find(needle, self.pos)
            if found >= 0:
                seen, self.pos = bytes(text[self.pos:found + len(needle)]), found + len(needle)
                return seen
            if not await self._more(deadline):
                break
        raise AssertionError(f"never saw {needle!r}; after {bytes(text[:self.pos])[-200:]!r} "
                             f"got {bytes(text[self.pos:])[-500:]!r}")

    async def read_until_closed(self):
        """All output until the program on it has gone (bounded in time)."""
        deadline = self.loop.time() + TIMEOUT
        for _ in range(100_000):
            if not await self._more(deadline):
                break
        return bytes(self.output)

    def close(self):
        if not self.closed:
            self.loop.remove_reader(self.fd)
        os.close(self.fd)


@contextlib.asynccontextmanager
async def on_terminal(*argv, **options):
    """ARGV run on a pseudo-terminal that is its controlling terminal (so Ctrl-C
    there is SIGINT); yields (process, Terminal) and kills it if still running."""
    master, slave = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOGIN_TTY, *argv,
            stdin=slave, stdout=slave, stderr=slave, **options)
    finally:
        os.close(slave)
    terminal = Terminal(master)
    try:
        yield process, terminal
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        terminal.close()


# -- tshell --------------------------------------------------------------------------------------

def tshell(*args, stdin=subprocess.DEVNULL, env=None, new_session=False):
    """Run tshell.py as a user would; (exit status, stdout, stderr).  With
    ``new_session`` it has no terminal to ask a password on."""
    done = subprocess.run([sys.executable, "tshell.py", *args], cwd=ROOT, stdin=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT * 3,
                          start_new_session=new_session, check=False,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout, done.stderr


def run_tshell_main(*argv, stdin=None):
    """tshell's main() in this process; (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = tshell_main(list(argv), stdin=stdin or io.StringIO(""), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def tshell_on_terminal(port, history):
    """tshell.py on a pseudo-terminal: yields (process, Terminal)."""
    return on_terminal(
        sys.executable, "tshell.py", f"127.0.0.1:{port}", cwd=ROOT,
        env={**os.environ, "TSHELL_HISTORY": str(history), "TERM": "dumb",
             "NO_COLOR": "1", "INPUTRC": os.devnull})


# -- TLS -----------------------------------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                   timeout=TIMEOUT * 3)


# name: (signing CA, days valid); the server's certificate is for 127.0.0.1 and localhost
CERTIFICATES = {"server": ("ca", "2"), "alice": ("ca", "2"), "expired": ("ca", "-1"),
                "mallory": ("ca", "2"),  # signed by the trusted CA, naming no user
                "stranger": ("other-ca", "2")}  # from a CA nobody trusts


def make_pki(directory):
    """Certificates made with openssl, with quick EC keys: two CAs (ca is the one
    trusted) and, for each of CERTIFICATES, NAME.pem and NAME.key."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-subj", f"/CN={ca}", "-days", "2", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, (ca, days) in CERTIFICATES.items():
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={'localhost' if name == 'server' else name}", cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", days, *extra, cwd=directory)
    return directory


def tls_settings(pki, mutual=False):
    settings = {"tls_cert": str(pki / "server.pem"), "tls_key": str(pki / "server.key")}
    if mutual:
        settings["tls_client_ca"] = str(pki / "ca.pem")
    return settings


def client_ssl(pki, who=None):
    return tls_context(str(pki / "ca.pem"), who and str(pki / f"{who}.pem"),
                       who and str(pki / f"{who}.key"))


def tls_call(port, pki, who=None, line="testsvc add 1 2"):
    """One call with the blocking client over TLS (as WHO, if given); its value."""
    with Client("127.0.0.1", port, ssl=client_ssl(pki, who), timeout=TIMEOUT) as client:
        return client.call(line).value


# -- supervised programs (proc) ---------------------------------------------------------

def _stat_after_name(pid):
    """The fields of /proc/PID/stat after the command name (it may hold spaces
    and parentheses); None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def _alive(fields):
    return fields is not None and fields[0] not in (b"Z", b"X")


def live_members(pgid):
    """Processes of group PGID that are not zombies (a killed member is a zombie
    until its new parent reaps it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_after_name(entry)
            if _alive(fields) and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def supervised(tag=None):
    """{pid: (program, pgid)} of the live processes some proc started (their
    environment says SMANAGER_PROGRAM=program); with TAG ("KEY=VALUE"), only
    those whose environment also holds it, so that a test sees its own
    programs and not those of tests running beside it."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        program = next((item[len(b"SMANAGER_PROGRAM="):].decode(errors="replace")
                        for item in environ if item.startswith(b"SMANAGER_PROGRAM=")), None)
        if program is None or (tag is not None and tag.encode() not in environ):
            continue
        fields = _stat_after_name(entry)
        if _alive(fields):
            found[int(entry)] = (program, int(fields[2]))
    return found


def of_this_run(pid):
    """Whether process PID descends from this process, or is an orphan (whose
    parent died: nobody can say whose it was); not when another process tree,
    a test run beside this one, started it."""
    me, parent = os.getpid(), pid
    for depth in range(256):  # bounded: a process tree is not that deep
        fields = _stat_after_name(parent)
        if fields is None:
            return False  # gone meanwhile
        parent = int(fields[1])
        if parent == me:
            return True
        if parent <= 1:
            return depth == 0  # its parent died: an orphan, adopted by init
    return False


# -- users ---------------------------------------------------------------------------------------

FAST = passwords.MIN_ITERATIONS  # PBKDF2 iterations for tests: the least allowed


def make_users(path, **levels_by_name):
    """A users file where each user's password is its name and "-pw"."""
    users.save(path, {name: users.User(name, levels.parse(level),
                                       passwords.Verifier.for_password(f"{name}-pw", FAST))
                      for name, level in levels_by_name.items()})
    return str(path)


# What a users file the server cannot use is told (auth/users.py), as tests expect it.
MISSING = "it does not exist; 'smanager users add NAME' creates it"
NOBODY = "it names no users; 'smanager users add NAME' adds one"
