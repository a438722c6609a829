"""The bundled services: systemstatus and scrapman (no sockets)."""

import json
import os
import re
import shutil
import socket
import subprocess

import pytest
from helpers import SEP, ask_core, started_manager, until


@pytest.fixture
async def manager(tmp_path):
    options = {"scrapman": {"capture_dir": str(tmp_path / "captures"), "max_captures": 3}}
    async with started_manager(options=options) as manager:
        yield manager


async def body(manager, line):
    text = await ask_core(manager, line)
    assert text.endswith(SEP)
    return text[: -len(SEP)]


@pytest.mark.skipif(not shutil.which("uptime"), reason="uptime(1) is not installed")
async def test_uptime_is_the_line_uptime_prints(manager):
    ours = await body(manager, "systemstatus uptime")
    theirs = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    pattern = r"^ \d\d:\d\d:\d\d up .*load average: [\d.]+, [\d.]+, [\d.]+\n$"
    assert re.match(pattern, ours) and re.match(pattern, theirs)
    # Same fields in the same places: only the clock and the numbers may move.
    assert re.sub(r"[\d.:]+", "N", ours) == re.sub(r"[\d.:]+", "N", theirs)


async def test_uptime_without_procps(manager, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    text = await body(manager, "systemstatus uptime")
    assert re.match(r"^ \d\d:\d\d:\d\d up .*,  load average: [\d.]+, [\d.]+, [\d.]+\n$", text)


async def test_hostname(manager):
    assert await body(manager, "hostname") == socket.gethostname() + "\n"


@pytest.mark.parametrize("line, text", [
    ("systemstatus echo hi", "hi\n"),
    ("systemstatus echo 'a  b' c", "a  b c\n"),
    ("systemstatus echo", ""),
])
async def test_echo(manager, line, text):
    assert await body(manager, line) == text


async def test_load_memory_disk(manager):
    assert re.match(r"^load average: [\d.]+, [\d.]+, [\d.]+ \(\d+ CPUs\)\n$",
                    await body(manager, "systemstatus load"))
    assert re.match(r"^memory: [\d.]+ \w+ used of [\d.]+ \w+ \(\d+%\), [\d.]+ \w+ available\n$",
                    await body(manager, "systemstatus memory"))
    assert re.match(r"^/: [\d.]+[KMGTP]? used of [\d.]+[KMGTP]? \(\d+%\), "
                    r"[\d.]+[KMGTP]? available\n$", await body(manager, "systemstatus disk"))
    assert await body(manager, "systemstatus disk /no/such/place") == (
        "ERROR: disk: /no/such/place: No such file or directory\n")


def df_h(path):
    """What GNU df -h prints for PATH: [size, used, available, use%]."""
    done = subprocess.run(["df", "-h", "--output=size,used,avail,pcent", str(path)],
                          capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"df -h --output does not work here: {done.stderr.strip()}")
    return done.stdout.splitlines()[1].split()


@pytest.mark.parametrize("where", ["/", "tmp_path"])
async def test_disk_shows_the_figures_and_percentage_df_h_shows(manager, tmp_path, where):
    path = tmp_path if where == "tmp_path" else where
    for _ in range(5):  # others write to the disk meanwhile: compare between two equal dfs
        before = df_h(path)
        ours = await body(manager, f"systemstatus disk {path}")
        if df_h(path) == before:
            break
    else:
        pytest.skip("the disk kept changing under df")
    size, used, available, percent = before
    assert ours == f"{path}: {used} used of {size} ({percent}), {available} available\n"


@pytest.mark.parametrize(("total", "used", "free", "expected"), [
    # The percentage is used / (used + available), rounded up; reserved blocks count in neither.
    (270553174016, 23257849856, 85686444032, "22G used of 252G (22%), 80G available"),
    (1000, 1, 999, "1 used of 1000 (1%), 999 available"),
    (1024, 512, 512, "512 used of 1.0K (50%), 512 available"),
    # Below 10 one decimal, rounded up; at 10 and over a whole number, rounded up.
    (10 * 1024 - 1, 9 * 1024 + 1, 1023, "9.1K used of 10K (91%), 1023 available"),
    (1024 ** 2 - 512, 1024 ** 2 - 512, 0, "1.0M used of 1.0M (100%), 0 available"),
    (0, 0, 0, "0 used of 0 (-), 0 available"),  # /proc and friends
])
async def test_disk_rounds_as_df_does(manager, monkeypatch, total, used, free, expected):
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(total, used, free))
    assert await body(manager, "systemstatus disk /x") == f"/x: {expected}\n"


async def test_captest_writes_a_snapshot(manager, tmp_path):
    reply = await body(manager, "captest")
    path = reply.removeprefix("captured ").strip()
    assert os.path.dirname(path) == str(tmp_path / "captures")
    snapshot = json.loads(open(path).read())
    assert snapshot["hostname"] == socket.gethostname()
    assert set(snapshot) == {"time", "hostname", "load", "memory", "disk_root"}


async def test_captures_are_bounded_in_count(manager, tmp_path):
    paths = [(await body(manager, "captest")).split()[1] for _ in range(5)]
    assert sorted(str(p) for p in (tmp_path / "captures").glob("capture-*.json")) == paths[-3:]


async def test_frequency_commands(manager):
    assert await body(manager, "get_freq") == "ERROR: unknown command 'get_freq' (try 'help')\n"
    assert await body(manager, "scrapman get_freq") == "every 60 s (1 per minute)\n"
    assert await body(manager, "capture_at 30") == "every 30 s (2 per minute)\n"
    assert await body(manager, "scrapfreq 0.5") == "every 120 s (0.5 per minute)\n"
    assert await body(manager, "scrapman get_freq") == "every 120 s (0.5 per minute)\n"
    assert await body(manager, "capture_at 0.1") == "ERROR: interval must be 1 to 86400 seconds\n"
    assert await body(manager, "scrapfreq 0") == "ERROR: scrapfreq: PER_MINUTE must be more than 0\n"
    assert await body(manager, "scrapfreq often") == (
        "ERROR: PER_MINUTE must be a number, not 'often'; usage: scrapfreq PER_MINUTE\n")


async def test_the_capture_loop_starts_beats_and_stops(manager):
    scrapman = manager.catalog.services["scrapman"].instance
    assert await body(manager, "scrapman get_heartbeat") == "not capturing; no capture yet\n"
    assert (await body(manager, "startcap")).startswith("started; every 60 s")
    assert await until(lambda: scrapman.count >= 1, 5.0)  # the first capture is immediate
    assert re.match(r"^capturing; last capture \S+ \([\d.]+ s ago\); \d+ captures\n$",
                    await body(manager, "scrapman get_heartbeat"))
    assert (await body(manager, "startcap")).startswith("already capturing")
    assert (await body(manager, "stopcap")).startswith("stopped after ")
    assert not scrapman.capturing
    assert await body(manager, "stopcap") == "not capturing\n"


async def test_the_capture_loop_stops_on_restart_and_on_stop(manager):
    scrapman = manager.catalog.services["scrapman"].instance
    await body(manager, "startcap")
    loop_task = scrapman._loop
    await body(manager, "restart scrapman")
    assert loop_task.done()
    await body(manager, "startcap")
    loop_task = manager.catalog.services["scrapman"].instance._loop
    await manager.stop()
    assert loop_task.done()
