"""proc end to end with a real smanager process: kill -9 and start again,
a second server on the same state directory, tail through telnet and nc, a
real daemon (redis-server), an output flood, SIGTERM and restart.

Every server is ``python -m smanager --config FILE`` (the server_process
fixture stops it); every client is a real one (AsyncClient, LineClient,
telnet, nc).  Every wait is bounded, and conftest.py checks that no
supervised program outlives its test.
"""

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time

import pytest
from helpers import (
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    ServerProcess,
    live_members,
    need,
    on_terminal,
    supervised,
    until,
)

from smanager.client import AsyncClient

PY = sys.executable
SHORT_WAITS = {"start_secs": 0.2, "backoff": {"initial": 0.05, "factor": 2, "jitter": 0}}
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(1000)"]
PAIR = ["sh", "-c", "sleep 1000 & sleep 1000"]  # a leader and two members in its group
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")  # cli/main.py's format


@pytest.fixture(autouse=True)
async def tag(tmp_path):
    """SMANAGER_TEST=<unique>, in the environment of every program this test
    configures: how it tells its own processes from those of tests running
    beside it.  A program the test leaves (one failed half-way after a kill
    -9) is killed with its group, and the test fails naming it."""
    tag = f"SMANAGER_TEST={os.getpid()}-{tmp_path.name}"
    yield tag
    if await until(lambda: not supervised(tag)):
        return
    left = supervised(tag)
    for _, pgid in left.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    pytest.fail(f"programs left running: {left}")


def program(command, **keys):
    return {"command": command, **SHORT_WAITS, **keys}


def toml(value):
    """A value as TOML: JSON's strings, numbers, booleans and arrays are TOML's too."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def write_config(tmp_path, tag, programs, **service):
    """smanager.toml with a [service.proc] table (its state_dir in TMP_PATH) and
    one [service.proc.programs.NAME] table each, TAG in every program's
    environment; its path, as the server takes it."""
    lines = ["[service.proc]", f"state_dir = {toml(str(tmp_path / 'state'))}"]
    lines += [f"{key} = {toml(value)}" for key, value in service.items()]
    variable, _, mark = tag.partition("=")
    for name, keys in programs.items():
        keys = {**keys, "env": {**keys.get("env", {}), variable: mark}}
        lines += ["", f"[service.proc.programs.{name}]"]
        lines += [f"{key} = {toml(value)}" for key, value in keys.items()]
    path = tmp_path / "smanager.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


async def say(smanager, line, seconds=TIMEOUT):
    """LINE's reply as telnet shows it (a new connection), without the separator."""
    client = await LineClient.connect(smanager.port)
    try:
        reply = await client.ask(line, seconds)
    finally:
        await client.close()
    assert reply.endswith(SEP), reply
    return reply[: -len(SEP)]


async def value(smanager, *words):
    """A command's value, as JSON mode carries it (AsyncClient)."""
    async with AsyncClient("127.0.0.1", smanager.port, timeout=TIMEOUT) as client:
        return await client.run(*words)


async def running(smanager, *names):
    """Wait until each program runs; {name: its row in proc list}."""
    for name in names:  # the server's bound first, so that it says why
        said = await say(smanager, f"proc wait {name} timeout={TIMEOUT:g}", TIMEOUT + 5)
        assert said == f"{name}: RUNNING\n"
    return {row["name"]: row for row in await value(smanager, "proc", "list")}


def groups_of(tag):
    """{program: its one process group}, from /proc (a program with two is a bug)."""
    found = {}
    for program_name, pgid in supervised(tag).values():
        found.setdefault(program_name, set()).add(pgid)
    assert all(len(pgids) == 1 for pgids in found.values()), found
    return {name: pgids.pop() for name, pgids in found.items()}


ARGV0 = {"pair": "sh", "sleeper": PY}


def left_running(name, pid, how):
    """The line a new smanager logs for each program the killed one left."""
    return f"{name}: pid {pid} ({ARGV0[name]}) was left running by a previous smanager; {how}"


def pids_and_states(rows):
    return {name: (row["pid"], row["state"]) for name, row in rows.items()}


def kill_9(server):
    """kill -9 the server process, as the OOM killer or a crash would."""
    server.process.kill()
    server.process.wait(TIMEOUT)


class CopyWatch:
    """Looks at /proc, over and over in a thread of its own, for a program that
    runs twice at once: two of its process groups alive together."""

    def __init__(self, tag):
        self.tag = tag
        self.copies = []  # (program, pgids) seen alive at the same moment
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._thread.join(TIMEOUT)

    def _watch(self):
        deadline = time.monotonic() + 6 * TIMEOUT
        while not self._done.is_set() and time.monotonic() < deadline:
            by_program = {}
            for program_name, pgid in supervised(self.tag).values():
                by_program.setdefault(program_name, set()).add(pgid)
            for program_name, pgids in by_program.items():
                # One scan of /proc is not one instant: a group seen early may
                # have ended before a later one was seen.  Alive now as well
                # means alive together.
                if len(pgids) > 1 and all(live_members(pgid) for pgid in pgids):
                    self.copies.append((program_name, pgids))
            self._done.wait(0.002)


