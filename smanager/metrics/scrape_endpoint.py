"""The Prometheus scrape endpoint of the monitor's exports: ``GET /metrics`` over HTTP/1.1.

Rules:

- ``ScrapeEndpoint((host, port), render)`` listens where it is told (exporting.py makes
  a bare port 127.0.0.1: another interface only when the settings name it; port 0 lets
  the OS choose, ``address`` tells which).  ``start()`` raises ExportError, one line,
  when it cannot listen there.
- One request per connection, every answer ends with ``Connection: close``:
  ``GET /metrics`` (any query) is 200 with ``render()``'s text made at that moment,
  ``text/plain; version=0.0.4``; another path is 404; another method 405 (Allow: GET);
  a request line that is not ``METHOD TARGET HTTP/x`` is 400.  A request body is ignored.
- The request head (lines up to a blank one, "\\r\\n" or "\\n") must come whole within
  READ_TIMEOUT seconds and HEAD_LIMIT bytes; a slow or huge one is closed unanswered
  and counted in ``failed``.  Sending the answer is bounded by READ_TIMEOUT too.
- ``status()`` is one row in the shape exporting.py gives each target: ``sent`` counts
  scrapes answered 200, ``connected`` says whether it listens.
"""

import asyncio
import contextlib
import logging
import os
import time

log = logging.getLogger("smanager.monitor")

HEAD_LIMIT = 8192  # bytes of request line and headers
READ_TIMEOUT = 5.0  # seconds for the whole head to arrive, and for the answer to leave
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error"}


class ExportError(Exception):
    """An export that cannot start (its port is taken); the message is one line."""


class ScrapeEndpoint:
    def __init__(self, listen, render, *, wall=time.time):
        self.listen, self.render, self.wall = listen, render, wall
        self.server = None
        self.address = listen
        self.sent = self.failed = 0
        self.last_error = None  # (wall time, text)

    async def start(self):
        host, port = self.listen
        try:
            self.server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)
        except OSError as exc:
            raise ExportError(f"prometheus endpoint: cannot listen on {host}:{port}: "
                              f"{one_line(exc)}") from None
        self.address = self.server.sockets[0].getsockname()[:2]

    async def close(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def status(self):
        host, port = self.address
        return {"name": "prometheus endpoint", "where": f"{host}:{port}", "sent": self.sent,
                "dropped": 0, "failed": self.failed,
                "last_error": self.last_error and self.last_error[1],
                "last_error_at": self.last_error and self.last_error[0], "queued": 0,
                "connected": self.server is not None and self.server.is_serving()}

    async def _serve(self, reader, writer):
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                request_line = await _request_head(reader)
                if request_line is not None:
                    writer.write(self._answer(request_line))
                    await writer.drain()
        except (TimeoutError, ValueError, ConnectionError) as exc:
            self._failed(f"a request was closed unanswered: {one_line(exc)}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, request_line):
        words = request_line.decode("latin-1").split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            return _response(400, b"a request line is METHOD TARGET HTTP/1.1\n")
        method, target, _ = words
        if method != "GET":
            return _response(405, b"only GET\n", b"Allow: GET\r\n")
        if target.partition("?")[0] != "/metrics":
            return _response(404, b"the metrics are at /metrics\n")
        try:
            body = self.render().encode()
        except Exception as exc:  # noqa: BLE001 - a bug in rendering: logged, answered 500
            log.error("prometheus endpoint: rendering the metrics failed", exc_info=exc)
            self._failed(f"rendering failed: {one_line(exc)}")
            return _response(500, b"rendering the metrics failed\n")
        self.sent += 1
        return _response(200, body, f"Content-Type: {CONTENT_TYPE}\r\n".encode())

    def _failed(self, text):
        self.failed += 1
        self.last_error = (self.wall(), text)


async def _request_head(reader):
    """The request line, once the whole head is read; None if the client sent nothing."""
    size, first = 0, None
    while line := await reader.readline():  # a line past HEAD_LIMIT raises ValueError
        size += len(line)
        if size > HEAD_LIMIT:
            raise ValueError(f"its head is longer than {HEAD_LIMIT} bytes")
        if not line.strip():
            if first is None:
                continue  # blank lines before the request line are allowed (RFC 9112 2.2)
            return first
        first = first or line.strip()
    if first is not None:
        raise ConnectionError("the client closed before the end of its head")
    return None


def _response(status, body, headers=b""):
    return (b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, REASONS[status].encode(), headers, len(body), body))


def one_line(exc):
    """An error as one line: its errno's text, its message, or what it is (a timeout)."""
    if isinstance(exc, OSError) and exc.errno:  # asyncio's texts wrap it: "Connect call failed"
        return os.strerror(exc.errno)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
