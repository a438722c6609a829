"""The monitor's exports against the real receivers: carbon-cache (graphite-carbon)
storing whisper files read back with whisper-fetch (python3-whisper), influxd
(influxdb 1.x) queried back over its HTTP API, and promtool (prometheus) checking
the textfile and the scrape endpoint's body.  Each daemon gets a config in tmp_path,
listens on 127.0.0.1 only, is waited for by polling its port, and is stopped here."""

import asyncio
import base64
import contextlib
import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

from helpers import TIMEOUT, closed_port, need, stop_daemon, until

from smanager.metrics.exporting import Exports, read_export

START_LIMIT = 30.0  # seconds a daemon may take to listen


def accepts(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.asynccontextmanager
async def daemon(argv, port, log_path):
    """ARGV running, its output in LOG_PATH, once it accepts connections on PORT."""
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        listening = await until(lambda: accepts(port), START_LIMIT,
                                give_up=lambda: process.returncode is not None)
        assert listening, f"{argv[0]} never listened:\n{log_path.read_text()[-3000:]}"
        yield process
    finally:
        await stop_daemon(process)


@contextlib.asynccontextmanager
async def exporting(table, latest=dict):
    exports = Exports(read_export(table), latest)
    await exports.start()
    try:
        yield exports
    finally:
        await exports.close()


def row_of(exports, name):
    return next(row for row in exports.status() if row["name"] == name)


# -- Graphite: carbon-cache ---------------------------------------------------------------

CARBON_CONF = """\
[cache]
STORAGE_DIR = {dir}/storage/
LOCAL_DATA_DIR = {dir}/storage/whisper/
WHITELISTS_DIR = {dir}/storage/lists/
CONF_DIR = {dir}/
LOG_DIR = {dir}/log/
PID_DIR = {dir}/
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 0
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = 0
CARBON_METRIC_INTERVAL = 0
"""  # port 0: the pickle and cache-query listeners take any free port, on loopback


def whisper_values(path, since, until_):
    """{second: value} of the whisper file PATH, read by whisper-fetch; {} if it is not there."""
    if not path.exists():
        return {}
    fetched = subprocess.run([shutil.which("whisper-fetch"), f"--from={since}",
                              f"--until={until_}", str(path)],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
    points = (line.split("\t") for line in fetched.stdout.splitlines())
    return {int(second): float(value) for second, value in points if value != "None"}


async def test_carbon_cache_stores_what_the_graphite_export_sends(tmp_path):
    need("carbon-cache")
    need("whisper-fetch")
    port = closed_port()
    (tmp_path / "carbon.conf").write_text(CARBON_CONF.format(dir=tmp_path, port=port))
    (tmp_path / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:1h\n")
    argv = [shutil.which("carbon-cache"), f"--config={tmp_path / 'carbon.conf'}", "--nodaemon",
            f"--pidfile={tmp_path / 'carbon.pid'}", "--logfile=-", "start"]
    now = int(time.time())
    async with daemon(argv, port, tmp_path / "carbon.log"):
        async with exporting({"graphite": {"address": f"127.0.0.1:{port}", "prefix": "sm",
                                           "every": 0.05}}) as exports:
            exports.offer("load.load1", 0.5, now - 2)
            exports.offer("load.load1", 0.75, now - 1)
            exports.offer('disk.free{mount="/"}', 1e9, now - 1)
            assert await until(lambda: row_of(exports, "graphite")["sent"] == 3)
        whisper = tmp_path / "storage" / "whisper" / "sm"
        assert await until(lambda: whisper_values(whisper / "load" / "load1.wsp", now - 5, now)
                           == {now - 2: 0.5, now - 1: 0.75}), (tmp_path / "carbon.log").read_text()
        assert await until(lambda: whisper_values(whisper / "disk" / "free" / "_.wsp", now - 5, now)
                           == {now - 1: 1e9})


# -- InfluxDB 1.x: influxd ------------------------------------------------------------------

INFLUXD_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{dir}/meta"
  logging-enabled = false
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = true
  log-enabled = false
  pprof-enabled = false
"""


def influx_query(port, statement, database="", login="admin:pw"):
    """The result of STATEMENT from influxd's /query (POST, epoch seconds)."""
    form = urllib.parse.urlencode({"q": statement, "db": database, "epoch": "s"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/query", form)
    if login:
        request.add_header("Authorization", f"Basic {base64.b64encode(login.encode()).decode()}")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        return json.load(answer)["results"][0]


@contextlib.asynccontextmanager
async def influxd(tmp_path):
    """influxd, authentication on, user admin (password pw) and database m; its HTTP port."""
    need("influxd")
    port, rpc = closed_port(), closed_port()
    (tmp_path / "influxdb.conf").write_text(INFLUXD_CONF.format(dir=tmp_path, rpc=rpc, port=port))
    argv = [shutil.which("influxd"), "run", "-config", str(tmp_path / "influxdb.conf")]
    async with daemon(argv, port, tmp_path / "influxd.log"):
        # with no user yet, influxd takes this one statement unauthenticated
        influx_query(port, "CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES", login=None)
        influx_query(port, "CREATE DATABASE m")
        yield port


async def test_influxdb_stores_what_the_influx_export_sends(tmp_path):
    now = int(time.time())
    async with influxd(tmp_path) as port:
        login = {"username": "admin", "password": "pw", "every": 0.05}
        async with exporting({"influx": {"url": f"http://127.0.0.1:{port}/write?db=m", **login}}
                             ) as exports:
            exports.offer('disk.free{mount="/var"}', 1.5e9, now - 2.5)
            exports.offer("load.load1", 0.5, now - 2)
            exports.offer("load.load1", math.nan, now - 1)  # a failed collection: not sent
            assert await until(lambda: row_of(exports, "influx")["sent"] == 2)
        async with exporting({"influx": {
                "url": f"http://127.0.0.1:{port}/write?db=m&precision=s", **login}}) as exports:
            exports.offer("load.load1", 0.75, now - 1)
            assert await until(lambda: row_of(exports, "influx")["sent"] == 1)
        load = influx_query(port, 'SELECT "load1" FROM "load"', "m")["series"][0]
        disk = influx_query(port, 'SELECT "free", "mount" FROM "disk"', "m")["series"][0]
    assert load["values"] == [[now - 2, 0.5], [now - 1, 0.75]]
    assert disk["values"] == [[now - 3, 1.5e9, "/var"]]  # epoch=s rounds the .5 down


async def test_influxdb_refusals_drop_the_batch_and_never_show_the_password(tmp_path, caplog):
    async with influxd(tmp_path) as port:
        wrong = {"url": f"http://127.0.0.1:{port}/write?db=m", "username": "admin",
                 "password": "hunter2", "every": 0.05}
        missing = {"url": f"http://127.0.0.1:{port}/write?db=nope", "username": "admin",
                   "password": "pw", "every": 0.05}
        rows = []
        for influx in (wrong, missing):
            async with exporting({"influx": influx}) as exports:
                exports.offer("load.load1", 0.5, time.time())
                assert await until(lambda: row_of(exports, "influx")["dropped"] == 1)
                rows.append(row_of(exports, "influx"))
        stored = influx_query(port, "SHOW MEASUREMENTS", "m")
    assert rows[0]["last_error"] == 'HTTP 401: {"error":"authorization failed"}'
    assert rows[1]["last_error"] == 'HTTP 404: {"error":"database not found: \\"nope\\""}'
    assert [(row["sent"], row["queued"], row["failed"]) for row in rows] == [(0, 0, 1)] * 2
    assert "series" not in stored  # nothing was written
    assert "hunter2" not in caplog.text and "hunter2" not in repr(rows)


# -- Prometheus: promtool -------------------------------------------------------------------

def promtool_check(text):
    checked = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=TIMEOUT * 3)
    return checked.returncode, checked.stdout + checked.stderr


async def test_promtool_accepts_the_textfile_and_the_endpoint_body(tmp_path):
    need("promtool")
    latest = {"load.load1": (0.5, 1.0), "net.eth0.rx_bytes": (1250.0, 1.0),
              'disk.free{dev="sda \\"1\\"",mount="/"}': (math.nan, 1.0),
              'disk.free{dev="sdb",mount="/var"}': (math.inf, 1.0), "1st-metric:x": (2.0, 1.0)}
    textfile = tmp_path / "smanager.prom"
    async with exporting({"prometheus": {"textfile": str(textfile), "listen": 0}},
                         lambda: latest) as exports:
        assert await until(lambda: row_of(exports, "prometheus textfile")["sent"] >= 1)
        port = exports.endpoint.address[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert "Content-Type: text/plain; version=0.0.4" in head
    assert body == textfile.read_text() and body.count("# TYPE") == 4
    for text in (textfile.read_text(), body):
        assert promtool_check(text) == (0, "")

