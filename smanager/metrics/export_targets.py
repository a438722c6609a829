"""The targets of the monitor's exports: queues, sends, retries, the textfile.

Rules:

1. A push target (Graphite, Influx) keeps a bounded queue: ``offer(sample)`` is O(1) and
   never blocks; a full queue drops its OLDEST sample, counted in ``dropped``: after an
   outage the receiver gets the newest samples and one gap, not a frozen past.
2. A push target sends what is queued every ``every`` seconds, and as soon as WAKE_AT
   are queued, BATCH samples at most per send.  A failed send (no connection, a
   timeout, HTTP 5xx) puts its batch back at the head of the queue (its oldest dropped
   past the bound) and the next try waits 1 s, doubling up to 60 s; a success goes back
   to ``every``.  A batch refused (HTTP 4xx) is dropped and counted.
   - Graphite: one persistent TCP connection, plaintext ``PREFIX.name value ts`` lines.
     The protocol has no acknowledgement: a batch written as carbon goes down is lost,
     and one interrupted mid-write is sent again (carbon keeps one value per second).
   - InfluxDB 1.x: one POST of line protocol per batch (Connection: close); 2xx is done.
3. Prometheus: ``prometheus_text`` of ``latest()``, every value a gauge (counters are
   rates already).  The textfile is written at start and every ``every`` seconds: a
   temp file beside it, fsync, os.replace, in a thread; mode 0644, for node_exporter.
   It is left in place at close.  exporting.py renders it.
4. Each target counts sent, dropped and failed sends and keeps its last error; a
   failure is logged once, until the target works again or fails otherwise.
"""

import asyncio
import collections
import contextlib
import logging
import os
import tempfile

from .formats import Sample, graphite_lines, influx_lines
from .scrape_endpoint import one_line

log = logging.getLogger("smanager.monitor")

WAKE_AT = 1000  # samples queued that start a send before its time
BATCH = 5000  # samples per send at most
BACKOFF_FIRST, BACKOFF_MOST = 1.0, 60.0  # seconds before a retry
CONNECT_TIMEOUT, SEND_TIMEOUT = 5.0, 10.0
PRECISIONS = {"n": 1, "ns": 1, "u": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
              "h": 3600 * 10**9}  # InfluxDB's timestamp units, in nanoseconds


class Target:
    """A target's tallies and its last error; each failure is logged once (rule 4)."""

    connected = None  # not a link
    queue = ()

    def __init__(self, name, where, wall):
        self.name, self.where, self.wall = name, where, wall
        self.sent = self.dropped = self.failed = 0
        self.last_error = None  # (wall time, text)
        self.logged = None  # the failure told in the log, until a success

    def failure(self, text):
        self.failed += 1
        self.last_error = (self.wall(), text)
        if text != self.logged:
            log.warning("export to %s %s: %s", self.name, self.where, text)
            self.logged = text

    def success(self, count):
        self.sent += count
        if self.logged is not None:
            log.info("export to %s %s works again", self.name, self.where)
            self.logged = None

    def status(self):
        return {"name": self.name, "where": self.where, "sent": self.sent,
                "dropped": self.dropped, "failed": self.failed,
                "last_error": self.last_error and self.last_error[1],
                "last_error_at": self.last_error and self.last_error[0],
                "queued": len(self.queue), "connected": self.connected}


class _Refused(Exception):
    """The receiver refused a batch: sending it again would not help."""


class Push(Target):
    """A bounded queue and the loop that sends it (rules 1 and 2); subclasses deliver."""

    def __init__(self, name, where, settings, wall):
        super().__init__(name, where, wall)
        self.every, self.bound = settings.every, settings.buffer
        self.queue = collections.deque()
        self.wake = asyncio.Event()
        self.backoff = 0.0

    def offer(self, sample):
        if len(self.queue) >= self.bound:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(sample)
        if len(self.queue) >= WAKE_AT:
            self.wake.set()

    async def run(self):
        while True:
            if self.backoff:
                await asyncio.sleep(self.backoff)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.every):
                        await self.wake.wait()
            self.wake.clear()
            await self.flush()

    async def flush(self):
        """Send the queue batch by batch, until it is empty or a send fails."""
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(BATCH, len(self.queue)))]
            done = False
            try:
                await self.deliver(batch)
                done, self.backoff = True, 0.0
                self.success(len(batch))
            except _Refused as exc:
                done = True
                self.dropped += len(batch)
                self.failure(str(exc))
            except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, _Again) as exc:
                self.backoff = min(BACKOFF_MOST, max(BACKOFF_FIRST, 2 * self.backoff))
                self.failure(one_line(exc))
                return
            finally:
                if not done:  # failed or cancelled: back at the head, oldest dropped past the bound
                    keep = batch[max(0, len(batch) - (self.bound - len(self.queue))):]
                    self.dropped += len(batch) - len(keep)
                    self.queue.extendleft(reversed(keep))

    async def disconnect(self):
        """Close the link gracefully, so that what is written reaches the receiver."""

    def abort(self):
        """Drop the link at once."""


