"""Attacks on the monitor service, each through a real server process (python -m
smanager) keeping its state in the test's own directory: garbage pushed, telnet bytes
mid-line, values at the edge of a float, collectors that raise, hang or return junk, a
kill -9 in the middle of a push flood, corrupt state files, a subscriber that never
reads, an exec collector that floods its output, and a crowd of watchers interrupted at
once.  Whatever is thrown: a one-line error, every wait bounded, the server still
answering, no traceback in its log, and every child stopped by its test."""

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
from helpers import (
    QUICK,
    SEP,
    SEP_LINE,
    TIMEOUT,
    TOO_LONG,
    LineClient,
    blocking_ask,
    exchange,
    of_this_run,
    read_reply,
    until,
)
from services.test_monitor_real import say

from smanager.metrics.monitoring import SUBSCRIBER_QUEUE

CTRL_C = b"\xff\xf4"  # telnet IAC IP
MARGIN = 2.0  # seconds a reply may come after the time it is due
LONGEST = 2**24  # bytes a test's own reads may take at once
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


def config(tmp_path, *lines):
    """A config file whose monitor keeps its state under TMP_PATH and runs no default
    collectors; LINES are more keys of [service.monitor], then any tables."""
    path = tmp_path / "smanager.toml"
    path.write_text("\n".join(["[service.monitor]", f'state_dir = "{tmp_path / "state"}"',
                               "defaults = false", *lines, ""]))
    return str(path)


def one_line_error(reply):
    """REPLY is `ERROR: ...` in one short line of printable text, then the separator."""
    body = reply.removesuffix(SEP)
    return (reply.endswith(SEP) and body.startswith("ERROR: ") and body.count("\n") == 1
            and len(body) < 400 and body[:-1].isprintable())


def names_in(last_reply):
    """The metric names of a `monitor last` table."""
    return {line.split()[0] for line in last_reply.removesuffix(SEP).splitlines()[1:]}


def log_of(server):
    return "".join(server.log)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def stops_within(server, seconds):
    """SIGTERM, and whether it exited within SECONDS; killed if it had not."""
    server.process.terminate()
    try:
        server.process.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return False


@contextlib.contextmanager
def log_drained(server):
    """Reads the server's log in a thread, so thousands of alert notices (each logged)
    never fill the pipe and block the server; stops it at the end."""
    reader = threading.Thread(target=lambda: server.log.extend(server.process.stderr),
                              daemon=True)
    reader.start()
    try:
        yield server
    finally:
        stops_within(server, TIMEOUT)
        reader.join(TIMEOUT)


async def json_ask(client, line):
    """LINE on a client in JSON mode; its reply, decoded."""
    await client.send(line)
    return json.loads(await asyncio.wait_for(client.reader.readline(), TIMEOUT))


async def json_client(port):
    """A client in JSON mode whose lines may be long (2,000 alerts make 300 kB)."""
    client = LineClient(*await asyncio.open_connection("127.0.0.1", port, limit=LONGEST))
    client.banner = await client.reply()
    assert (await json_ask(client, "mode json"))["ok"]
    return client


async def polled(ask, predicate, seconds=TIMEOUT, every=0.1):
    """ASK() again until PREDICATE holds of what it gave (a state the server reaches by
    itself); the last answer.  Bounded in time and count."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / every) + 2):
        answer = await ask()
        if predicate(answer) or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(every)
    return answer


def live_processes(command):
    """Live (not zombie) processes named COMMAND that this test run may have started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.find(b"(") + 1:text.rfind(b")")]
        state = text[text.rfind(b")") + 2:text.rfind(b")") + 3]
        if name == command.encode() and state not in (b"Z", b"X") and of_this_run(int(entry)):
            found.append(int(entry))
    return found


# -- garbage pushed ------------------------------------------------------------------------

