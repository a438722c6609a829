"""Asking a server over the network, for probes.py's collectors: their options checked,
one talk with its deadline, an HTTP GET and the lines of a plain-text reply.

Rules:

1. An option helper (check_keys, required, text_option, address_option, url_option)
   takes a TOML table's values and raises ValueError, one line naming the option; an
   unknown key names the nearest known one.
2. An address is HOST:PORT or [IPV6]:PORT, given as (host, port); with ``socket_path``
   it may be the path of a Unix socket instead, given as (path, None).  A URL is http://
   or https:// (the system's CAs, the host name checked), with no user or password in it.
3. ``talking(where, seconds)`` gives a talk up after SECONDS; every failure in it (a
   refused connection, a timeout, a reply cut short, a ValueError of a reply we cannot
   read) becomes a CollectError of one line naming WHERE, never a password.
   ``deadline(collector)`` is IO_SHARE of its ``time_limit``, so a failure is worded
   here ("no reply within 4.5 s") before the monitor gives the run up.
4. ``connection`` closes what it opened, however the talk ends.
5. ``http_get`` is one GET, HTTP/1.1 with ``Connection: close``; the body is read by its
   Content-Length, chunked, or to the end of the stream, at most MAX_REPLY bytes, and a
   header of at most MAX_LINES lines.  ``reply_line`` is one line ending in a newline.
"""

import asyncio
import contextlib
import difflib
import functools
import ssl
from typing import NamedTuple
from urllib.parse import urlsplit

from ..supervise.checks import shown
from .collecting import CollectError

IO_SHARE = 0.9  # of time_limit: our own deadline comes first (rule 3)
MAX_REPLY = 1 << 20  # bytes of a reply we read at most
MAX_LINES = 10_000  # lines of a memcached reply or HTTP header, at most


def check_keys(options, known):
    """ValueError naming the first key of OPTIONS that is not KNOWN, and the nearest one."""
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {shown(close[0])}?)" if close else ""
            raise ValueError(f"unknown option {shown(key)}{hint}")


def required(options, key, default=None):
    """OPTIONS[KEY], else DEFAULT; ValueError if neither is given."""
    value = options.get(key, default)
    if value is None:
        raise ValueError(f"{key} is required")
    return value


def text_option(options, key, default=None):
    """OPTIONS[KEY] as non-empty text (see required)."""
    value = required(options, key, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be text, not {shown(value)}")
    return value


def address_option(options, key, default=None, socket_path=False):
    """(host, port) of HOST:PORT or [IPV6]:PORT; (path, None) for a Unix socket path
    when SOCKET_PATH allows one."""
    value = required(options, key, default)
    text = value if isinstance(value, str) else ""
    if socket_path and text.startswith("/"):
        return text, None
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not host or (":" in host and not bracketed) or not port.isdigit() \
            or not 0 < int(port) < 65536:
        rule = "HOST:PORT or a socket path" if socket_path else "HOST:PORT"
        raise ValueError(f"{key} must be {rule}, not {shown(value)}")
    return host, int(port)


class Url(NamedTuple):
    """An http:// or https:// URL, split for a GET (rule 2)."""

    text: str  # as given, for messages
    https: bool
    host: str
    port: int
    netloc: str  # the Host header
    target: str  # path and query


def url_option(options, key, default=None):
    """The Url of an http:// or https:// URL (rule 2)."""
    value = required(options, key, default)
    text = value if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts = port = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError(f"{key} must be an http:// or https:// URL, not {shown(value)}")
    if parts.username is not None:
        raise ValueError(f"{key} must not hold a user or password")
    https = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Url(text, https, parts.hostname, port or (443 if https else 80), parts.netloc, target)


def deadline(collector):
    """Seconds a talk of COLLECTOR may take (rule 3)."""
    return collector.time_limit * IO_SHARE


@functools.cache
def tls_context():
    return ssl.create_default_context()


@contextlib.asynccontextmanager
async def talking(where, seconds):
    """A talk with WHERE, given up after SECONDS; every failure one CollectError line
    naming WHERE (rule 3)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise CollectError(f"{where}: no reply within {seconds:.3g} s") from None
    except ConnectionRefusedError:
        raise CollectError(f"{where}: connection refused") from None
    except asyncio.IncompleteReadError:
        raise CollectError(f"{where}: the connection closed in the middle of the reply") from None
    except OSError as exc:
        raise CollectError(f"{where}: {exc.strerror or exc}".splitlines()[0]) from None
    except ValueError as exc:  # a reply we cannot read: ours, the scrape reader's, the stream's
        raise CollectError(f"{where}: {exc}".splitlines()[0]) from None


@contextlib.asynccontextmanager
async def connection(host, port, tls=None):
    """(reader, writer) to HOST:PORT, or to the Unix socket HOST when PORT is None."""
    if port is None:
        reader, writer = await asyncio.open_unix_connection(host)
    else:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        yield reader, writer
    finally:
        writer.close()


async def reply_line(reader):
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise ValueError("the connection closed before the reply was complete")
    return line


def said(line):
    return f"the server said {shown(line.decode('utf-8', 'replace').strip()[:80])}"


async def http_get(url, body=True):
    """(status, body) of one GET of URL (rule 5); with BODY False, (status, b"") as soon
    as the status line is read."""
    async with connection(url.host, url.port, tls_context() if url.https else None) as (
            reader, writer):
        writer.write(f"GET {url.target} HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: smanager\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n".encode())
        status_line = await reply_line(reader)
        version, _, rest = status_line.partition(b" ")
        if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
            raise ValueError(f"not an HTTP reply: {said(status_line)}")
        if not body:
            return int(rest[:3]), b""
        headers = {}
        for _ in range(MAX_LINES):
            line = await reply_line(reader)
            if not line.strip():
                return int(rest[:3]), await read_body(reader, headers)
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        raise ValueError(f"more than {MAX_LINES} header lines")


async def read_body(reader, headers):
    """The body after HEADERS (rule 5)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        # each chunk adds a byte at least, so MAX_REPLY bounds the loop
        while size := int((await reply_line(reader)).split(b";")[0], 16):
            within_limit(len(body) + size)
            body += await reader.readexactly(size)
            await reader.readexactly(2)  # the CRLF after each chunk
        return bytes(body)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ValueError(f"Content-Length {shown(length)} is not a number")
        return await reader.readexactly(within_limit(int(length)))
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        within_limit(len(body))
    return bytes(body)


def within_limit(size):
    if size > MAX_REPLY:
        raise ValueError(f"the reply is longer than {MAX_REPLY} bytes")
    return size


def shown_address(host, port):
    """HOST:PORT, [IPV6]:PORT or the socket path, as an address option is written (rule 2)."""
    return host if port is None else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
