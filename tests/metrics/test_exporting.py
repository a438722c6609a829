"""The monitor's exports without the real receivers: settings read from TOML tables,
queues and their bounds, and stand-in receivers on 127.0.0.1 (a line listener for
Graphite, a scripted HTTP server for InfluxDB), the textfile in tmp_path and the
scrape endpoint asked over real sockets.  test_exporting_real.py uses the real ones."""

import asyncio
import contextlib
import logging
import math
import os
import socket
import stat

import pytest
from helpers import TIMEOUT, Records, blackhole, closed_port, until

from smanager.metrics import export_targets, exporting, scrape_endpoint
from smanager.metrics.exporting import ExportError, Exports, read_export

NOW = 1_700_000_000


class Wall:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def no_latest():
    return {}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(export_targets, "BACKOFF_FIRST", 0.02)


@contextlib.asynccontextmanager
async def started(table, latest=no_latest, wall=Wall()):
    exports = Exports(read_export(table), latest, wall=wall)
    await exports.start()
    try:
        yield exports
    finally:
        await exports.close()


def the_row(exports, name):
    (row,) = [row for row in exports.status() if row["name"] == name]
    return row


# -- settings --------------------------------------------------------------------------

def test_settings_take_their_defaults_and_a_bare_port_listens_on_loopback():
    settings = read_export({"buffer": 50, "graphite": {"address": "carbon", "prefix": "web1."},
                            "influx": {"url": "http://db:8086/write?db=m", "buffer": 7},
                            "prometheus": {"listen": 9101, "textfile": "/run/sm.prom"}})
    graphite, influx, prometheus = settings.graphite, settings.influx, settings.prometheus
    assert (graphite.host, graphite.port, graphite.prefix, graphite.every, graphite.buffer) == (
        "carbon", 2003, "web1.", 10.0, 50)
    assert (influx.host, influx.port, influx.target, influx.precision, influx.buffer) == (
        "db", 8086, "/write?db=m", "ns", 7)
    assert prometheus.listen == ("127.0.0.1", 9101) and prometheus.textfile == "/run/sm.prom"
    assert read_export({"prometheus": {"listen": "9101"}}).prometheus.listen == ("127.0.0.1", 9101)
    assert read_export({"prometheus": {"listen": "0.0.0.0:9101"}}).prometheus.listen == (
        "0.0.0.0", 9101)
    assert read_export({}) == exporting.ExportSettings()


@pytest.mark.parametrize("table, message", [
    ({"grafite": {}}, 'unknown key "grafite" (did you mean "graphite"?)'),
    ({"graphite": {"adress": "h"}}, 'unknown key "graphite.adress" (did you mean "graphite.address"?)'),
    ({"graphite": {}}, "graphite.address is required"),
    ({"graphite": "h:2003"}, 'graphite must be a table, not "h:2003"'),
    ({"graphite": {"address": "h:70000"}}, 'graphite.address must be "HOST:PORT", not "h:70000"'),
    ({"graphite": {"address": "h", "every": 0}}, "graphite.every must be more than 0, not 0"),
    ({"graphite": {"address": "h", "every": "10s"}}, 'graphite.every must be a number, not "10s"'),
    ({"buffer": 0}, "buffer must be at least 1, not 0"),
    ({"influx": {"url": "https://h/write?db=m"}}, 'influx.url must be "http://HOST:PORT/write?db=NAME"'),
    ({"influx": {"url": "http://h/write"}}, "influx.url must name the database: ...?db=NAME"),
    ({"influx": {"url": "http://h/write?db=m&precision=q"}}, "influx.url precision must be one of"),
    ({"influx": {"url": "http://h/write?db=m", "username": "u"}},
     "influx.password is required with username"),
    ({"influx": {"url": "http://h/write?db=m", "token": "t", "password": "p"}},
     "influx.token cannot be set with username and password"),
    ({"influx": {"url": "http://h/write?db=m", "token": "a\r\nX: y"}},
     "influx.token must be printable ASCII without spaces"),
    ({"influx": {"url": "http://h/write?db=m", "username": "a:b", "password": "c"}},
     'influx.username must not hold ":"'),
    ({"prometheus": {}}, "prometheus.textfile or prometheus.listen is required"),
    ({"prometheus": {"listen": ":9101"}}, 'prometheus.listen must be a port or "HOST:PORT"'),
    ({"prometheus": {"textfile": "sm.prom"}}, 'prometheus.textfile must be an absolute path'),
])
def test_each_mistake_is_one_line_naming_its_key(table, message):
    with pytest.raises(ValueError) as raised:
        read_export(table)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith("service.monitor.export: ")