class Graphite(Push):
    def __init__(self, settings, wall):
        super().__init__("graphite", f"{settings.host}:{settings.port}", settings, wall)
        self.settings, self.reader, self.writer, self.connected = settings, None, None, False

    async def deliver(self, batch):
        prefix = self.settings.prefix
        lines = graphite_lines([Sample(prefix + s.name, s.value, s.ts) for s in batch])
        if self.writer is None or self.reader.at_eof() or self.writer.is_closing():
            self.abort()  # carbon closed it: a new one
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self.reader, self.writer = await asyncio.open_connection(
                    self.settings.host, self.settings.port)
            self.connected = True
        try:
            self.writer.write(lines.encode())
            async with asyncio.timeout(SEND_TIMEOUT):
                await self.writer.drain()
        except BaseException:
            self.abort()
            raise

    async def disconnect(self):
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None
        self.connected = False

    def abort(self):
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None
        self.connected = False


class _Again(Exception):
    """The receiver could not take a batch now (HTTP 5xx): send it again later."""


class Influx(Push):
    def __init__(self, settings, wall):
        super().__init__("influx", f"http://{settings.netloc}{settings.target}", settings, wall)
        self.settings, self.connected = settings, False

    async def deliver(self, batch):
        settings, unit = self.settings, PRECISIONS[self.settings.precision]
        body = influx_lines(batch)
        if unit > 1:  # the timestamp, last on each line, in the url's precision
            body = "".join(f"{rest} {int(ns) // unit}\n" for rest, _, ns in
                           (line.rpartition(" ") for line in body.split("\n")[:-1]))
        data = body.encode()
        auth = f"Authorization: {settings.authorization}\r\n" if settings.authorization else ""
        request = (f"POST {settings.target} HTTP/1.1\r\nHost: {settings.netloc}\r\n"
                   f"User-Agent: smanager\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   f"Content-Length: {len(data)}\r\n{auth}Connection: close\r\n\r\n")
        self.connected = False
        async with asyncio.timeout(SEND_TIMEOUT):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(settings.host, settings.port)
            try:
                writer.write(request.encode() + data)
                await writer.drain()
                status, first_line = await _http_answer(reader)
            finally:
                writer.close()
        self.connected = True
        if 400 <= status < 500:
            raise _Refused(f"HTTP {status}: {first_line}")
        if not 200 <= status < 300:
            raise _Again(f"HTTP {status}: {first_line}")


async def _http_answer(reader):
    """(status, the body's first line) of an HTTP response."""
    head = await reader.readuntil(b"\r\n\r\n")  # LimitOverrunError past 64 KiB
    status_line, *headers = head.decode("latin-1").split("\r\n")
    words = status_line.split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        raise _Again(f"not an HTTP answer: {status_line[:60]!r}")
    lengths = [int(value) for name, _, value in (line.partition(":") for line in headers)
               if name.strip().lower() == "content-length"]
    body = await (reader.readexactly(min(lengths[0], 4096)) if lengths else reader.read(4096))
    text = body.decode(errors="replace").strip()
    return int(words[1]), text.splitlines()[0][:200] if text else "(no body)"


class Textfile(Target):
    """The Prometheus text, written atomically to a file every so often (rule 3)."""

    def __init__(self, settings, render, wall):
        super().__init__("prometheus textfile", settings.textfile, wall)
        self.every, self.render = settings.every, render

    async def run(self):
        while True:
            await self.flush()
            await asyncio.sleep(self.every)

    async def flush(self):
        try:
            await asyncio.to_thread(write_atomically, self.where, self.render())
        except OSError as exc:
            self.failure(one_line(exc))
        else:
            self.success(1)


def write_atomically(path, text):
    """TEXT in the file PATH, all or nothing, even across a crash: a temp file in the
    same directory, synced, then renamed over it."""
    directory, name = os.path.split(path)
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # node_exporter reads it as a user of its own
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
