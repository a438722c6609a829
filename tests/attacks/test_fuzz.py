"""Seeded hostile input in bulk, over real sockets, each campaign ending with
proof that the server still answers.

1. Ten thousand hostile inputs (random bytes, NULs, 0xFF runs, telnet commands,
   invalid UTF-8, huge tokens, unbalanced quotes) from eight connections at
   once, vetted against a mirror of the server's framer so none is a command
   that would end the server or the connection.
2. A few thousand hostile lines on one connection, in bounded batches each
   closed by a probe: every reply is a normal reply or one ``ERROR:`` line,
   never a traceback, and the probe comes back exactly.

The figures measured are printed: ``pytest -s tests/attacks/test_fuzz.py``.
"""

import asyncio
import contextlib
import copy
import logging
import random
import socket
import time

import pytest
from helpers import (
    SEP,
    SEP_LINE,
    TIMEOUT,
    TOO_LONG,
    LineClient,
    read_reply,
    running_server,
    the_testsvc,
    unexpected_errors,
    until,
)

from smanager.service import State
from smanager.wire.framing import OVERFLOW, LineFramer
from smanager.wire.protocol import SEPARATOR

MAX_LINE = 65536
IAC, WILL, WONT, DO, DONT = 255, 251, 252, 253, 254


# -- the hostile lines of campaign 2 (also one kind of campaign 1's inputs) ---------------------

NAMES = ["__class__", "_cmd_x", "cmd_echo", "__init__", "testsvc __dict__", "testsvc _background",
         "testsvc start", "testsvc stop", "testsvc cleanup", "testsvc client_disconnected",
         "systemstatus run_in_background", "toplevel_cmd_hostname", "testsvc cmd_add 1 2",
         "testsvc _change_state stopped", "testsvc.__class__", "help __class__", "help testsvc __dict__"]


LINE_HEADS = ["systemstatus echo", "testsvc add", "testsvc refuse", "testsvc fail", "testsvc whoami",
         "testsvc data", "testsvc dashes", "help", "help -s", "TESTSVC HELP", "hostname",
         "scrapman get_freq", "capture_at", "scrapfreq", "systemstatus nosuch", "nosuch"]


TELNET = [b"\xff\xf1", b"\xff\xfd\x01", b"\xff\xfb\x03", b"\xff\xfe\x05", b"\xff\xfc\x18",
          b"\xff\xfd\x06", b"\xff\xfa\x18\x00xterm\xff\xf0", b"\xff\xf6", b"\xff\xf7", b"\xff\xf8"]


CTRL_C = b"\xff\xf4"  # also discards the lines queued before it: kept rare