@pytest.mark.parametrize("url", ["http://u:hunter2@h/write?db=m", "http://h/write?db=m&p=hunter2",
                                 "http://h:hunter2/write?db=m", "http://h/wr ite?db=m&p=hunter2"])
def test_a_url_holding_a_password_is_refused_without_showing_it(url):
    with pytest.raises(ValueError) as raised:
        read_export({"influx": {"url": url}})
    assert "influx.url" in str(raised.value) and "hunter2" not in str(raised.value)


def test_credentials_are_in_no_repr_nor_where():
    for secrets in ({"token": "hunter2"}, {"username": "me", "password": "hunter2"}):
        settings = read_export({"influx": {"url": "http://h:8086/write?db=m", **secrets}})
        exports = Exports(settings, no_latest)
        assert "hunter2" not in repr(settings) and "hunter2" not in repr(exports.status())


# -- queues -----------------------------------------------------------------------------

async def test_a_full_queue_drops_its_oldest_samples_and_counts_them():
    exports = Exports(read_export({"graphite": {"address": "127.0.0.1:2003", "buffer": 3}}), no_latest)
    for n in range(5):
        exports.offer(f"m{n}", float(n), NOW + n)
    row = the_row(exports, "graphite")
    assert (row["queued"], row["dropped"], row["sent"]) == (3, 2, 0)
    assert [sample.name for sample in exports.push[0].queue] == ["m2", "m3", "m4"]


async def test_nan_inf_and_unreadable_labels_are_not_queued_nor_rendered():
    exports = Exports(read_export({"graphite": {"address": "h"}, "influx": {
        "url": "http://h/write?db=m"}}), lambda: {"ok": (1.0, NOW), 'bad{x="': (2.0, NOW)})
    for name, value in (("a", math.nan), ("b", math.inf), ('c{x="', 1.0), ('d{x="y"}', 1.0)):
        exports.offer(name, value, NOW)
    assert [row["queued"] for row in exports.status()] == [1, 1]
    assert exports.render() == "# HELP smanager_ok ok\n# TYPE smanager_ok gauge\nsmanager_ok 1.0\n"


# -- Graphite, against a stand-in receiver ------------------------------------------------

class LineReceiver:
    """A TCP listener on 127.0.0.1 keeping every line each connection sends."""

    def __init__(self, port=0):
        self.port, self.lines, self.connections = port, [], []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._take, "127.0.0.1", self.port,
                                                 reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        for writer in self.connections:
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    async def _take(self, reader, writer):
        self.connections.append(writer)
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                self.lines.append(line.decode())

    def hang_up(self):
        for writer in self.connections:
            writer.close()


async def test_graphite_gets_prefixed_lines_on_one_connection():
    async with LineReceiver() as carbon, started({"graphite": {
            "address": f"127.0.0.1:{carbon.port}", "prefix": "web1", "every": 0.01}}) as exports:
        exports.offer("load.load1", 0.5, NOW)
        exports.offer('disk.free{mount="/var log"}', 7.0, NOW + 1)
        assert await until(lambda: len(carbon.lines) == 2)
        exports.offer("load.load1", 0.25, NOW + 2)
        assert await until(lambda: len(carbon.lines) == 3)
        row = the_row(exports, "graphite")
    assert carbon.lines == [f"web1.load.load1 0.5 {NOW}\n", f"web1.disk.free._var_log 7.0 {NOW + 1}\n",
                            f"web1.load.load1 0.25 {NOW + 2}\n"]
    assert len(carbon.connections) == 1
    assert (row["sent"], row["queued"], row["connected"], row["failed"]) == (3, 0, True, 0)


async def test_a_thousand_queued_samples_are_sent_before_their_time():
    async with LineReceiver() as carbon, started({"graphite": {
            "address": f"127.0.0.1:{carbon.port}", "every": 3600}}) as exports:
        for n in range(export_targets.WAKE_AT):
            exports.offer("m", float(n), NOW + n)
        assert await until(lambda: len(carbon.lines) == export_targets.WAKE_AT)


async def test_close_sends_what_is_queued():
    async with LineReceiver() as carbon:
        async with started({"graphite": {"address": f"127.0.0.1:{carbon.port}",
                                         "every": 3600}}) as exports:
            exports.offer("m", 1.0, NOW)
        assert await until(lambda: carbon.lines == [f"m 1.0 {NOW}\n"])


