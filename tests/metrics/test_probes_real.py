"""The network collectors against real servers: redis-server, memcached and nginx
started here on 127.0.0.1, Apache's status page and HTTP checks served by this test,
and ports nothing listens on."""

import asyncio
import contextlib
import logging
import math
import os
import shutil
import tempfile

import pytest
from helpers import TIMEOUT, closed_port, need, running_daemon

from smanager.metrics.collecting import CollectError
from smanager.metrics.probes import Apache, Http, Memcached, Nginx, Redis, TcpCheck

SERVER_STATUS = """\
127.0.0.1
ServerVersion: Apache/2.4.57 (Debian)
ServerMPM: event
Server Built: 2023-04-13T13:23:52
CurrentTime: Thursday, 07-Dec-2023 11:21:00 UTC
RestartTime: Thursday, 07-Dec-2023 10:21:00 UTC
ParentServerConfigGeneration: 1
ParentServerMPMGeneration: 0
ServerUptimeSeconds: 3600
ServerUptime: 1 hour
Load1: 0.05
Load5: 0.03
Load15: 0.00
Total Accesses: 1234
Total kBytes: 5678
Total Duration: 910
CPUUser: .12
CPUSystem: .05
CPUChildrenUser: 0
CPUChildrenSystem: 0
CPULoad: .00472222
Uptime: 3600
ReqPerSec: .342778
BytesPerSec: 1615.13
BytesPerReq: 4711.78
DurationPerReq: .737439
BusyWorkers: 3
GracefulWorkers: 0
IdleWorkers: 72
Processes: 3
Stopping: 0
ConnsTotal: 4
ConnsAsyncWriting: 0
ConnsAsyncKeepAlive: 1
ConnsAsyncClosing: 0
Scoreboard: __W_K_R__...........................C
"""


def redis_server(*args):
    need("redis-server")
    return running_daemon([shutil.which("redis-server"), "--save", "", "--appendonly", "no",
                    "--bind", "127.0.0.1", *args], b"eady to accept connections")


async def test_redis_info_is_read_with_its_counters_from_a_real_server():
    port = closed_port()  # redis takes no port 0: one that was free a moment ago
    async with redis_server("--port", str(port)) as server:
        redis = Redis({"address": f"127.0.0.1:{port}"}, name="cache")
        first = await redis.collect()
        second = await redis.collect()
    assert first["process_id"] == server.pid and first["tcp_port"] == port
    assert first["connected_clients"] >= 1 and first["used_memory"] > 0
    assert second["total_commands_processed"] > first["total_commands_processed"]
    assert {"total_commands_processed", "total_connections_received",
            "keyspace_hits"} <= redis.counters
    assert "connected_clients" not in redis.counters


async def test_redis_with_a_password_authenticates_and_no_message_shows_it():
    port, secret = closed_port(), "s3cret-Pa55"
    async with redis_server("--port", str(port), "--requirepass", secret):
        right = Redis({"address": f"127.0.0.1:{port}", "password": secret})
        assert (await right.collect())["tcp_port"] == port
        with pytest.raises(CollectError) as wrong:
            await Redis({"address": f"127.0.0.1:{port}", "password": "not-" + secret}).collect()
        with pytest.raises(CollectError) as none:
            await Redis({"address": f"127.0.0.1:{port}"}).collect()
    assert str(wrong.value).startswith(f"127.0.0.1:{port}: AUTH refused: the server said")
    assert secret not in str(wrong.value) and "\n" not in str(wrong.value)
    assert "NOAUTH" in str(none.value)


async def test_redis_is_read_over_its_unix_socket():
    with tempfile.TemporaryDirectory(prefix="smr-") as directory:  # short: sun_path is 108 bytes
        path = os.path.join(directory, "redis.sock")
        async with redis_server("--port", "0", "--unixsocket", path) as server:
            values = await Redis({"address": path}).collect()
    assert values["process_id"] == server.pid


