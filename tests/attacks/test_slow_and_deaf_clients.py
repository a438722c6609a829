"""Clients that take without giving back: five hundred connections dripping a
byte a second, held open at once beside a normal client; and a client that
asks for gigabytes of replies and never reads them.  Each ends with proof that
the server still answers; the figures (connections held, latencies, memory)
are printed: ``pytest -s tests/attacks/test_slow_and_deaf_clients.py``."""

import asyncio
import contextlib
import os
import resource
import select
import socket
import statistics
import time

import pytest
from helpers import (
    FIXTURE_SERVICES,
    SEP,
    TIMEOUT,
    LineClient,
    blocking_ask,
    running_server,
)


def enough_descriptors(needed):
    """Raise the soft limit on open files to ``needed`` if it is lower; skip if the
    hard limit forbids it.  Returns the limits to restore, or None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return soft, hard


SLOW = 500
DRIP_SECONDS = 3


async def test_five_hundred_slow_drippers_do_not_starve_a_normal_client():
    restore = enough_descriptors(2 * SLOW + 300)  # both ends of each connection live here
    slow, normal = [], None
    try:
        async with running_server(max_connections=600, max_connections_per_address=600) as server:
            port = server.address[1]
            try:
                for _ in range(SLOW // 50):  # in waves: the listen backlog is 100
                    slow += await asyncio.gather(*(LineClient.connect(port) for _ in range(50)))
                normal = await LineClient.connect(port)
                assert server.admission.count == SLOW + 1
                lines = [f"testsvc add {i} 1\n".encode() for i in range(SLOW)]
                dripped = [0] * SLOW
                latencies = []

                async def drip():
                    # Each connection sends its next byte once a second, the 500 spread
                    # over the second: 10 of them every 20 ms.
                    for tick in range(DRIP_SECONDS * 50):
                        for i in range(tick % 50, SLOW, 50):
                            slow[i].writer.write(lines[i][dripped[i]:dripped[i] + 1])
                            dripped[i] += 1
                        await asyncio.sleep(0.02)  # the attack's pace

                dripping = asyncio.create_task(drip())
                try:
                    for _ in range(DRIP_SECONDS * 20):  # bounded; ends with the drip
                        if dripping.done():
                            break
                        started = time.perf_counter()
                        assert await normal.ask("testsvc add 2 2") == "4\n" + SEP
                        latencies.append(time.perf_counter() - started)
                        await asyncio.sleep(0.1)  # a probe every ~0.1 s, not a synchronisation
                finally:
                    await asyncio.wait_for(dripping, TIMEOUT * 2)
                held = len(server.connections)
                assert held == SLOW + 1 and server.admission.count == SLOW + 1
                assert all(d == DRIP_SECONDS for d in dripped)
                # Every dripper was kept, half-typed line and all: finishing it gets the answer.
                for i, client in enumerate(slow):
                    client.writer.write(lines[i][dripped[i]:])
                replies = await asyncio.gather(*(c.reply() for c in slow))
                assert [r.decode() for r in replies] == [f"{i + 1}\n" + SEP for i in range(SLOW)]
                assert await normal.ask("testsvc add 20 22") == "42\n" + SEP
            finally:
                for client in [*slow, normal]:
                    if client is not None:
                        await client.close()
    finally:
        if restore:
            resource.setrlimit(resource.RLIMIT_NOFILE, restore)
    print(f"\n[slow] {held - 1} slow connections held ({DRIP_SECONDS} bytes each, one a "
          f"second) + 1 normal client; {len(latencies)} probes: latency median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert len(latencies) >= DRIP_SECONDS * 3
    assert max(latencies) < 1.0


def proc_status(pid, field):
    """A /proc/PID/status figure, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def read_log_until(process, text, seconds):
    """Read the child's stderr until ``text`` appears; True if it did in time."""
    fd, deadline, seen = process.process.stderr.fileno(), time.monotonic() + seconds, b""
    try:
        while text.encode() not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 65536)
            if not chunk:
                return False
            seen += chunk
        return True
    finally:
        process.log.append(seen.decode(errors="replace"))


def test_a_client_that_never_reads_huge_replies_is_dropped_and_memory_stays_bounded(
        server_process):
    process = server_process("--services", str(FIXTURE_SERVICES), "--send-timeout", "1")
    pid = process.process.pid
    assert blocking_ask(process.port, "testsvc add 1 1") == "2\n" + SEP
    before = proc_status(pid, "VmHWM")
    asks, kib = 100, 20_000
    deaf = socket.socket()
    try:
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deaf.settimeout(TIMEOUT)
        deaf.connect(("127.0.0.1", process.port))
        deaf.sendall(b"testsvc big 20000\n" * asks)  # ~2 GB of replies asked for, never read
        started = time.monotonic()
        assert read_log_until(process, "output unread for 1 s; dropping the client", TIMEOUT)
        dropped_after = time.monotonic() - started
        after = proc_status(pid, "VmHWM")
        rss = proc_status(pid, "VmRSS")
        # What the kernel still held reaches the client, then the end: never the rest.
        received, cap = 0, 3 * kib * 1024
        with contextlib.suppress(ConnectionResetError):
            while received < cap and (chunk := deaf.recv(1 << 20)):
                received += len(chunk)
    finally:
        deaf.close()
    assert blocking_ask(process.port, "testsvc add 2 2") == "4\n" + SEP
    assert process.process.poll() is None
    asked = asks * kib / 1024
    print(f"\n[deaf] asked for {asks} x {kib / 1024:.1f} MiB = {asked:.0f} MiB, never read; "
          f"dropped after {dropped_after:.2f} s; received {received / 2**20:.1f} MiB in all; "
          f"server peak RSS (VmHWM) {before:.0f} -> {after:.0f} MiB "
          f"(+{after - before:.0f} MiB), RSS now {rss:.0f} MiB")
    assert received < kib * 1024  # not even the first reply whole: the rest was freed
    assert after - before < 200, "peak memory grew by more than 200 MiB"
    assert process.stop() == 0
    assert "Traceback" not in "".join(process.log)