TOKEN_BAD_UTF8 = [b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xfe"]


WORDS = ["'abc", '"x y', "\\", "'a\"b", "=", "==", "a=", "=b", "a=b=c", "b==1", "a=1", "b=x", "nan",
         "inf", "-0", "1e999", "9" * 5000, "0x10", "1_000", "\u0663", "\u202e", "\u2028", "\u0085",
         "\ufeff", "\U0001f642", "\u200b", "''", '""']


def token(rng, binary):
    """One hostile word; only a binary line may hold bytes that are not UTF-8."""
    kind = rng.randrange(10 if binary else 7)
    if kind == 0:
        return bytes(rng.randrange(1, 32) for _ in range(rng.randint(1, 8)))  # control bytes, LF too
    if kind == 1:
        return b"\x00" * rng.randint(1, 5)
    if kind == 2:
        return CTRL_C if rng.random() < 0.03 else b"".join(rng.choices(TELNET, k=rng.randint(1, 3)))
    if kind == 3 and rng.random() < 0.2:
        return bytes([rng.choice(b"ab'\"=\\-")]) * rng.randint(1000, 8000)
    if kind in (3, 4):
        return rng.choice(NAMES).encode()
    if kind in (5, 6):
        return rng.choice(WORDS).encode()
    if kind == 7:
        return bytes(rng.randrange(255) for _ in range(rng.randint(1, 30)))  # anything but IAC
    if kind == 8:
        return b"\xff\xff" * rng.randint(1, 20)  # escaped IAC: literal 0xFF runs
    return rng.choice(TOKEN_BAD_UTF8)


def hostile_line(rng):
    head = rng.choice(LINE_HEADS * 2 + NAMES + [""] * 4).encode()
    binary = rng.random() < 0.2
    words = ([head] if head else []) + [token(rng, binary) for _ in range(rng.randint(0, 5))]
    return rng.choice([b" ", b"\t", b""]).join(words) + rng.choice([b"\n", b"\r\n", b"\r\x00"])


def check_reply(reply):
    assert reply.endswith(SEP) and "Traceback" not in reply, reply
    body = reply[: -len(SEP)]
    assert SEPARATOR not in body.split("\n"), reply
    if body.startswith("ERROR: "):
        assert body.count("\n") == 1 and len(body) < 420, reply


# -- 1. ten thousand hostile inputs, eight connections at once -----------------------------------

INPUTS = 10_000
WORKERS = 8  # connections hammering at once
BATCH_INPUTS, BATCH_BYTES = 100, 48_000  # below max_line: a swallowed batch cannot overflow
OVERSIZE_RATE = 0.004  # inputs over max_line, each ending its batch and its connection
HEADS = [b"systemstatus echo", b"testsvc add", b"testsvc refuse", b"testsvc whoami",
         b"testsvc data", b"testsvc dashes", b"testsvc fail", b"help", b"help -s",
         b"help testsvc", b"hostname", b"nosuch", b"systemstatus", b"TESTSVC ADD", b""]
BAD_UTF8 = [b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80\x80", b"\xf8\x88\x80\x80\x80",
            b"\xfe", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\xef\xbf"]
QUOTES = [b"'abc", b'"x y', b"a\\", b"'a\"b", b'"""', b"'''", b"\"'\"'", b"'" * 99, b'"\\"']
CONTROL = [b"\x1b[2J", b"\x1b]0;owned\x07", b"\x08" * 9, b"\x7f", b"\r", b"\x0b\x0c",
           b"\x1b", b"\x85", b"\xc2\x85", b"\xe2\x80\xa8"]
# Lines the fuzz must never produce: they end the server or the connection, change
# the reply format, or run for long (checked after the server's own framing).
FORBIDDEN = ("kill", "quit", "exit", "restart", "mode", "hang", "forever", "sleep", "block",
             "count", "big", "startcap", "stopcap", "scrapfreq", "capture", "captest", "disk")
# After a batch, whatever telnet state it left (a pending IAC, an option byte owed,
# an unfinished subnegotiation) is closed, and the half-typed line ended.
RESYNC = b"\xff\xf0\xff\xf0\n"


def telnet_noise(rng):
    parts = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        if kind == 0:
            parts.append(bytes([IAC, rng.randrange(256)]))  # any command byte, known or not
        elif kind == 1:
            parts.append(bytes([IAC, rng.choice((DO, DONT, WILL, WONT)), rng.randrange(256)]))
        elif kind == 2:
            body = rng.randbytes(rng.randint(0, 40)).replace(b"\xff\xf0", b"")
            parts.append(b"\xff\xfa" + body + (b"\xff\xf0" if rng.random() < 0.7 else b""))
        elif kind == 3:
            parts.append(b"\xff\xf4" if rng.random() < 0.1 else b"\xff\xf6")  # Ctrl-C kept rare
        elif kind == 4:
            parts.append(rng.choice([b"\xff\xf8", b"\xff\xf7", b"\xff\xf1", b"\xff\xfd\x06"]))
        elif kind == 5:
            parts.append(b"\xff")  # a lone IAC: eats the next byte
        else:
            parts.append(rng.choice(HEADS))
    return b"".join(parts)


def hostile_input(rng):
    """One hostile input: bytes, then (usually) a line ending of some kind."""
    head = rng.choice(HEADS)
    kind = rng.randrange(100)
    if kind < 20:
        data = rng.randbytes(rng.randint(1, 300))  # anything at all
    elif kind < 30:
        data = head + b" " + rng.randbytes(rng.randint(1, 60))
    elif kind < 38:
        data = head + b"\x00" * rng.randint(1, 9) + b" x\x00y " + b"\x00" * rng.randint(0, 3)
    elif kind < 46:
        run = b"\xff" * rng.randint(1, 64)  # odd runs leave an IAC pending
        data = rng.choice([run, head + b" " + run, b"\xff\xff" * rng.randint(1, 40)])
    elif kind < 58:
        data = telnet_noise(rng)
    elif kind < 66:
        data = head + b" " + b" ".join(rng.choices(BAD_UTF8, k=rng.randint(1, 4)))
    elif kind < 68:
        fill = rng.choice(b"ab'\"=\\- x9").to_bytes(1, "big")
        data = head + b" " + fill * rng.randint(1000, 40_000)  # a huge token
    elif kind < 78:
        data = head + b" " + b" ".join(rng.choices(QUOTES, k=rng.randint(1, 3)))
    elif kind < 86:
        data = head + b" " + b"".join(rng.choices(CONTROL, k=rng.randint(1, 5)))
    else:
        return hostile_line(rng)  # campaign 2's generator, with its own line ending
    return data + rng.choice([b"\n", b"\n", b"\r\n", b"\r\x00", b"", b"\r"])


def forbidden(line):
    text = line.decode("utf-8", "replace").lower()
    text = text.replace("'", "").replace('"', "").replace("\\", "")
    return any(word in text for word in FORBIDDEN)


class Mirror:
    """The server's framer, replayed on our side to vet inputs before they are sent."""

    def __init__(self):
        self.framer = LineFramer(MAX_LINE)

    def take(self, data):
        """True (and the state advanced) if ``data`` is safe to send; False, nothing changed, if not."""
        trial = copy.deepcopy(self.framer)
        events = trial.feed(data)
        if OVERFLOW in events or forbidden(trial.partial) \
                or any(type(e) is bytes and forbidden(e) for e in events):
            return False
        self.framer = trial
        return True


class RawClient:
    """A non-blocking socket read with sock_recv: bytes that arrived before a
    reset are still seen (an asyncio StreamReader would raise instead)."""

    def __init__(self, sock):
        self.sock, self.buf, self.eof, self.answers = sock, bytearray(), False, 0

    @classmethod
    async def connect(cls, port):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        client = cls(sock)
        banner = await client.reply()
        assert banner is not None and banner.startswith("*" * 50), banner
        return client

    def send(self, data):
        return asyncio.ensure_future(asyncio.get_running_loop().sock_sendall(self.sock, data))

    def _strip_answers(self):
        """Remove whole telnet answers (0xFF is never in a reply's UTF-8 text);
        return how much of the buffer can be parsed."""
        start = 0
        while (i := self.buf.find(b"\xff", start)) >= 0:
            if len(self.buf) < i + 3:
                return i
            assert self.buf[i + 1] in (WILL, WONT, DONT), bytes(self.buf[i:i + 3])
            del self.buf[i:i + 3]
            self.answers += 1
            start = i
        return len(self.buf)

    async def reply(self):
        """The next reply up to its separator, as text; None once the server has closed."""
        out = bytearray()
        async with asyncio.timeout(TIMEOUT):
            while True:
                parsed = self._strip_answers()
                newline = self.buf.find(b"\n", 0, parsed)
                if newline >= 0:
                    out += self.buf[:newline + 1]
                    del self.buf[:newline + 1]
                    if out.endswith(SEP_LINE) and (len(out) == len(SEP_LINE)
                                                   or out[-len(SEP_LINE) - 1] == 10):
                        return out.decode()  # strict: a reply is always UTF-8
                    continue
                if self.eof:
                    assert not out and not self.buf, f"cut off: {bytes(out + self.buf)[:200]!r}"
                    return None
                try:
                    data = await asyncio.get_running_loop().sock_recv(self.sock, 262_144)
                except ConnectionResetError:
                    data = b""
                self.eof = not data
                self.buf += data

    def close(self):
        self.sock.close()


async def hammer(port, seed, quota, stats):
    """Send ``quota`` hostile inputs in batches, each batch closed by a probe."""
    rng = random.Random(seed)
    sent = 0
    while sent < quota:
        client = await RawClient.connect(port)
        stats["connections"] += 1
        mirror = Mirror()
        try:
            assert await asyncio.wait_for(_ask(client, f"systemstatus echo hi-{seed}"),
                                          TIMEOUT) == f"hi-{seed}\n" + SEP  # not a first line
            while sent < quota:
                parts, oversize = [], False
                size = 0
                while len(parts) < min(BATCH_INPUTS, quota - sent) and size < BATCH_BYTES:
                    if rng.random() < OVERSIZE_RATE:
                        fill = rng.choice(b"ab'\"= x9\t").to_bytes(1, "big")
                        parts.append(b"systemstatus echo " + fill * rng.randint(70_000, 100_000))
                        oversize = True
                        break
                    for _ in range(100):  # bounded: almost every input is safe at once
                        data = hostile_input(rng)
                        if len(data) + size < MAX_LINE - 1000 and mirror.take(data):
                            break
                    else:
                        raise AssertionError("no safe input found")
                    parts.append(data)
                    size += len(data)
                if not oversize:
                    assert mirror.take(RESYNC) and mirror.framer.at_line_start
                    probe = f"probe-{seed}-{stats['batches']}"
                    parts.append(RESYNC + f"systemstatus echo {probe}\n".encode())
                sending = client.send(b"".join(parts))
                stats["batches"] += 1
                last = None
                try:
                    while True:
                        reply = await client.reply()
                        if reply is None:
                            break
                        stats["replies"] += 1
                        stats["errors"] += reply.startswith("ERROR: ")
                        check_reply(reply)
                        if not oversize and reply == f"{probe}\n" + SEP:
                            break
                        last = reply
                    if oversize:
                        assert reply is None and last == TOO_LONG.decode(), last
                        stats["oversize"] += 1
                    else:
                        assert reply is not None, f"closed before {probe}"
                finally:
                    with contextlib.suppress(ConnectionError):
                        await asyncio.wait_for(sending, TIMEOUT)
                sent += len(parts) - (not oversize)  # the probe is not an input
                if oversize:
                    break
        finally:
            stats["answers"] += client.answers
            client.close()
    stats["inputs"] += sent


async def _ask(client, line):
    sending = client.send(line.encode() + b"\n")
    reply = await client.reply()
    await sending
    return reply


async def test_ten_thousand_hostile_inputs_leave_the_server_answering(caplog):
    caplog.set_level(logging.WARNING, logger="smanager")
    stats = dict.fromkeys(["inputs", "batches", "replies", "errors", "oversize", "answers",
                           "connections"], 0)
    started = time.perf_counter()
    async with running_server() as server:
        port = server.address[1]
        share = -(-INPUTS // WORKERS)
        async with asyncio.timeout(60):
            await asyncio.gather(*(hammer(port, 7000 + n, share, stats) for n in range(WORKERS)))
        probe = await LineClient.connect(port)
        try:
            assert await probe.ask("testsvc add 2 3") == "5\n" + SEP
            assert await probe.ask("systemstatus echo still here") == "still here\n" + SEP
        finally:
            await probe.close()
        assert the_testsvc(server).state is State.RUNNING
        assert not server.manager.shutdown_requested.is_set()
        assert await until(lambda: not server.connections)
    elapsed = time.perf_counter() - started
    print(f"\n[fuzz] {stats['inputs']} hostile inputs in {stats['batches']} batches over "
          f"{stats['connections']} connections in {elapsed:.1f} s: {stats['replies']} replies "
          f"({stats['errors']} one-line errors), {stats['answers']} telnet answers, "
          f"{stats['oversize']} oversized lines closed")
    assert stats["inputs"] >= INPUTS
    assert stats["oversize"] >= 1 and stats["replies"] > INPUTS // 2
    assert unexpected_errors(caplog) == []
    assert not [r for r in caplog.records if r.name.startswith("smanager") and r.exc_info
                and r.name != "smanager.runner"]


# -- 2. a few thousand hostile lines on one connection ---------------------------------------------

async def test_a_few_thousand_hostile_lines_get_replies_or_one_line_errors(server, caplog):
    rng, tasks_before = random.Random(1234), len(asyncio.all_tasks())
    client = await LineClient.connect(server.address[1])
    assert await client.ask("systemstatus echo start") == "start\n" + SEP
    async with asyncio.timeout(30):
        for batch_no in range(50):
            lines = [hostile_line(rng) for _ in range(60)]
            if batch_no == 0:
                lines.append(b"systemstatus echo " + b"a" * 60_000 + b"\n")
            batch = b"".join(lines)
            probe = f"probe-{batch_no}\n" + SEP
            await client.send(batch + f"systemstatus echo probe-{batch_no}\n".encode())
            for _ in range(batch.count(b"\n") + batch.count(b"\r\x00") + 1):
                reply = await read_reply(client)
                check_reply(reply)
                if reply == probe:
                    break
            else:
                pytest.fail(f"no probe reply after batch {batch_no}")
    await client.close()
    other = await LineClient.connect(server.address[1])
    assert await other.ask("systemstatus echo ok") == "ok\n" + SEP
    await other.close()
    assert the_testsvc(server).state is State.RUNNING
    assert unexpected_errors(caplog) == []
    assert await until(lambda: len(asyncio.all_tasks()) <= tasks_before and not server.connections,
                       2.0)
