"""What Redis, memcached, nginx and Apache say about themselves, read into numbers."""

import asyncio
import os
import shutil
import socket

import pytest
from helpers import need, start_daemon, stop_daemon

from smanager.metrics.scrapes import (
    apache_status,
    memcached_stats,
    nginx_stub_status,
    redis_info,
)

REDIS_INFO = """\
# Server\r
redis_version:7.0.15\r
redis_mode:standalone\r
os:Linux 6.1.0-13-amd64 x86_64\r
process_id:744\r
tcp_port:6379\r
uptime_in_seconds:3644\r
\r
# Clients\r
connected_clients:2\r
blocked_clients:0\r
\r
# Memory\r
used_memory:1045448\r
used_memory_human:1020.95K\r
mem_fragmentation_ratio:9.71\r
\r
# Persistence\r
rdb_last_bgsave_status:ok\r
\r
# Stats\r
total_connections_received:17\r
total_commands_processed:240\r
instantaneous_ops_per_sec:1\r
total_net_input_bytes:6519\r
rejected_connections:0\r
expired_keys:3\r
keyspace_hits:120\r
keyspace_misses:9\r
total_error_replies:1\r
\r
# Replication\r
role:master\r
connected_slaves:1\r
slave0:ip=10.0.0.2,port=6380,state=online,offset=1234,lag=0\r
\r
# CPU\r
used_cpu_sys:1.524880\r
used_cpu_user:2.047372\r
\r
# Commandstats\r
cmdstat_get:calls=129,usec=412,usec_per_call=3.19,rejected_calls=0,failed_calls=0\r
\r
# Errorstats\r
errorstat_ERR:count=1\r
\r
# Keyspace\r
db0:keys=12,expires=3,avg_ttl=59102\r
db3:keys=1,expires=0,avg_ttl=0\r
"""


def test_redis_info_keeps_numbers_splits_pairs_and_names_its_counters():
    values, counters = redis_info(REDIS_INFO)
    assert values["connected_clients"] == 2 and values["mem_fragmentation_ratio"] == 9.71
    assert values["db0.keys"] == 12 and values["db0.expires"] == 3 and values["db3.avg_ttl"] == 0
    assert values["slave0.offset"] == 1234 and "slave0.ip" not in values
    assert values["cmdstat_get.usec_per_call"] == 3.19 and values["used_cpu_user"] == 2.047372
    words = {"redis_version", "role", "os", "used_memory_human", "rdb_last_bgsave_status"}
    assert not words & values.keys()
    assert counters == {"total_connections_received", "total_commands_processed",
                        "total_net_input_bytes", "rejected_connections", "expired_keys",
                        "keyspace_hits", "keyspace_misses", "total_error_replies", "used_cpu_sys",
                        "used_cpu_user", "cmdstat_get.calls", "cmdstat_get.usec",
                        "cmdstat_get.rejected_calls", "cmdstat_get.failed_calls",
                        "errorstat_ERR.count"}


MEMCACHED_STATS = """\
STAT pid 2711\r
STAT uptime 3602\r
STAT time 1701947000\r
STAT version 1.6.18\r
STAT libevent 2.1.12-stable\r
STAT pointer_size 64\r
STAT rusage_user 0.104917\r
STAT rusage_system 0.087431\r
STAT max_connections 1024\r
STAT curr_connections 2\r
STAT total_connections 14\r
STAT cmd_get 50\r
STAT cmd_set 20\r
STAT get_hits 45\r
STAT get_misses 5\r
STAT bytes_read 4123\r
STAT bytes_written 9876\r
STAT limit_maxbytes 67108864\r
STAT curr_items 18\r
STAT total_items 20\r
STAT evictions 0\r
END\r
STAT after_end 1\r
"""


def test_memcached_stats_keeps_numbers_up_to_end_and_names_its_counters():
    values, counters = memcached_stats(MEMCACHED_STATS)
    assert values["curr_connections"] == 2 and values["limit_maxbytes"] == 67108864
    assert values["rusage_user"] == 0.104917
    assert "version" not in values and "libevent" not in values and "after_end" not in values
    assert counters == {"rusage_user", "rusage_system", "total_connections", "cmd_get", "cmd_set",
                        "get_hits", "get_misses", "bytes_read", "bytes_written", "total_items",
                        "evictions"}


NGINX_STUB_STATUS = """\
Active connections: 291 
server accepts handled requests
 16630948 16630947 31070465 
Reading: 6 Writing: 179 Waiting: 106 
"""


def test_nginx_stub_status_gives_its_seven_numbers_and_three_counters():
    values, counters = nginx_stub_status(NGINX_STUB_STATUS)
    assert values == {"active": 291, "accepts": 16630948, "handled": 16630947, "requests": 31070465,
                      "reading": 6, "writing": 179, "waiting": 106}
    assert counters == {"accepts", "handled", "requests"}


