"""The bundled collectors that ask a server over the network: redis, memcached, nginx
and apache (what each says about itself), and the http and tcpcheck checks.

Rules:

1. ``Kind(options, name=NAME)`` checks the options as asking.py rule 1 says: a
   ValueError, one line naming the option.  Addresses and URLs are asking.py's (rule 2);
   redis and memcached also take the path of a Unix socket.
2. ``collect()`` runs on the loop: one connection, one question, the reply read, the
   connection closed.  All of it is one asking.talking within asking.deadline, so a
   failure is worded here before the monitor gives the run up.
3. A scraper (redis, memcached, nginx, apache) returns its scrapes.py reader's values and
   sets ``self.counters`` to the reader's counters.  A refused connection, a timeout, an
   error reply or a page the reader cannot use raises CollectError: one line naming the
   address or URL, never a password.
4. A check (http, tcpcheck) does not raise for what it checks: ``up`` is 1 or 0 and
   ``seconds`` how long the answer (or the failure) took; http adds ``status``, NaN when
   no reply came.  Why a check is down is logged when the reason changes, not every run.
5. redis: AUTH (if ``password``) then ``INFO``, in RESP; memcached: ``stats`` to END;
   nginx and apache: one asking.http_get of the status page, which must answer 200.
"""

import asyncio
import logging
import math

from ..collector import Collector
from ..supervise.checks import shown
from . import scrapes
from .asking import (
    MAX_LINES,
    address_option,
    check_keys,
    connection,
    deadline,
    http_get,
    reply_line,
    said,
    shown_address,
    talking,
    url_option,
    within_limit,
)
from .collecting import CollectError

log = logging.getLogger("smanager.monitor")


class Redis(Collector):
    """Redis's INFO: clients, memory, commands and keys per second..."""

    name = "redis"

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"address", "password"})
        self.address = address_option(self.options, "address", "127.0.0.1:6379", socket_path=True)
        self.password = self.options.get("password")
        if self.password is not None and not isinstance(self.password, str):
            raise ValueError("password must be text")  # its value is never shown (rule 3)

    async def collect(self):
        async with talking(shown_address(*self.address), deadline(self)), \
                connection(*self.address) as (reader, writer):
            if self.password is not None:
                secret = self.password.encode()
                writer.write(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
                reply = await reply_line(reader)
                if not reply.startswith(b"+"):
                    raise ValueError(f"AUTH refused: {said(reply)}")
            writer.write(b"INFO\r\n")
            header = await reply_line(reader)
            if not header.startswith(b"$") or not header[1:].strip().isdigit():
                raise ValueError(said(header))
            size = within_limit(int(header[1:]))
            text = (await reader.readexactly(size + 2))[:-2].decode("utf-8", "replace")
            values, self.counters = scrapes.redis_info(text)
        return values


class Memcached(Collector):
    """memcached's stats: items, memory, gets, hits and evictions per second..."""

    name = "memcached"

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"address"})
        self.address = address_option(self.options, "address", "127.0.0.1:11211",
                                      socket_path=True)

    async def collect(self):
        async with talking(shown_address(*self.address), deadline(self)), \
                connection(*self.address) as (reader, writer):
            writer.write(b"stats\r\n")
            lines = []
            for _ in range(MAX_LINES):
                lines.append(await reply_line(reader))
                if lines[-1].rstrip() == b"END":
                    break
                if lines[-1].startswith((b"ERROR", b"SERVER_ERROR", b"CLIENT_ERROR")):
                    raise ValueError(said(lines[-1]))
            else:
                raise ValueError(f"no END after {MAX_LINES} lines")
            values, self.counters = scrapes.memcached_stats(
                b"".join(lines).decode("utf-8", "replace"))
        return values


class _StatusPage(Collector):
    """A server's status page over HTTP, read by ``read``."""

    default_url = ""
    read = None  # the scrapes.py reader

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"url"})
        self.url = url_option(self.options, "url", self.default_url)

    async def collect(self):
        async with talking(self.url.text, deadline(self)):
            status, body = await http_get(self.url)
            if status != 200:
                raise ValueError(f"HTTP status {status}, not 200")
            values, self.counters = type(self).read(body.decode("utf-8", "replace"))
        return values


class Nginx(_StatusPage):
    """nginx's stub_status: connections, and requests per second"""

    name = "nginx"
    default_url = "http://127.0.0.1/nginx_status"
    read = staticmethod(scrapes.nginx_stub_status)


class Apache(_StatusPage):
    """Apache's server-status: workers per state, accesses and bytes per second"""

    name = "apache"
    default_url = "http://127.0.0.1/server-status?auto"
    read = staticmethod(scrapes.apache_status)


class _Check(Collector):
    """up, seconds and what ``probe()`` adds (rule 4)."""

    down = {"up": 0.0}  # the values of a failed probe, less seconds

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        self._why_down = None

    async def collect(self):
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with talking(self.where, deadline(self)):
                values, why = await self.probe()
        except CollectError as exc:
            values, why = dict(self.down), str(exc)
        values["seconds"] = loop.time() - started
        if why != self._why_down:
            if why:
                log.warning("%s: down: %s", self.name, why)
            else:
                log.info("%s: up again", self.name)
            self._why_down = why
        return values


class Http(_Check):
    """Whether a URL answers with the expected status, and how fast"""

    name = "http"
    down = {"up": 0.0, "status": math.nan}

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"url", "expect"})
        self.url = url_option(self.options, "url")
        self.where = self.url.text
        expect = self.options.get("expect", [200])
        expect = [expect] if not isinstance(expect, list) else expect
        if not expect or not all(type(code) is int and 100 <= code <= 599 for code in expect):
            raise ValueError(f"expect must be a status or a list of them (100-599), "
                             f"not {shown(self.options['expect'])}")
        self.expect = frozenset(expect)

    async def probe(self):
        status, _ = await http_get(self.url, body=False)
        up = status in self.expect
        why = None if up else f"{self.url.text}: status {status}, expected " \
                              f"{' or '.join(map(str, sorted(self.expect)))}"
        return {"up": float(up), "status": float(status)}, why


class TcpCheck(_Check):
    """Whether a TCP port accepts a connection, and how fast"""

    name = "tcpcheck"  # "tcp" is system.py's connections per state

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"address"})
        self.address = address_option(self.options, "address")
        self.where = shown_address(*self.address)

    async def probe(self):
        async with connection(*self.address):
            return {"up": 1.0}, None


KINDS = {kind.name: kind for kind in (Redis, Memcached, Nginx, Apache, Http, TcpCheck)}