async def test_graphite_keeps_the_samples_while_down_and_reconnects(caplog):
    port = closed_port()
    wall = Wall()
    with caplog.at_level(logging.INFO, "smanager.monitor"):
        async with started({"graphite": {"address": f"127.0.0.1:{port}", "every": 0.01}},
                           wall=wall) as exports:
            exports.offer("m", 1.0, NOW)
            assert await until(lambda: the_row(exports, "graphite")["failed"] >= 2)
            row = the_row(exports, "graphite")
            assert (row["queued"], row["sent"], row["connected"]) == (1, 0, False)
            assert "refused" in row["last_error"].lower() and row["last_error_at"] == NOW
            async with LineReceiver(port) as carbon:
                assert await until(lambda: carbon.lines == [f"m 1.0 {NOW}\n"])
                carbon.hang_up()  # carbon restarts: the next batch goes on a new connection
                assert await until(lambda: exports.push[0].reader.at_eof())
                exports.offer("m", 2.0, NOW + 1)
                assert await until(lambda: len(carbon.lines) == 2)
            assert len(carbon.connections) == 2 and carbon.lines[1] == f"m 2.0 {NOW + 1}\n"
    told = [record.getMessage() for record in caplog.records]
    assert told == [f"export to graphite 127.0.0.1:{port}: Connection refused",
                    f"export to graphite 127.0.0.1:{port} works again"]  # each failure once


async def test_retries_wait_one_second_doubling_to_a_minute(monkeypatch):
    monkeypatch.setattr(export_targets, "BACKOFF_FIRST", 1.0)
    exports = Exports(read_export({"graphite": {"address": f"127.0.0.1:{closed_port()}"}}),
                      no_latest)
    exports.offer("m", 1.0, NOW)
    waits = []
    for _ in range(8):
        await exports.push[0].flush()
        waits.append(exports.push[0].backoff)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


async def test_close_gives_up_after_its_limit_on_a_receiver_that_never_answers():
    with blackhole() as port:
        exports = Exports(read_export({"graphite": {"address": f"127.0.0.1:{port}"}}), no_latest)
        await exports.start()
        exports.offer("m", 1.0, NOW)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await exports.close()
        assert exporting.CLOSE_LIMIT <= loop.time() - began < exporting.CLOSE_LIMIT + 1


# -- InfluxDB, against a scripted HTTP server ---------------------------------------------