GARBAGE = [
    ("a 300-character name", b"monitor push " + b"n" * 300 + b" 1", "bad metric name"),
    ("a 60 kB name", b"monitor push " + b"n" * 60_000 + b" 1", "bad metric name"),
    ("a NUL in the name", b"monitor push a\x00b 1", "bad metric name"),
    ("a NUL for a name", b"monitor push \x00 1", "bad metric name"),
    ("terminal escapes in the name", b"monitor push a\x1b[2J\x1b]0;owned\x07b 1", "bad metric name"),
    ("a leading dash", b"monitor push -rf 1", "bad metric name"),
    ("a NUL after the value", b"monitor push x.y 1\x00", "VALUE must be a number"),
    ("an escape before the value", b"monitor push x.y \x1b[31m1", "VALUE must be a number"),
    ("60 kB of digits", b"monitor push x.y " + b"9" * 60_000, "VALUE must be a number"),
    ("nan", b"monitor push x.y nan", "VALUE must be a number"),
    ("-inf", b"monitor push x.y -inf", "VALUE must be a number"),
    ("1e999", b"monitor push x.y 1e999", "VALUE must be a number"),
    ("hex", b"monitor push x.y 0x10", "VALUE must be a number"),
    ("a negative timestamp", b"monitor push x.y 1 -1", "TIMESTAMP must be within"),
    ("timestamp 0", b"monitor push x.y 1 0", "TIMESTAMP must be within"),
    ("a timestamp in 2100", b"monitor push x.y 1 4102444800", "TIMESTAMP must be within"),
    ("a timestamp of 1e300", b"monitor push x.y 1 1e300", "TIMESTAMP must be within"),
    ("a timestamp of -1e300", b"monitor push x.y 1 -1e300", "TIMESTAMP must be within"),
    ("a timestamp of 1e999", b"monitor push x.y 1 1e999", "TIMESTAMP must be a number"),
    ("a timestamp of 5000 digits", b"monitor push x.y 1 " + b"7" * 5000, "TIMESTAMP must be"),
    ("not UTF-8 in the name", b"monitor push x.\xc3\x28 1", "line is not valid UTF-8"),
    ("not UTF-8 for the value", b"monitor push x.y \x80\xfe", "line is not valid UTF-8"),
    ("an overlong slash", b"monitor push x.\xc0\xaf 1", "line is not valid UTF-8"),
    ("a lone surrogate", b"monitor push x.\xed\xa0\x80 1", "line is not valid UTF-8"),
    ("an unbalanced quote", b"monitor push 'x.y 1", "unbalanced quotes"),
    ("a bare CR splitting the words", b"monitor push x.y 1\rjunk", "TIMESTAMP must be a number"),
    ("too many words", b"monitor push x.y 1 2 3", "too many arguments"),
]


async def test_garbage_pushes_get_one_line_errors_store_nothing_and_the_server_goes_on(
        tmp_path, server_process):
    server = server_process("--config", config(tmp_path))
    client = await LineClient.connect(server.port)
    try:
        assert await client.ask("monitor push ok.before 1") == "OK\n" + SEP
        replies = {}
        for what, line, _ in GARBAGE:
            replies[what] = await client.ask(line + b"\n")
        assert await client.ask("monitor push ok.after 2") == "OK\n" + SEP
        last = await client.ask("monitor last")
    finally:
        await client.close()
    for what, _, error in GARBAGE:
        assert one_line_error(replies[what]) and error in replies[what], (what, replies[what])
    assert names_in(last) == {"ok.before", "ok.after"}, last
    assert server.process.poll() is None
    assert "Traceback" not in log_of(server)


async def test_a_10_mb_value_is_refused_in_one_line_and_others_are_still_served(
        tmp_path, server_process):
    server = server_process("--config", config(tmp_path))
    got, _ = await asyncio.to_thread(
        exchange, server.port, [b"monitor push big.v " + b"1" * 10_000_000 + b" \n"])
    assert got == TOO_LONG  # an unread tail makes the close a reset; the line came first
    assert await asyncio.to_thread(blocking_ask, server.port, "monitor last") == (
        "no metrics match\n" + SEP)
    assert server.process.poll() is None
    assert "Traceback" not in log_of(server)


