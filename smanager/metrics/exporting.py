"""The monitor's exports: samples handed on to Graphite, InfluxDB and Prometheus.

Rules:

1. ``read_export(table)`` reads ``[service.monitor.export]``: sub-tables ``graphite``
   (address "HOST[:PORT]", port 2003; prefix, put before each name with a dot),
   ``influx`` (url "http://HOST[:PORT]/write?db=NAME[&precision=s]"; a token, or a
   username and password) and ``prometheus`` (textfile, an absolute path; listen,
   "[HOST:]PORT", 127.0.0.1 unless a host is given; one of them at least).  Each takes
   ``every`` (seconds, 10); ``buffer`` (samples queued per push target, 10000) is set
   for all, or per target.  A mistake is a ValueError of one line naming the key, an
   unknown key naming the nearest known one.  No credential is ever in a message, a
   log line, the status or a repr; the url may hold none.
2. ``Exports(settings, latest)``: ``offer(name, value, stamp)``, on the event loop, never
   blocks and is O(1): it queues the sample for each push target (Graphite, InfluxDB;
   export_targets.py says how they queue, send and retry).  NaN and Inf are not queued
   (neither takes them), nor a name whose labels cannot be read.
3. Prometheus: ``prometheus_text`` of ``latest()``, every value a gauge (counters are
   rates already), written to the textfile (export_targets.py) and served by the
   endpoint (scrape_endpoint.py).
4. ``start()`` starts a task per target and the endpoint (ExportError, one line, if it
   cannot listen).  ``close()`` stops them, makes one last attempt to send what is
   queued and to write the textfile, CLOSE_LIMIT seconds at most, then disconnects.
5. ``status()``: per target a dict: name, where, sent, dropped, failed (sends),
   last_error (one line), last_error_at (wall), queued, connected (None: not a link).
"""

import asyncio
import base64
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..supervise.checks import CheckedTable, SpecError, check_keys, shown
from .export_targets import PRECISIONS, Graphite, Influx, Textfile
from .formats import Sample, prometheus_text, split_name
from .scrape_endpoint import ExportError, ScrapeEndpoint

__all__ = ["ExportError", "ExportSettings", "Exports", "read_export"]

log = logging.getLogger("smanager.monitor")

WHERE = "service.monitor.export"
EVERY, BUFFER, GRAPHITE_PORT = 10.0, 10_000, 2003
CLOSE_LIMIT = 2.0  # seconds for the last attempt at close
KNOWN = {"graphite": {"address", "prefix", "every", "buffer"},
         "influx": {"url", "every", "token", "username", "password", "buffer"},
         "prometheus": {"textfile", "listen", "every"}}
LISTEN_RULE = 'a port or "HOST:PORT" (0.0.0.0:PORT for every interface)'
PRINTABLE = re.compile(r"[!-~]+\Z")  # ASCII, no spaces nor controls
ADDRESS = re.compile(r"(?:\[([^\]]+)\]|([^:\[\]\s]+))(?::(\d{1,5}))?\Z")  # HOST, [V6]; :PORT


@dataclass(frozen=True)
class GraphiteSettings:
    host: str
    port: int = GRAPHITE_PORT
    prefix: str = ""  # "" or ending in a dot
    every: float = EVERY
    buffer: int = BUFFER


@dataclass(frozen=True)
class InfluxSettings:
    host: str
    port: int
    netloc: str  # HOST[:PORT] as the url has it: the Host header
    target: str  # path and query, as the request line has them
    precision: str = "ns"
    every: float = EVERY
    buffer: int = BUFFER
    authorization: str | None = field(default=None, repr=False)  # a header value: a secret


@dataclass(frozen=True)
class PrometheusSettings:
    textfile: str | None = None
    listen: tuple[str, int] | None = None
    every: float = EVERY


@dataclass(frozen=True)
class ExportSettings:
    graphite: GraphiteSettings | None = None
    influx: InfluxSettings | None = None
    prometheus: PrometheusSettings | None = None


def read_export(table: Mapping, where: str = WHERE) -> ExportSettings:
    check_keys(where, table, {*KNOWN, "buffer"})
    buffer = CheckedTable(where, table).integer("buffer", BUFFER, 1)
    parts = {}
    for kind, read in (("graphite", _graphite), ("influx", _influx), ("prometheus", _prometheus)):
        if kind in table:
            if not isinstance(table[kind], Mapping):
                raise SpecError(f"{where}: {kind} must be a table, not {shown(table[kind])}")
            check_keys(where, table[kind], KNOWN[kind], prefix=f"{kind}.")
            values = CheckedTable(where, table[kind], prefix=f"{kind}.")
            parts[kind] = read(values, values.number("every", EVERY, above=0),
                               values.integer("buffer", buffer, 1))
    return ExportSettings(**parts)


def _text(values, key, required=False):
    value = values.get(key)
    if value is None and required:
        values.fail(key, "is required")
    if value is not None and not (isinstance(value, str) and value):
        values.fail(key, f"must be a non-empty string, not {shown(value)}")
    return value