# -- kill -9 and the state directory -----------------------------------------------------------

async def test_programs_a_killed_smanager_left_are_stopped_and_started_again_never_twice(
        tmp_path, tag, server_process):
    config = write_config(tmp_path, tag, {"pair": program(PAIR), "sleeper": program(SLEEPER)})
    first = server_process("--config", config)
    before = await running(first, "pair", "sleeper")
    groups = groups_of(tag)
    assert len(live_members(groups["pair"])) == 3

    kill_9(first)
    assert {name: len(live_members(pgid)) for name, pgid in groups.items()} == {
        "pair": 3, "sleeper": 1}, "the programs should survive their supervisor"

    with CopyWatch(tag) as watch:
        second = server_process("--config", config)
        after = await running(second, "pair", "sleeper")
    assert watch.copies == []
    log = "".join(second.log)
    for name in ("pair", "sleeper"):
        assert left_running(name, before[name]["pid"], "stopped it with TERM") in log
        assert not live_members(groups[name])
        assert after[name]["pid"] != before[name]["pid"]
    assert groups_of(tag) == {name: after[name]["pid"] for name in after}


async def test_with_orphans_adopt_a_new_smanager_keeps_the_old_pid_and_can_stop_it(
        tmp_path, tag, server_process):
    config = write_config(tmp_path, tag, {"pair": program(PAIR), "sleeper": program(SLEEPER)},
                          orphans="adopt")
    first = server_process("--config", config)
    before = await running(first, "pair", "sleeper")
    groups = groups_of(tag)
    kill_9(first)

    second = server_process("--config", config)
    log = "".join(second.log)
    after = await running(second, "pair", "sleeper")
    for name in ("pair", "sleeper"):
        assert left_running(name, before[name]["pid"], "adopted it") in log
        assert after[name]["state"] == "RUNNING"
        assert after[name]["pid"] == before[name]["pid"]
    assert groups_of(tag) == groups
    assert len(live_members(groups["pair"])) == 3

    assert await say(second, "proc stop pair") == "pair: STOPPED (stopped by SIGTERM)\n"
    assert await until(lambda: not live_members(groups["pair"]))
    assert live_members(groups["sleeper"]), "stopping one adopted program stopped another"


async def test_a_second_smanager_on_the_same_state_dir_exits_2_naming_the_first(
        tmp_path, tag, server_process):
    config = write_config(tmp_path, tag, {"pair": program(PAIR), "sleeper": program(SLEEPER)})
    first = server_process("--config", config)
    before = await running(first, "pair", "sleeper")
    members = {name: sorted(live_members(pgid)) for name, pgid in groups_of(tag).items()}

    second = ServerProcess("--config", config)
    try:
        with pytest.raises(RuntimeError, match="server did not start"):
            second.start()
    finally:
        status = second.stop()  # it exited; or, wrongly started, it stops here
    assert status == 2
    refusal = (f"smanager: error: proc: state directory {tmp_path / 'state'} is in use by "
               f"another smanager (pid {first.process.pid})\n")
    assert [line for line in second.log if not LOG_RECORD.match(line)] == [refusal], second.log
    assert not any("Traceback" in line for line in second.log)

    after = await running(first, "pair", "sleeper")
    assert pids_and_states(after) == pids_and_states(before)
    assert {name: sorted(live_members(pgid)) for name, pgid in groups_of(tag).items()} == members


# -- proc tail over a real socket ----------------------------------------------------------------

PEEK = '''
import asyncio

from smanager import CommandError, SService


class Peek(SService):
    """Test only: what only this server's memory can tell"""

    async def cmd_followers(self, name):
        """How many clients follow program NAME's output (its Output's followers)"""
        # The program's driver task holds the Program (gc cannot find it: the
        # server freezes what exists at start-up out of the collector's sight).
        for task in asyncio.all_tasks():
            frame = task.get_coro().cr_frame
            if task.get_name() == f"proc {name}" and frame is not None:
                return len(frame.f_locals["self"].output._followers)
        raise CommandError(f"no task drives {name}")
'''

# Prints each line written to the FIFO it is given, as it comes.
ECHO_FIFO = [PY, "-c", ("import sys\nfor line in open(sys.argv[1], 'rb', 0):\n"
                        "    sys.stdout.buffer.write(line); sys.stdout.flush()")]


def peek_service(tmp_path):
    """A services directory with Peek: what only the server's memory can tell."""
    directory = tmp_path / "peek"
    directory.mkdir()
    (directory / "peek.py").write_text(PEEK)
    return str(directory)