async def test_telnet_commands_mid_line_never_reach_a_metric_name(tmp_path, server_process):
    server = server_process("--config", config(tmp_path))
    client = await LineClient.connect(server.port)
    sent = [
        b"monitor push tel\xff\xf1.nop 1\n",  # NOP: dropped
        b"monitor push junk.ip 1\xff\xf4monitor push tel.ip 2\n",  # Ctrl-C: the line so far goes
        b"monitor push junk.el 1\xff\xf8monitor push tel.el 3\n",  # erase line
        b"monitor push tel.ecx\xff\xf7 4\n",  # erase character
        b"monitor push \xff\xfa\x18\x00xterm\xff\xf0tel.sb 5\n",  # a subnegotiation, skipped
        b"monitor push tel.do\xff\xfd\x01 6\n",  # DO ECHO: refused, the line goes on
    ]
    try:
        for line in sent:
            await client.send(line)
            assert await read_reply(client) == "OK\n" + SEP, line  # one reply each, no more
        last = await client.ask("monitor last")
    finally:
        await client.close()
    assert names_in(last) == {"tel.nop", "tel.ip", "tel.el", "tel.ec", "tel.sb", "tel.do"}, last
    assert "Traceback" not in log_of(server)


async def test_what_push_accepts_get_and_spark_give_back_as_numbers(tmp_path, server_process):
    """Values whose rollup sums would overflow (past 1e300) are refused at push, so
    `monitor get ... agg=avg` and `monitor spark` only ever see finite numbers (once, three
    pushes of 1.7e308 in a minute summed to inf)."""
    server = server_process("--config", config(tmp_path, "flush_every = 0.2"))
    minute = int(time.time()) // 60 * 60 - 120
    client = await json_client(server.port)
    try:
        pushed = [await json_ask(client, f"monitor push big.x 1.7e308 {minute + second}")
                  for second in range(3)]
        accepted = sum(reply["ok"] for reply in pushed)
        stored = await polled(
            lambda: json_ask(client, "monitor get big.x since=1h step=1s agg=count"),
            lambda reply: len(reply["result"]["points"]) == accepted)
        assert len(stored["result"]["points"]) == accepted
        got = await json_ask(client, "monitor get big.x since=1h step=1m agg=avg")
        spark = await json_ask(client, "monitor spark big.x since=1h")
    finally:
        await client.close()
    assert all(reply["ok"] or one_line_error(f"ERROR: {reply['error']}\n" + SEP)
               for reply in pushed), pushed
    assert isinstance(got["result"], dict), got  # structured, not text
    assert all(isinstance(value, float) and math.isfinite(value)
               for _, value in got["result"]["points"]), got
    if accepted:
        assert [value for _, value in got["result"]["points"]] == [1.7e308], got
        assert "no data" not in spark["text"], spark


# -- collectors that misbehave ---------------------------------------------------------------

HOSTILE_COLLECTORS = '''
import asyncio
import threading

from smanager import Collector


class Fast(Collector):
    interval = 1

    def collect(self):
        return {"up": 1}


class Raiser(Collector):
    def collect(self):
        raise RuntimeError("boom\\nand a second line nobody may see")


class StuckThread(Collector):
    def collect(self):
        threading.Event().wait()


class StuckAsync(Collector):
    async def collect(self):
        await asyncio.Event().wait()


class SwallowsCancel(Collector):
    """A retry loop that catches the cancellation meant to end it."""

    async def collect(self):
        for _ in range(10**9):
            try:
                await asyncio.sleep(1000)
            except asyncio.CancelledError:
                pass


class Text(Collector):
    def collect(self):
        return "not a dict"


class Strings(Collector):
    def collect(self):
        return {"a": "lots", "b": "1"}


class Huge(Collector):
    def collect(self):
        return {f"m{i}": i for i in range(100_000)}
'''

EXPECTED_ERRORS = {
    "raiser": "RuntimeError: boom",
    "stuckthread": "timed out after 1 s",
    "stuckasync": "timed out after 1 s",
    "text": "collect() returned str, not a dict",
    "strings": "a: 'lots' is not a number",
}


def collectors_config(tmp_path, tables):
    folder = tmp_path / "collectors"
    folder.mkdir()
    (folder / "hostile.py").write_text(HOSTILE_COLLECTORS)
    lines = [f'collectors_dir = "{folder}"']
    for name, keys in tables.items():
        lines += [f"[service.monitor.collectors.{name}]", *keys]
    return config(tmp_path, *lines)