def _address(values, key, text, default_port, rule='"HOST:PORT"'):
    match = ADDRESS.match(text)
    port = int(match[3]) if match and match[3] else default_port
    if not match or port is None or port > 65535:
        values.fail(key, f"must be {rule}, not {shown(text)}")
    return match[1] or match[2], port


def _graphite(values, every, buffer):
    host, port = _address(values, "address", _text(values, "address", True), GRAPHITE_PORT)
    if port == 0:
        values.fail("address", "needs a port from 1 to 65535")
    prefix = (_text(values, "prefix") or "").strip(".")
    return GraphiteSettings(host, port, prefix and prefix + ".", every, buffer)


def _influx(values, every, buffer):
    text = _text(values, "url", True)  # never shown: it may hold secrets
    url = urllib.parse.urlsplit(text)
    query = urllib.parse.parse_qs(url.query)
    try:
        port = url.port or 80
    except ValueError:
        port = None
    if (url.scheme != "http" or not url.hostname or port is None or "@" in url.netloc
            or not PRINTABLE.match(text)):
        values.fail("url", 'must be "http://HOST:PORT/write?db=NAME"')
    if not query.get("db", [""])[0]:
        values.fail("url", "must name the database: ...?db=NAME")
    if "u" in query or "p" in query:
        values.fail("url", "must hold no credentials (u=, p=): set username and password")
    precision = query.get("precision", ["ns"])[-1]
    if precision not in PRECISIONS:
        values.fail("url", f"precision must be one of {', '.join(PRECISIONS)}")
    token, user, password = (_text(values, key) for key in ("token", "username", "password"))
    if token and (user or password):
        values.fail("token", "cannot be set with username and password")
    for key, secret in (("token", token), ("username", user), ("password", password)):
        if secret is not None and not PRINTABLE.match(secret):  # it goes in a header line
            values.fail(key, "must be printable ASCII without spaces")
    if user is not None and ":" in user:
        values.fail("username", 'must not hold ":"')
    if (user is None) != (password is None):
        values.fail(*(("password", "is required with username") if user
                      else ("username", "is required with password")))
    secret = base64.b64encode(f"{user}:{password}".encode()).decode() if user else None
    return InfluxSettings(url.hostname, port, url.netloc, f"{url.path or '/'}?{url.query}",
                          precision, every, buffer,
                          f"Token {token}" if token else secret and f"Basic {secret}")


def _prometheus(values, every, buffer):
    textfile, listen = values.path("textfile"), values.get("listen")
    if isinstance(listen, int) and not isinstance(listen, bool) or str(listen).isdigit():
        listen = _address(values, "listen", f"127.0.0.1:{listen}", None, LISTEN_RULE)
    elif listen is not None:
        listen = _address(values, "listen", _text(values, "listen"), None, LISTEN_RULE)
    if textfile is None and listen is None:
        values.fail("textfile", "or prometheus.listen is required")
    return PrometheusSettings(textfile, listen, every)


def well_formed(name):
    """Whether NAME's labels, if it has any, can be read (formats.split_name)."""
    if "{" in name:
        try:
            split_name(name)
        except ValueError:
            return False
    return True


class Exports:
    def __init__(self, settings: ExportSettings, latest, *, wall=time.time):
        self.latest = latest
        self.push = [Graphite(settings.graphite, wall)] if settings.graphite else []
        self.push += [Influx(settings.influx, wall)] if settings.influx else []
        prometheus = settings.prometheus
        self.targets = self.push + ([Textfile(prometheus, self.render, wall)]
                                    if prometheus and prometheus.textfile else [])
        self.endpoint = (ScrapeEndpoint(prometheus.listen, self.render, wall=wall)
                         if prometheus and prometheus.listen else None)
        self.tasks = []

    def offer(self, name, value, stamp):
        if math.isfinite(value) and well_formed(name):
            sample = Sample(name, value, stamp)
            for target in self.push:
                target.offer(sample)

    def render(self):
        return prometheus_text(Sample(name, value, None)
                               for name, (value, _) in sorted(self.latest().items())
                               if well_formed(name))

    async def start(self):
        if self.endpoint is not None:
            await self.endpoint.start()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(target.run(), name=f"export to {target.name}")
                      for target in self.targets]

    async def close(self):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.endpoint is not None:
            await self.endpoint.close()
        try:
            async with asyncio.timeout(CLOSE_LIMIT):
                await asyncio.gather(*(target.flush() for target in self.targets))
                await asyncio.gather(*(target.disconnect() for target in self.push))
        except TimeoutError:
            log.warning("export: gave up the last sends after %g s; %d samples not sent",
                        CLOSE_LIMIT, sum(len(target.queue) for target in self.push))
        finally:
            for target in self.push:
                target.abort()

    def status(self):
        return [target.status() for target in self.targets] + (
            [self.endpoint.status()] if self.endpoint is not None else [])