async def followers_become(smanager, name, count, meanwhile=None):
    """Whether program NAME gets COUNT followers within TIMEOUT (asked over the
    wire), calling MEANWHILE before each look."""
    async with AsyncClient("127.0.0.1", smanager.port, timeout=TIMEOUT) as client:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if meanwhile is not None:
                meanwhile()
            if await client.run("peek", "followers", name) == count:
                return True
            await asyncio.sleep(0.02)
    return False


async def test_tail_streams_lines_as_written_until_ctrl_c_in_telnet_or_the_client_leaving(
        tmp_path, tag, server_process):
    need("telnet")
    need("nc")
    fifo = tmp_path / "lines"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # never blocks; keeps the reader from seeing EOF
    try:
        config = write_config(tmp_path, tag, {"echo": program([*ECHO_FIFO, str(fifo)])})
        smanager = server_process("--config", config, "--services", peek_service(tmp_path))
        pid = (await running(smanager, "echo"))["echo"]["pid"]

        async with on_terminal("telnet", "127.0.0.1", str(smanager.port)) as (_, terminal):
            await terminal.expect(SEP_LINE)  # the banner
            terminal.type(b"proc tail echo\r")
            assert await followers_become(smanager, "echo", 1)
            for text in (b"first", b"second"):
                os.write(writer, text + b"\n")
                assert (await terminal.expect(text + b"\n")).endswith(b" out " + text + b"\n")
            terminal.type(b"\x03")  # Ctrl-C: telnet sends IAC IP
            await terminal.expect(b"ERROR: interrupted\n" + SEP_LINE)
            assert await followers_become(smanager, "echo", 0)
            terminal.type(b"systemstatus echo still here\r")
            await terminal.expect(b"\nstill here\n" + SEP_LINE)

        nc = await asyncio.create_subprocess_exec(
            "nc", "127.0.0.1", str(smanager.port), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        try:
            nc.stdin.write(b"proc tail echo\n")
            await asyncio.wait_for(nc.stdout.readuntil(SEP_LINE), TIMEOUT)  # the banner
            assert await followers_become(smanager, "echo", 1)
            os.write(writer, b"third\n")
            line = await asyncio.wait_for(nc.stdout.readline(), TIMEOUT)
            assert line.endswith(b" out third\n")
        finally:
            nc.kill()
            await nc.wait()
        # A connection that is gone shows only when the server writes to it
        # (after EOF, a half-closed client may still be reading): the first
        # write draws the peer's reset, a later one fails.
        assert await followers_become(smanager, "echo", 0,
                                      meanwhile=lambda: os.write(writer, b"to nobody\n"))
        assert pids_and_states(await running(smanager, "echo")) == {"echo": (pid, "RUNNING")}
    finally:
        os.close(writer)


# -- a real daemon ---------------------------------------------------------------------------------

REDIS = ["redis-server", "--port", "$PORT", "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"]


async def ping(port):
    """Redis's PING on a raw socket: its first reply bytes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    try:
        writer.write(b"PING\r\n")
        return await asyncio.wait_for(reader.readline(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_redis_killed_with_9_comes_back_on_a_port_it_answers_and_why_shows_sigkill(
        tmp_path, tag, server_process):
    need("redis-server")
    redis = program(REDIS, port="auto", ready="tcp:$PORT", ready_interval=0.05)
    smanager = server_process("--config", write_config(tmp_path, tag, {"redis": redis}))
    await running(smanager, "redis")
    before = await value(smanager, "proc", "status", "redis")
    assert await ping(before["port"]) == b"+PONG\r\n"

    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while not await value(smanager, "proc", "why", "redis"):  # the exit is seen...
        assert time.monotonic() < deadline, "proc did not see redis die"
        await asyncio.sleep(0.02)
    await running(smanager, "redis")  # ...and it is started again
    after = await value(smanager, "proc", "status", "redis")
    assert after["state"] == "RUNNING" and after["pid"] != before["pid"]
    assert await ping(after["port"]) == b"+PONG\r\n"  # port = "auto": maybe another one

    (end,) = await value(smanager, "proc", "why", "redis")
    assert end["signal"] == "SIGKILL" and end["during"] == "RUNNING"
    assert "killed by SIGKILL after " in await say(smanager, "proc why redis")


# -- a flood of output -----------------------------------------------------------------------------

# As fast as it can: short lines, lines of 300 kB (cut to 64 KiB in memory)
# and runs of 700 kB with no newline at all; at TERM, says how much it wrote.
FLOOD = r"""
import signal, sys
written = 0
def report(*_):
    sys.stderr.write(f"wrote {written} bytes\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, report)
chunks = [b"".join(b"line %d\n" % i for i in range(5000)), b"x" * 300_000 + b"\n",
          b"y" * 700_000, b"\n"]
while True:
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
        written += len(chunk)
"""
FLOOD_SECONDS = 2.0
# What smanager holds for a program's output whatever it writes (output.py):
# per stream 1000 lines of at most 1 Mi characters together (up to 4 bytes
# each), one partial line of 64 KiB, and the 256 KiB the loop reads from a pipe
# at a time: some 13 MiB at worst.  32 MiB leaves room for the allocator; a
# server that kept what goes through (hundreds of MB in 2 s here, and more
# than the bound wherever the test passes) fails.
RSS_GROWTH_BOUND = 32 << 20
PIPE_CHUNK = 256 << 10  # asyncio reads a pipe this much at a time: one log write
ANSWER_BOUND = 1.0  # seconds; a loop that served the pipe first would take the flood's 2 s


def memory(pid, field):
    """A VmRSS-like field of /proc/PID/status, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def test_a_flood_of_output_keeps_smanager_small_rotates_logs_and_others_are_answered(
        tmp_path, tag, server_process):
    flood = program([PY, "-c", FLOOD], autostart=False, log_max_bytes=1_000_000, log_backups=2)
    smanager = server_process("--config", write_config(tmp_path, tag, {"flood": flood}))
    pid = smanager.process.pid
    client = await LineClient.connect(smanager.port)
    try:
        assert await client.ask("systemstatus echo hi") == "hi\n" + SEP
        before = memory(pid, "VmRSS")
        assert (await client.ask("proc start flood")).startswith("flood: RUNNING")
        took, began = [], time.monotonic()
        while time.monotonic() - began < FLOOD_SECONDS:
            asked = time.monotonic()
            assert await client.ask("systemstatus echo hi", ANSWER_BOUND) == "hi\n" + SEP
            took.append(time.monotonic() - asked)
            await asyncio.sleep(0.05)
        assert await client.ask("proc stop flood") == "flood: STOPPED (stopped by SIGTERM)\n" + SEP
        peak = memory(pid, "VmHWM")
        said = await client.ask("proc logs flood stream=err n=5")
    finally:
        await client.close()

    assert len(took) >= 10 and max(took) < ANSWER_BOUND, took
    wrote = int(re.search(r" err wrote (\d+) bytes\n", said).group(1))
    assert wrote > RSS_GROWTH_BOUND, f"only {wrote} bytes: too few for the bound to mean much"
    assert peak - before < RSS_GROWTH_BOUND, f"RSS {before} -> peak {peak} for {wrote} bytes"
    logs = tmp_path / "state" / "logs"
    sizes = {path.name: path.stat().st_size for path in logs.glob("flood.out.log*")}
    assert set(sizes) == {"flood.out.log", "flood.out.log.1", "flood.out.log.2"}, sizes
    assert max(sizes.values()) <= 1_000_000 + PIPE_CHUNK, sizes


# -- stopping and restarting the server ----------------------------------------------------------

def noting_term(name, record, linger=0.0):
    """A program that, at TERM, waits LINGER seconds, appends NAME to RECORD and exits."""
    code = ("import signal, sys, time\n"
            "def note(*_):\n"
            f"    time.sleep({linger})\n"
            f"    with open({str(record)!r}, 'a') as record: record.write({name!r} + '\\n')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, note)\n"
            "while True: time.sleep(1000)\n")
    return [PY, "-c", code]


async def test_sigterm_stops_dependents_first_then_what_they_depend_on_and_exits_0(
        tmp_path, tag, server_process):
    record = tmp_path / "stopped"
    # app lingers at TERM: stopped together, db would note itself first.
    programs = {"db": program(noting_term("db", record)),
                "app": program(noting_term("app", record, linger=0.5), depends_on=["db"])}
    smanager = server_process("--config", write_config(tmp_path, tag, programs))
    await running(smanager, "db", "app")
    groups = groups_of(tag)

    assert smanager.stop() == 0  # SIGTERM
    assert record.read_text() == "app\ndb\n"
    assert not any(live_members(pgid) for pgid in groups.values())


async def test_restart_of_every_service_over_the_wire_keeps_the_programs_running(
        tmp_path, tag, server_process):
    config = write_config(tmp_path, tag, {"pair": program(PAIR), "sleeper": program(SLEEPER)})
    smanager = server_process("--config", config)
    before = await running(smanager, "pair", "sleeper")
    members = {name: sorted(live_members(pgid)) for name, pgid in groups_of(tag).items()}

    restarted = (await say(smanager, "restart")).splitlines()[-1]
    assert restarted.startswith("restarted: ") and "proc" in restarted.split(), restarted
    after = await running(smanager, "pair", "sleeper")
    assert pids_and_states(after) == pids_and_states(before)
    assert {name: sorted(live_members(pgid)) for name, pgid in groups_of(tag).items()} == members