async def test_collectors_that_raise_hang_or_return_junk_leave_a_fast_one_fresh(
        tmp_path, server_process):
    tables = {"fast": [], **{name: ["interval = 1"] for name in EXPECTED_ERRORS},
              "huge": ["interval = 1"]}
    server = server_process("--config", collectors_config(tmp_path, tables))
    client = await json_client(server.port)
    try:
        async def rows():
            listed = await json_ask(client, "monitor list")
            return {row["name"]: row for row in listed["result"]["collectors"]}

        failing = await polled(rows, lambda by_name: all(
            by_name[name]["errors"] for name in EXPECTED_ERRORS))
        assert all(failing[name]["errors"] for name in EXPECTED_ERRORS), failing
        ages = []
        for _ in range(3):  # three more runs of fast, each seen fresh
            runs = (await rows())["fast"]["runs"]
            await polled(rows, lambda by_name, runs=runs: by_name["fast"]["runs"] > runs)
            began = time.monotonic()
            (row,) = (await json_ask(client, "monitor last fast.*"))["result"]
            assert time.monotonic() - began < QUICK
            ages.append((row["age"], row["stale"]))
        huge = (await json_ask(client, "monitor last huge.m99999"))["result"]
    finally:
        await client.close()
    assert not any(stale for _, stale in ages), ages  # STALE: two runs missed
    assert [row["name"] for row in huge] == ["huge.m99999"]
    listed = await say(server.port, "monitor list")
    lines = listed.splitlines()
    assert len(lines) == 1 + len(tables) + 1, listed  # header, one line each, the store
    for name, error in EXPECTED_ERRORS.items():
        (row,) = [line for line in lines if line.startswith(name + " ")]
        assert error in row, row
    assert "second line" not in listed
    assert server.process.poll() is None


@pytest.mark.parametrize("kind", ["stuckthread", "stuckasync", "swallowscancel"])
async def test_monitor_collect_of_a_hung_collector_answers_within_its_time_limit(
        tmp_path, server_process, kind):
    """A collector stuck past its time limit (a thread that never returns, a
    coroutine that swallows its cancellation) gets "timed out after 1 s" at once from
    `monitor collect`, and the server still stops on SIGTERM (once, the run awaited the
    stuck work forever)."""
    # interval 86400: no scheduled run gets there first; timeout 1: the time limit
    tables = {"hung": [f'collector = "{kind}"', "interval = 86400", "timeout = 1"]}
    server = server_process("--config", collectors_config(tmp_path, tables),
                            "--shutdown-timeout", "2")
    client = await LineClient.connect(server.port)
    reply = None
    try:
        with contextlib.suppress(TimeoutError):
            reply = await client.ask("monitor collect hung", 1 + MARGIN)
        listed = await say(server.port, "monitor list")
    finally:
        await client.close()
        stopped = stops_within(server, 2 + MARGIN + 1)
    assert "timed out after 1 s" in listed, listed
    assert reply == "ERROR: hung: timed out after 1 s\n" + SEP, (
        f"no answer within {1 + MARGIN} s: {reply!r}")
    assert stopped, "the server did not exit on SIGTERM"


# -- a kill -9 in the middle of a push flood ------------------------------------------------

FLUSH_EVERY = 1.0
PUSHERS = 4
SERIES = 1000  # per pusher: the writer keeps a rollup row per series and minute
FLOOD_SECONDS = 6.0


def flood_sample(pusher, k, base):
    """The (name, ts) of pusher's K-th sample: its own row, however many come."""
    return f"flood.c{pusher}.{k % SERIES}", base + k


