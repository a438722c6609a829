"""The bundled system collectors on this machine's real /proc, through the
collecting engine, and on a fixture tree where /proc is missing."""

import asyncio
import os

import pytest

from smanager.metrics import procfs
from smanager.metrics.collecting import Collecting
from smanager.metrics.system import BUNDLED, DEFAULTS, Cpu, Net

TIMEOUT = 5


def test_the_defaults_are_the_host_basics_and_every_bundled_one_reads_this_host():
    assert DEFAULTS == ("cpu", "mem", "load", "disk", "net")
    for name, kind in BUNDLED.items():
        collector = kind()
        assert collector.name == name
        first = collector.collect()
        assert all(isinstance(value, (int, float)) for value in first.values()), name
        assert first or name == "cpu", name  # cpu needs a previous reading


def test_cpu_gives_percent_per_state_from_its_previous_run_without_sleeping():
    cpu = Cpu()
    assert cpu.collect() == {}
    sum(range(2_000_000))  # some user time between the readings
    shares = cpu.collect()
    states = {state: value for state, value in shares.items() if state != "busy"}
    assert sum(states.values()) == pytest.approx(100.0, abs=0.01) or sum(states.values()) == 0
    assert shares["busy"] == pytest.approx(100.0 - shares["idle"] - shares.get("iowait", 0.0))


async def test_net_rates_come_from_two_runs_and_loopback_traffic_shows():
    samples = []
    collecting = Collecting(lambda name, value, stamp: samples.append((name, value)))
    net = Net()
    net.interval = 3600  # its own ticks stay out of the way: this test runs it by hand
    collecting.add(net)
    try:
        assert await collecting.collect_now("net") == {}  # counters only: nothing yet
        received, writer = await asyncio.open_connection(*await _echo_server())
        writer.write(b"x" * 100_000)
        await writer.drain()
        given = await collecting.collect_now("net")
        writer.close()
        assert given["net.lo.rx_bytes"] > 0
    finally:
        await collecting.close()


async def _echo_server():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[:2]


def test_without_proc_a_run_fails_in_one_line(tmp_path):
    for kind in BUNDLED.values():
        with pytest.raises(procfs.NotAvailable) as failed:
            kind({"root": str(tmp_path)}).collect()
        assert "\n" not in str(failed.value) and str(tmp_path) in str(failed.value)


def test_reading_another_root_reads_its_files(tmp_path):
    (tmp_path / "loadavg").write_text("0.50 0.25 0.10 2/345 6789\n")
    assert BUNDLED["load"]({"root": str(tmp_path)}).collect()["load1"] == 0.5
    assert os.path.exists("/proc/loadavg")