async def test_memcached_stats_are_read_with_their_counters_from_a_real_server():
    need("memcached")
    port = closed_port()
    as_root = ["-u", "root"] if os.getuid() == 0 else []  # memcached refuses root without -u
    async with running_daemon([shutil.which("memcached"), "-vv", *as_root, "-l", "127.0.0.1",
                        "-p", str(port), "-U", "0"], b"server listening") as server:
        memcached = Memcached({"address": f"127.0.0.1:{port}"})
        values = await memcached.collect()
    assert values["pid"] == server.pid and values["curr_connections"] >= 1
    assert {"cmd_get", "get_hits", "bytes_read", "total_connections"} <= memcached.counters
    assert "curr_connections" not in memcached.counters


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 32; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /nginx_status {{ stub_status; }}
        location / {{ return 404; }}
    }}
}}
"""


async def test_nginx_stub_status_is_read_from_a_real_nginx_and_a_missing_page_is_an_error(
        tmp_path):
    need("nginx")
    port = closed_port()
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp_path, port=port))
    argv = [shutil.which("nginx"), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
            "-e", "stderr"]
    async with running_daemon(argv, b"start worker process"):
        nginx = Nginx({"url": f"http://127.0.0.1:{port}/nginx_status"})
        first = await nginx.collect()
        second = await nginx.collect()
        with pytest.raises(CollectError) as missing:
            await Nginx({"url": f"http://127.0.0.1:{port}/elsewhere"}).collect()
    assert first["active"] >= 1 and first["writing"] >= 1
    assert second["requests"] == first["requests"] + 1
    assert nginx.counters == {"accepts", "handled", "requests"}
    assert str(missing.value) == f"http://127.0.0.1:{port}/elsewhere: HTTP status 404, not 200"


@contextlib.asynccontextmanager
async def serving(status, body, chunked=False, reply=True):
    """An HTTP server on 127.0.0.1 giving every GET STATUS and BODY (chunked if asked;
    nothing at all without REPLY); yields (port, the request heads it read)."""
    heads = []

    async def answer(reader, writer):
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            if reply:
                framing = (b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
                    b"%x\r\n%s\r\n" % (len(body[at:at + 100]), body[at:at + 100])
                    for at in range(0, len(body), 100)) + b"0\r\n\r\n") if chunked \
                    else b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                writer.write(b"HTTP/1.1 %d Whatever\r\nContent-Type: text/plain\r\n" % status
                             + framing)
                await writer.drain()
            else:
                await reader.read()  # until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()
        await server.wait_closed()


async def test_apache_server_status_is_read_from_a_chunked_reply():
    async with serving(200, SERVER_STATUS.encode(), chunked=True) as (port, heads):
        apache = Apache({"url": f"http://127.0.0.1:{port}/server-status?auto"})
        values = await apache.collect()
    assert values["total_accesses"] == 1234 and values["busy_workers"] == 3
    assert values["scoreboard.waiting"] == 6 and values["scoreboard.open"] == 27
    assert "total_accesses" in apache.counters and "busy_workers" not in apache.counters
    request = heads[0].decode()
    assert request.startswith("GET /server-status?auto HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in request and "Connection: close\r\n" in request


async def test_a_status_page_that_is_not_the_servers_status_is_an_error():
    async with serving(200, b"<html>It works!</html>") as (port, _):
        with pytest.raises(CollectError, match=r": no Apache server-status values"):
            await Apache({"url": f"http://127.0.0.1:{port}/server-status?auto"}).collect()


async def test_an_http_check_gives_status_up_and_seconds():
    async with serving(200, b"fine") as (port, _):
        values = await Http({"url": f"http://127.0.0.1:{port}/health"}).collect()
    assert values["status"] == 200 and values["up"] == 1
    assert 0 < values["seconds"] < TIMEOUT


async def test_an_http_check_is_up_only_on_an_expected_status_and_says_why_once(caplog):
    caplog.set_level(logging.INFO, "smanager.monitor")
    async with serving(503, b"busy") as (port, _):
        default = Http({"url": f"http://127.0.0.1:{port}/"}, name="site")
        first, again = await default.collect(), await default.collect()
        maintenance = await Http({"url": f"http://127.0.0.1:{port}/",
                                  "expect": [200, 503]}).collect()
    assert (first["up"], first["status"], again["up"]) == (0, 503, 0)
    assert (maintenance["up"], maintenance["status"]) == (1, 503)
    downs = [record.getMessage() for record in caplog.records if "down" in record.getMessage()]
    assert downs == [f"site: down: http://127.0.0.1:{port}/: status 503, expected 200"]


async def test_a_refused_http_check_is_down_with_no_status_and_raises_nothing():
    values = await Http({"url": f"http://127.0.0.1:{closed_port()}/"}).collect()
    assert values["up"] == 0 and math.isnan(values["status"]) and values["seconds"] >= 0


async def test_a_tcp_check_is_up_on_a_listening_port_and_down_on_a_closed_one():
    async with serving(200, b"") as (port, _):
        up = await TcpCheck({"address": f"127.0.0.1:{port}"}).collect()
    down = await TcpCheck({"address": f"127.0.0.1:{closed_port()}"}).collect()
    assert up["up"] == 1 and 0 < up["seconds"] < TIMEOUT
    assert down["up"] == 0 and down.keys() == {"up", "seconds"}


@pytest.mark.parametrize("kind", [Redis, Memcached])
async def test_a_refused_scrape_is_a_one_line_error_naming_the_address(kind):
    port = closed_port()
    with pytest.raises(CollectError) as raised:
        await kind({"address": f"127.0.0.1:{port}"}).collect()
    assert str(raised.value) == f"127.0.0.1:{port}: connection refused"


async def test_a_server_that_never_answers_is_given_up_before_the_monitors_limit():
    async with serving(200, b"", reply=False) as (port, _):
        redis = Redis({"address": f"127.0.0.1:{port}"})
        check = Http({"url": f"http://127.0.0.1:{port}/"})
        redis.timeout = check.timeout = 2.0

        async def timed_redis():
            started = loop.time()
            with pytest.raises(CollectError) as raised:
                await redis.collect()
            return str(raised.value), loop.time() - started

        loop = asyncio.get_running_loop()
        (message, took), hung = await asyncio.gather(timed_redis(), check.collect())
    assert message == f"127.0.0.1:{port}: no reply within 1.8 s"
    assert 1.8 <= took < 2.0
    assert hung["up"] == 0 and 1.8 <= hung["seconds"] < 2.0


async def test_a_reply_that_is_not_the_protocol_is_an_error():
    async def greet(reader, writer):
        await reader.readline()  # the question, read: closing leaves nothing unread (no reset)
        writer.write(b"hello\r\n")
        writer.close()

    async with await asyncio.start_server(greet, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(CollectError) as redis:
            await Redis({"address": f"127.0.0.1:{port}"}).collect()
        with pytest.raises(CollectError) as memcached:
            await Memcached({"address": f"127.0.0.1:{port}"}).collect()
    assert "the server said" in str(redis.value)
    assert "connection closed before the reply was complete" in str(memcached.value)