async def pipelined_pushes(port, pusher, base, acked):
    """Push PUSHER's samples pipelined as fast as the server takes them, noting when
    each "OK" came (in ACKED), until cancelled."""
    client = await LineClient.connect(port)

    async def push():
        for start in range(0, 10**8, 100):  # bounded: the test cancels it long before
            client.writer.write(b"".join(
                b"monitor push %s %d %d\n" % (name.encode(), k, ts)
                for k in range(start, start + 100) for name, ts in [flood_sample(pusher, k, base)]))
            await client.writer.drain()

    async def note_acks():
        for _ in range(10**8):
            reply = await client.reader.readuntil(SEP_LINE)
            assert reply == b"OK\n" + SEP_LINE, reply
            acked.append(time.monotonic())

    tasks = [asyncio.ensure_future(push()), asyncio.ensure_future(note_acks())]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        client.writer.transport.abort()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_kill_9_mid_flood_keeps_the_database_whole_and_every_sample_acked_before_the_last_flush(
        tmp_path, server_process):
    """Every sample answered "OK" more than a flush interval before a kill -9 is in
    metrics.db, and the database is whole.  (Once, push said OK for samples only queued,
    faster than the writer committed them, and dropped past max_queued: a push now waits
    for the writer past a bound, and the writer's batches are one sqlite statement, so a
    busy event loop cannot starve it through the GIL.)"""
    path = config(tmp_path, f"flush_every = {FLUSH_EVERY:g}")
    server = server_process("--config", path)
    base = int(time.time()) - 10 * 86400
    acked = [[] for _ in range(PUSHERS)]
    pushers = [asyncio.ensure_future(pipelined_pushes(server.port, pusher, base, acked[pusher]))
               for pusher in range(PUSHERS)]
    await asyncio.sleep(FLOOD_SECONDS)  # the attack's length, not a wait for anything
    os.kill(server.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    server.process.wait(TIMEOUT)
    for pusher in pushers:
        pusher.cancel()
    for outcome in await asyncio.gather(*pushers, return_exceptions=True):
        if isinstance(outcome, AssertionError):  # a reply other than OK
            raise outcome
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "metrics.db")) as db:
        verdict = db.execute("PRAGMA integrity_check").fetchall()
        stored = set(db.execute("SELECT name, ts FROM samples JOIN series ON id = series"))
    due = [flood_sample(pusher, k, base) for pusher, times in enumerate(acked)
           for k, at in enumerate(times) if at < killed - FLUSH_EVERY - 1.0]
    missing = [sample for sample in due if sample not in stored]
    print(f"\n[kill -9] {sum(map(len, acked))} pushes acknowledged in {FLOOD_SECONDS:g} s, "
          f"{len(stored)} rows in metrics.db, {len(missing)} of the {len(due)} acknowledged "
          f"before the last flush missing")

    again = server_process("--config", path)
    last = await say(again.port, "monitor last flood.c0.1")
    assert verdict == [("ok",)], verdict
    assert names_in(last) == {"flood.c0.1"}, last
    assert not [name for name in os.listdir(tmp_path / "state") if "corrupt" in name]
    assert "Traceback" not in log_of(server) + log_of(again)
    assert len(due) > 10_000, "the flood was too thin to test anything"
    assert not missing, (f"{len(missing)} of {len(due)} samples acknowledged more than "
                         f"{FLUSH_EVERY + 1:g} s before the kill are not in metrics.db "
                         f"({len(stored)} rows stored; the first missing: {missing[0]})")


# -- corrupt state files ----------------------------------------------------------------------

def not_a_database(path):
    path.write_bytes(b"\x00garbage, not sqlite" * 5000)