class HttpReceiver:
    """An HTTP server on 127.0.0.1 that keeps each request (head, body) and answers
    with the next of ANSWERS ((status, body)), then 204s."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        self.server.close()
        await self.server.wait_closed()

    async def _answer(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(head.lower().partition("content-length:")[2].split()[0])
        self.requests.append((head, (await reader.readexactly(length)).decode()))
        status, body = self.answers.pop(0) if self.answers else (204, b"")
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        writer.close()


async def test_influx_gets_line_protocol_posts_with_credentials_in_a_header():
    async with HttpReceiver() as influx, started({"influx": {
            "url": f"http://127.0.0.1:{influx.port}/write?db=m&precision=s", "every": 0.01,
            "username": "me", "password": "hunter2"}}) as exports:
        exports.offer('disk.free{mount="/"}', 7.5, NOW + 0.9)
        assert await until(lambda: len(influx.requests) == 1)
        assert await until(lambda: the_row(exports, "influx")["sent"] == 1)
    head, body = influx.requests[0]
    assert head.startswith("POST /write?db=m&precision=s HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{influx.port}\r\n" in head
    assert "Authorization: Basic bWU6aHVudGVyMg==\r\n" in head  # me:hunter2
    assert body == f"disk,mount=/ free=7.5 {NOW}\n"  # seconds, as the url asks


async def test_a_refused_influx_batch_is_dropped_counted_and_logged_once():
    refusal = (400, b'{"error":"unable to parse: bad"}\nmore\n')
    with Records("smanager.monitor") as log:
        async with HttpReceiver(refusal, refusal) as influx, started({"influx": {
                "url": f"http://127.0.0.1:{influx.port}/write?db=m", "every": 0.01,
                "token": "hunter2"}}) as exports:
            for n in range(2):
                exports.offer("m", float(n), NOW)
                assert await until(lambda: the_row(exports, "influx")["dropped"] == n + 1)
            row = the_row(exports, "influx")
    assert (row["sent"], row["failed"], row["queued"]) == (0, 2, 0)
    assert row["last_error"] == 'HTTP 400: {"error":"unable to parse: bad"}'
    assert "Authorization: Token hunter2\r\n" in influx.requests[0][0]
    assert log.count("HTTP 400") == 1 and log.count("hunter2") == 0


async def test_an_influx_server_error_keeps_the_batch_for_a_retry():
    async with HttpReceiver((503, b"busy\n")) as influx, started({"influx": {
            "url": f"http://127.0.0.1:{influx.port}/write?db=m", "every": 0.01}}) as exports:
        exports.offer("load.load1", 0.5, NOW)
        assert await until(lambda: the_row(exports, "influx")["sent"] == 1)
        row = the_row(exports, "influx")
    assert [body for _, body in influx.requests] == [f"load load1=0.5 {NOW}000000000\n"] * 2
    assert (row["failed"], row["dropped"], row["last_error"]) == (1, 0, "HTTP 503: busy")


# -- Prometheus ---------------------------------------------------------------------------

async def test_the_textfile_is_replaced_whole_and_readable_by_others(tmp_path):
    latest = {"load.load1": (0.5, NOW)}
    path = tmp_path / "smanager.prom"
    async with started({"prometheus": {"textfile": str(path), "every": 0.01}},
                       lambda: latest) as exports:
        assert await until(lambda: path.exists() and "0.5" in path.read_text())
        latest["load.load1"] = (0.75, NOW + 1)
        assert await until(lambda: "0.75" in path.read_text())
        assert the_row(exports, "prometheus textfile")["sent"] >= 2
    assert path.read_text() == ("# HELP smanager_load_load1 load.load1\n"
                                "# TYPE smanager_load_load1 gauge\nsmanager_load_load1 0.75\n")
    assert os.listdir(tmp_path) == ["smanager.prom"]  # no temp file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


async def test_a_textfile_that_cannot_be_written_is_an_error_in_the_status(tmp_path):
    wall = Wall()
    async with started({"prometheus": {"textfile": str(tmp_path / "gone" / "sm.prom")}},
                       wall=wall) as exports:
        assert await until(lambda: the_row(exports, "prometheus textfile")["failed"] == 1)
        row = the_row(exports, "prometheus textfile")
    assert (row["last_error"], row["last_error_at"]) == ("No such file or directory", NOW)


async def ask(port, request):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def test_the_endpoint_answers_get_metrics_and_nothing_else():
    async with started({"prometheus": {"listen": 0}}, lambda: {"up": (1.0, NOW)}) as exports:
        port = exports.endpoint.address[1]
        metrics = await ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        bare = await ask(port, b"GET /metrics?x=1 HTTP/1.0\n\n")
        other = await ask(port, b"GET / HTTP/1.1\r\n\r\n")
        post = await ask(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        nonsense = await ask(port, b"hello\r\n\r\n")
        row = the_row(exports, "prometheus endpoint")
    body = b"# HELP smanager_up up\n# TYPE smanager_up gauge\nsmanager_up 1.0\n"
    assert metrics == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                       b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    assert bare == metrics
    assert other.startswith(b"HTTP/1.1 404 ") and nonsense.startswith(b"HTTP/1.1 400 ")
    assert post.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET\r\n" in post
    assert (row["sent"], row["connected"], row["where"]) == (2, True, f"127.0.0.1:{port}")


async def test_the_endpoint_closes_slow_and_huge_requests_unanswered(monkeypatch):
    monkeypatch.setattr(scrape_endpoint, "READ_TIMEOUT", 0.2)
    async with started({"prometheus": {"listen": 0}}) as exports:
        port = exports.endpoint.address[1]
        slow = await ask(port, b"GET /metrics HTTP/1.1\r\n")  # and then nothing
        huge = await ask(port, b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n")
        long_line = await ask(port, b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n")
        row = the_row(exports, "prometheus endpoint")
    assert (slow, huge, long_line) == (b"", b"", b"")
    assert (row["failed"], row["sent"]) == (3, 0)


async def test_a_taken_port_is_one_line_at_start():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        exports = Exports(read_export({"prometheus": {"listen": port}}), no_latest)
        with pytest.raises(ExportError) as raised:
            await exports.start()
    assert str(raised.value) == (f"prometheus endpoint: cannot listen on 127.0.0.1:{port}: "
                                 "Address already in use")