APACHE_STATUS = """\
localhost
ServerVersion: Apache/2.4.57 (Debian) OpenSSL/3.0.11
ServerMPM: event
Server Built: 2023-04-13T13:23:52
CurrentTime: Thursday, 07-Dec-2023 11:21:00 UTC
ParentServerConfigGeneration: 1
ServerUptimeSeconds: 3600
ServerUptime: 1 hour
Load1: 0.05
Total Accesses: 1234
Total kBytes: 5678
Total Duration: 910
CPUUser: .12
CPUSystem: .05
CPUChildrenUser: 0
CPUChildrenSystem: 0
CPULoad: .00472222
ReqPerSec: .342778
BusyWorkers: 3
IdleWorkers: 72
ConnsAsyncKeepAlive: 1
Scoreboard: __W_K_R__...........................C
TLSSessionCacheStatus
CacheIndexUsage: 0%
"""


def test_apache_status_gives_snake_case_names_counters_and_the_scoreboard_per_state():
    values, counters = apache_status(APACHE_STATUS)
    assert values["total_accesses"] == 1234 and values["total_kbytes"] == 5678
    assert values["cpu_user"] == 0.12 and values["req_per_sec"] == 0.342778
    assert values["busy_workers"] == 3 and values["idle_workers"] == 72 and values["load1"] == 0.05
    assert values["server_uptime_seconds"] == 3600 and values["conns_async_keep_alive"] == 1
    assert values["parent_server_config_generation"] == 1
    assert {name: values[name] for name in values if name.startswith("scoreboard.")} == {
        "scoreboard.waiting": 6, "scoreboard.sending": 1, "scoreboard.keepalive": 1,
        "scoreboard.reading": 1, "scoreboard.open": 27, "scoreboard.closing": 1,
        "scoreboard.starting": 0, "scoreboard.dns": 0, "scoreboard.logging": 0,
        "scoreboard.finishing": 0, "scoreboard.idle_cleanup": 0}
    assert not {"server_version", "server_mpm", "server_uptime", "current_time",
                "cache_index_usage"} & values.keys()
    assert counters == {"total_accesses", "total_kbytes", "total_duration", "cpu_user",
                        "cpu_system", "cpu_children_user", "cpu_children_system"}


@pytest.mark.parametrize("read", [redis_info, memcached_stats, nginx_stub_status, apache_status])
def test_a_reply_without_the_expected_values_is_a_one_line_error(read):
    with pytest.raises(ValueError) as raised:
        read("-NOAUTH Authentication required.\r\n<html>\n404 Not Found\n</html>\n")
    assert str(raised.value).startswith("no ") and "\n" not in str(raised.value)
    assert "'-NOAUTH Authentication required." in str(raised.value)


# -- the real servers -----------------------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_real_redis_server_info_is_read():
    need("redis-server")
    port = free_port()
    async with asyncio.timeout(20):
        server = await start_daemon([shutil.which("redis-server"), "--port", str(port), "--bind",
                                    "127.0.0.1", "--save", "", "--appendonly", "no"],
                                   b"Ready to accept connections")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"SET smanager-test 1\r\nINFO\r\n")
            assert await reader.readline() == b"+OK\r\n"
            size = int((await reader.readline())[1:])
            values, counters = redis_info((await reader.readexactly(size)).decode())
            writer.close()
            await writer.wait_closed()
        finally:
            await stop_daemon(server)
    assert values["process_id"] == server.pid and values["tcp_port"] == port
    assert values["connected_clients"] >= 1 and values["used_memory"] > 0
    assert values["db0.keys"] == 1
    assert {"total_connections_received", "total_commands_processed", "keyspace_hits"} <= counters


async def test_a_real_memcached_stats_is_read():
    need("memcached")
    port = free_port()
    as_root = ["-u", "root"] if os.getuid() == 0 else []  # memcached refuses root without -u
    async with asyncio.timeout(20):
        server = await start_daemon([shutil.which("memcached"), "-vv", *as_root, "-l", "127.0.0.1",
                                    "-p", str(port), "-U", "0"], b"server listening")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"set k 0 0 1\r\nv\r\nget k\r\nstats\r\n")
            assert await reader.readuntil(b"END\r\n") == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
            values, counters = memcached_stats((await reader.readuntil(b"END\r\n")).decode())
            writer.close()
            await writer.wait_closed()
        finally:
            await stop_daemon(server)
    assert values["pid"] == server.pid and values["curr_connections"] >= 1
    assert values["cmd_get"] == 1 and values["get_hits"] == 1 and values["curr_items"] == 1
    assert {"cmd_get", "get_hits", "bytes_read", "total_connections"} <= counters