def pages_overwritten(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        db.executemany("INSERT INTO series (name) VALUES (?)",
                       [(f"metric{i}." * 20,) for i in range(3000)])
        db.commit()
    data = bytearray(path.read_bytes())
    for page in range(2 * 4096, len(data), 4096):  # the first pages stay: sqlite opens it
        data[page + 100:page + 300] = b"\xa5" * 200
    path.write_bytes(bytes(data))


def tables_of_another_program(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE samples (when_taken TEXT, reading BLOB)")
        db.execute("INSERT INTO samples VALUES ('yesterday', x'00ff')")
        db.commit()


CORRUPTIONS = [
    (not_a_database, b'{"collectors": {"x": {"collector": "mem"', "cut off mid-write"),
    (pages_overwritten, b'[1, 2, "not an object"]', "a list"),
    (tables_of_another_program, b'{"alerts": ["x.y > 1 \xff\xfe"]}', "not UTF-8"),
]


@pytest.mark.parametrize("spoil_database, monitor_json, how", CORRUPTIONS,
                         ids=[f"{spoil.__name__}, monitor.json {how}"
                              for spoil, _, how in CORRUPTIONS])
async def test_corrupt_state_files_are_set_aside_with_one_log_line_each_and_monitoring_goes_on(
        tmp_path, server_process, spoil_database, monitor_json, how):
    """A damaged database is one log line, however many pages sqlite lists (once,
    the whole quick_check report went into the warning)."""
    state = tmp_path / "state"
    state.mkdir()
    spoil_database(state / "metrics.db")
    spoiled = (state / "metrics.db").read_bytes()
    (state / "monitor.json").write_bytes(monitor_json)
    server = server_process("--config", config(tmp_path))
    assert await say(server.port, "monitor push ok.x 1") == "OK\n"
    assert names_in(await say(server.port, "monitor last")) == {"ok.x"}
    assert (await say(server.port, "monitor list")).startswith("no collectors\nstore: ")
    assert (await say(server.port, "monitor alerts")).startswith("no alerts")
    server.stop()
    aside = [name for name in os.listdir(state) if name.startswith("metrics.db.corrupt-")]
    assert len(aside) == 1 and (state / aside[0]).read_bytes() == spoiled, os.listdir(state)
    assert (state / "monitor.json.bad").read_bytes() == monitor_json
    log = log_of(server)
    assert all(LOG_RECORD.match(line) for line in log.splitlines()), log[-3000:]
    assert sum(f"moved it to {state / aside[0]}" in line for line in log.splitlines()) == 1
    assert sum("monitor.json cannot be read" in line for line in log.splitlines()) == 1


# -- a subscriber that never reads ----------------------------------------------------------

ALERTS = 2000  # each tells 5 changes, then FLAPPING: 12,000 notices
NOTICE_BYTES = 50  # the least a notice line takes ("13:25:47 alert 1: s.x > 5: OK, ...")
BUFFERED = 256 * 1024  # bytes of socket and transport buffers between the queue and a client


async def deaf_client(port):
    """A client with a small receive buffer, banner read, that will read nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    client = LineClient(*await asyncio.open_connection(sock=sock, limit=LONGEST))
    client.banner = await client.reply()
    return client


async def read_until_quiet(client, quiet=1.0):
    """What the server sends until it has sent nothing for QUIET seconds (a stream
    that has nothing more to say), as text; bounded by TIMEOUT in all."""
    data = b""
    async with asyncio.timeout(TIMEOUT):
        for _ in range(100_000):
            try:
                chunk = await asyncio.wait_for(client.reader.read(65536), quiet)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    return data.decode()


async def test_a_subscriber_that_never_reads_costs_bounded_memory_and_loses_what_overflows(
        tmp_path, server_process):
    rules = ", ".join(['"s.x > 5 for=1"'] * ALERTS)
    server = server_process("--config", config(tmp_path, f"alerts = [{rules}]"))
    with log_drained(server):
        deaf = await deaf_client(server.port)
        other = await LineClient.connect(server.port)
        pusher = await LineClient.connect(server.port)
        try:
            await deaf.send("monitor subscribe")
            assert await deaf.reader.readline() == b"subscribed to alert changes; Ctrl-C ends\n"
            before = rss_bytes(server.process.pid)
            pushes = b"".join(b"monitor push s.x %d\n" % (10 * (n % 2 == 0)) for n in range(12))
            await pusher.send(pushes)
            began = time.monotonic()
            assert names_in(await other.ask("monitor last s.x", QUICK)) == {"s.x"}
            answered_in = time.monotonic() - began
            assert await pusher.replies(12) == ["OK\n" + SEP] * 12
            looker = await json_client(server.port)
            states = {row["state"] for row in (await json_ask(looker, "monitor alerts"))["result"]}
            await looker.close()
            grown = rss_bytes(server.process.pid) - before
            received = await read_until_quiet(deaf)  # at last: what was kept for it
            await deaf.send(CTRL_C)
            received += await deaf.reply_text()
        finally:
            for client in (deaf, other, pusher):
                await client.close()
    assert states == {"FLAPPING"}, states  # every alert told all it had to tell
    assert answered_in < QUICK
    assert grown < 30 * 2**20, f"the server grew {grown / 2**20:.1f} MB"
    notices = [line for line in received.splitlines() if " alert " in line]
    print(f"\n[subscribe] {len(notices)} of {ALERTS * 6} notices reached a client that never "
          f"read; the server grew {grown / 2**20:.1f} MB; another client was answered in "
          f"{answered_in * 1000:.0f} ms")
    assert received.endswith("ERROR: interrupted\n" + SEP)
    assert 0 < len(notices) <= SUBSCRIBER_QUEUE + BUFFERED // NOTICE_BYTES, (
        f"{len(notices)} of {ALERTS * 6} notices reached a client that never read")


# -- an exec collector that floods ------------------------------------------------------------

async def test_an_exec_collector_flooding_its_output_is_stopped_with_a_one_line_error(
        tmp_path, server_process):
    """No users file: every connection may run everything, admin commands included."""
    server = server_process("--config", config(tmp_path))
    port = server.port
    ignores_term = "\"command=sh -c 'trap \\\"\\\" TERM; exec yes'\""
    added = [await say(port, line) for line in (
        "monitor add flood exec command=yes interval=1",  # on its schedule, again and again
        "monitor add once exec command=yes interval=86400",  # run with monitor collect alone
        f"monitor add stubborn exec {ignores_term} interval=86400 timeout=2")]
    try:
        began = time.monotonic()
        once = await say(port, "monitor collect once")
        once_took = time.monotonic() - began
        began = time.monotonic()
        stubborn = await say(port, "monitor collect stubborn")
        stubborn_took = time.monotonic() - began
        lister = await json_client(port)
        try:
            await polled(lambda: json_ask(lister, "monitor list"), lambda listed: [
                row["errors"] for row in listed["result"]["collectors"]
                if row["name"] == "flood"] >= [2])
        finally:
            await lister.close()
        listed = await say(port, "monitor list")
        began = time.monotonic()
        assert await say(port, "monitor push still.here 1") == "OK\n"
        push_took = time.monotonic() - began
    finally:
        for name in ("flood", "once", "stubborn"):
            await say(port, f"monitor remove {name}")
    assert all(line.startswith("collector ") for line in added), added
    assert once == "ERROR: once: yes: printed more than 1048576 bytes; stopped\n"
    assert once_took < QUICK
    assert one_line_error(stubborn + SEP), stubborn
    assert stubborn.startswith("ERROR: stubborn: sh: still running after ")
    assert stubborn_took < 2 + MARGIN
    (row,) = [line for line in listed.splitlines() if line.startswith("flood ")]
    assert "yes: printed more than 1048576 bytes; stopped" in row
    assert push_took < QUICK
    assert await until(lambda: not live_processes("yes")), live_processes("yes")
    assert "Traceback" not in log_of(server)


# -- a crowd of watchers, then Ctrl-C -------------------------------------------------------------

WATCHERS = 20


async def test_twenty_watchers_each_end_with_a_reply_on_ctrl_c_and_the_server_goes_on(
        tmp_path, server_process):
    server = server_process("--config", config(tmp_path))
    port = server.port
    assert await say(port, "monitor push a.b 1") == "OK\n"
    assert await say(port, "monitor watch a.* every=0.01") == (
        "ERROR: every must be at least 0.1 s\n")
    watchers = await asyncio.gather(*(LineClient.connect(port) for _ in range(WATCHERS)))
    try:
        for watcher in watchers:
            await watcher.send("monitor watch a.* every=0.1")

        async def a_second_of(watcher):  # ten values, one every 0.1 s
            return [await asyncio.wait_for(watcher.reader.readline(), TIMEOUT) for _ in range(10)]

        seen = await asyncio.gather(*(a_second_of(watcher) for watcher in watchers))
        for watcher in watchers:
            watcher.writer.write(CTRL_C)
        endings = await asyncio.gather(*(watcher.reply_text() for watcher in watchers))
        again = await asyncio.gather(*(watcher.ask("monitor last a.b") for watcher in watchers))
    finally:
        for watcher in watchers:
            await watcher.close()
    assert all(line.endswith(b"  a.b 1.00\n") for lines in seen for line in lines)
    for ending in endings:
        *values, last = ending.removesuffix(SEP).splitlines()
        assert last == "ERROR: interrupted", ending[-200:]
        assert all(value.endswith("  a.b 1.00") for value in values), ending[-200:]
    assert all(names_in(reply) == {"a.b"} for reply in again)
    began = time.monotonic()
    assert names_in(await say(port, "monitor last a.*")) == {"a.b"}
    assert time.monotonic() - began < QUICK
    assert "Traceback" not in log_of(server)
