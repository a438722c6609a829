"""Attacks on the TLS listener from the outside, over real loopback sockets.

Half-finished handshakes past small caps, garbage instead of a ClientHello, a
TLS client that will not read, the time-outs seen through TLS, close_notify
and TCP half-close in every order, renegotiation and key updates, shutdown
with handshakes and commands under way, and certificates for unknown users.
Each ends with the server's admission count back at 0.  Every server listens
on 127.0.0.1 port 0 and is shut down by its test; the certificates are the
session's pki fixture (alice's names a user, mallory's, from the same CA, no one).
"""

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time

import pytest
from helpers import (
    RESET_ON_CLOSE,
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    client_ssl,
    make_users,
    need,
    read_steadily,
    running_server,
    the_connection,
    tls_settings,
    until,
    with_fixtures,
)

import smanager.server.server


@pytest.fixture
def errors_logged(caplog):
    """ERROR records of asyncio and smanager while the test runs (read at the end)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    caplog.set_level(logging.ERROR, logger="smanager")

    def errors():
        return [f"{r.name}: {r.getMessage()}" for r in caplog.records
                if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("asyncio", "smanager")]
    return errors


def counted_out(server):
    return server.admission.count == 0 and not server.connections


class RawTLS:
    """A TLS client over memory buffers on a plain asyncio TCP connection:
    which bytes it sends, and when, is the test's choice (a ClientHello and
    silence; close_notify with the TCP kept open; a FIN without close_notify)."""

    def __init__(self, reader, writer, context):
        self.reader, self.writer = reader, writer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.received = bytearray()  # decrypted, not yet taken
        self.tcp_eof = False  # the server closed (or reset) the TCP connection
        self.close_notify = False  # the server's close_notify arrived

    @classmethod
    async def connect(cls, port, pki, who=None, source="127.0.0.1"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        return cls(reader, writer, client_ssl(pki, who))

    def flush(self):
        if self.outgoing.pending:
            self.writer.write(self.outgoing.read())

    def hello(self):
        """Send the ClientHello, and nothing more."""
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.flush()

    async def _more(self, seconds=TIMEOUT):
        """One TCP read into the TLS buffers; False once the server closed."""
        if self.tcp_eof:
            return False
        try:
            data = await asyncio.wait_for(self.reader.read(65536), seconds)
        except ConnectionError:
            data = b""
        if not data:
            self.tcp_eof = True
            return False
        self.incoming.write(data)
        return True

    async def handshake(self, send_finished=True):
        """Shake hands; our Finished is sent now, or with what is sent next."""
        for _ in range(20):  # a handshake takes a few round trips, never twenty
            try:
                self.tls.do_handshake()
                if send_finished:
                    self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                if not await self._more():
                    raise ConnectionResetError("the server closed during the handshake")
        pytest.fail("the TLS handshake did not finish")

    def _decrypt(self):
        for _ in range(10_000):  # one read gives at most one record
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return
            if not data:
                self.close_notify = True
                return
            self.received += data

    async def until(self, marker, seconds=TIMEOUT):
        """Decrypted bytes up to and including ``marker``."""
        deadline = time.monotonic() + seconds
        for _ in range(100_000):
            self._decrypt()
            index = self.received.find(marker)
            if index >= 0:
                taken = bytes(self.received[:index + len(marker)])
                del self.received[:index + len(marker)]
                return taken
            left = deadline - time.monotonic()
            if self.close_notify or left <= 0 or not await self._more(left):
                break
        pytest.fail(f"no {marker!r} before the end: {bytes(self.received)[-300:]!r}")

    async def to_the_end(self, seconds=TIMEOUT):
        """Everything decrypted until the server closes the TCP connection
        (or ``seconds`` pass: then TimeoutError)."""
        async with asyncio.timeout(seconds):
            for _ in range(100_000):
                self._decrypt()
                if not await self._more():
                    break
        self._decrypt()
        taken = bytes(self.received)
        self.received.clear()
        return taken

    def send(self, data):
        self.tls.write(data if isinstance(data, bytes) else data.encode() + b"\n")
        self.flush()

    def send_close_notify(self):
        """Our close_notify; the TCP connection stays open."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        self.flush()

    def half_close(self):
        """A TCP FIN, with no close_notify before it."""
        self.writer.write_eof()

    def reset(self):
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        self.writer.transport.abort()

    def close(self):
        self.writer.transport.abort()


async def tls_client(port, pki, who=None):
    """A LineClient over asyncio's own TLS, its banner read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl(pki, who))
    client = LineClient(reader, writer)
    client.banner = await client.reply()
    return client


async def still_serves(server, pki):
    """A normal TLS client is answered."""
    client = await tls_client(server.address[1], pki)
    try:
        assert await client.ask("testsvc add 1 2") == "3\n" + SEP
    finally:
        await client.close()


# -- half-finished handshakes --------------------------------------------------------------

async def refused_at_the_door(port, pki, source):
    """A connection past a cap: closed before any TLS byte, without a word."""
    client = await RawTLS.connect(port, pki, source=source)
    try:
        client.hello()
        try:
            data = await asyncio.wait_for(client.reader.read(65536), TIMEOUT)
        except ConnectionError:
            data = b""
        return data
    finally:
        client.close()


async def test_a_flood_of_silent_hellos_is_capped_and_every_place_comes_back(
        pki, monkeypatch, errors_logged):
    """ClientHello, then silence, from two addresses against caps of 4 and 3 per
    address: the fifth is closed at once, unanswered; resets and the handshake
    time-out each give the places back; a real client gets in afterwards."""
    settings = {**tls_settings(pki), "max_connections": 4, "max_connections_per_address": 3}
    async with running_server(**settings) as server:
        port = server.address[1]
        for round_ in ("reset", "time-out"):
            if round_ == "time-out":
                monkeypatch.setattr(smanager.server.server, "HANDSHAKE_TIMEOUT", 0.5)
            held = []
            for source in ("127.0.0.1",) * 3 + ("127.0.0.2",):
                held.append(await RawTLS.connect(port, pki, source=source))
                held[-1].hello()
            assert await until(lambda: server.admission.count == 4), server.admission.by_address
            assert server.admission.by_address == {"127.0.0.1": 3, "127.0.0.2": 1}
            assert await refused_at_the_door(port, pki, "127.0.0.1") == b""  # per address
            assert await refused_at_the_door(port, pki, "127.0.0.3") == b""  # in all
            assert server.admission.count == 4 and not server.connections
            if round_ == "reset":
                for client in held:
                    client.reset()
            else:  # the server ends each handshake itself, 0.5 s after it began
                for client in held:
                    await client.to_the_end()
                    assert client.tcp_eof and not client.close_notify
                    client.close()
            assert await until(lambda: counted_out(server)), server.admission.by_address
            assert server.admission.by_address == {}
        await still_serves(server, pki)
    assert errors_logged() == []


async def test_a_client_hello_dripped_a_byte_at_a_time_cannot_outlast_the_time_out(
        pki, monkeypatch, errors_logged):
    """Progress does not extend the handshake: a ClientHello sent a byte every
    50 ms is cut off at the handshake time-out (0.5 s), and its place comes back."""
    monkeypatch.setattr(smanager.server.server, "HANDSHAKE_TIMEOUT", 0.5)
    async with running_server(**tls_settings(pki)) as server:
        client = await RawTLS.connect(server.address[1], pki)
        try:
            with pytest.raises(ssl.SSLWantReadError):
                client.tls.do_handshake()
            hello = client.outgoing.read()
            began = time.monotonic()
            for byte in hello:  # bounded: a few hundred bytes; the server cuts it short
                try:
                    client.writer.write(bytes([byte]))
                    await client.writer.drain()
                except ConnectionError:
                    break
                if client.reader.at_eof() or time.monotonic() - began > 3.0:
                    break
                await asyncio.sleep(0.05)  # the attacker's pace, not synchronisation
            await client.to_the_end()
            took = time.monotonic() - began
        finally:
            client.close()
        assert 0.4 < took < 2.0, f"cut off after {took:.2f} s"
        assert await until(lambda: counted_out(server))
    assert errors_logged() == []


# -- garbage instead of a ClientHello --------------------------------------------------------

GARBAGE = {
    "random bytes": random.Random(20240611).randbytes(3000),
    "an HTTP request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: probe\r\n\r\n",
    "telnet IAC": bytes([255, 253, 24, 255, 251, 31, 255, 253, 3, 255, 251, 1]),
    "a plain line": b"help\n",
    "a plain command": b"testsvc add 1 2\nkill\n",
    "a TLS record header alone": b"\x16\x03\x01\x02\x00",  # a ClientHello that never comes
    "two bytes": b"\xff\xf4",  # too short to be judged: only the time-out ends it
    "an SSLv2 hello": bytes.fromhex("802b0103010012000000100700c0030080010080060040040080020080"
                                    "0000000000000000000000000000000000"),
    "a huge record length": b"\x16\x03\x03\xff\xff" + b"\x00" * 200,
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
async def test_garbage_instead_of_a_client_hello_is_closed_quietly(
        pki, monkeypatch, errors_logged, garbage):
    """Whatever arrives instead of a ClientHello: the connection is closed (by the
    TLS library's verdict, else by the handshake time-out), no plaintext of ours
    is sent, nothing is logged as an error, and the place comes back."""
    monkeypatch.setattr(smanager.server.server, "HANDSHAKE_TIMEOUT", 0.5)
    async with running_server(**tls_settings(pki), max_connections_per_address=1) as server:
        port = server.address[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(GARBAGE[garbage])
            began = time.monotonic()
            try:
                answer = await asyncio.wait_for(reader.read(), TIMEOUT)
            except ConnectionError:
                answer = b""
            took = time.monotonic() - began
        finally:
            writer.transport.abort()
        assert b"ERROR" not in answer and b"Service Manager" not in answer, answer
        assert took < 3.0
        assert await until(lambda: counted_out(server)), server.admission.by_address
        await still_serves(server, pki)  # with 1 place per address: it was given back
    assert errors_logged() == []


# -- a TLS client that will not read ---------------------------------------------------------------

@pytest.mark.parametrize("ask", ["blob blob 20000", "blob chunks 40 512"])
async def test_a_tls_client_that_stops_reading_is_dropped_by_the_send_timeout(
        pki, errors_logged, ask):
    """20 MB asked for (one reply made on the event loop, or a stream), never
    read: the client is dropped after send_timeout and its place comes back,
    though idle_timeout is far away."""
    settings = {**tls_settings(pki), "services": with_fixtures("blob"),
                "send_timeout": 0.3, "idle_timeout": 60.0, "max_connections_per_address": 1}
    async with running_server(**settings) as server:
        client = await RawTLS.connect(server.address[1], pki)
        try:
            await client.handshake()
            await client.until(SEP_LINE)  # the banner
            client.writer.transport.pause_reading()  # from now on, read nothing
            client.send(ask)
            assert await until(lambda: server.connections)
            began = time.monotonic()
            assert await until(lambda: counted_out(server), seconds=5.0), "never dropped"
            assert time.monotonic() - began < 3.0
        finally:
            client.close()
        await still_serves(server, pki)
    assert errors_logged() == []


@pytest.mark.parametrize("over", ["tls", "tcp"])
async def test_a_client_reading_a_big_reply_steadily_after_quit_gets_all_of_it(
        pki, errors_logged, over):
    """A reply of 12 MiB (more than loopback's socket buffers hold), then quit,
    read steadily at 12 MB/s: about three send time-outs of closing.  A close
    that makes progress is not cut short (asyncio's own shutdown time-out is a
    deadline on the whole close, so it cannot be ours)."""
    settings = {**tls_settings(pki), "services": with_fixtures("blob"),
                "send_timeout": 0.3}
    kib, rate = 12 * 1024, 12e6
    want = kib * 1024 + len(SEP_LINE) + len(b"bye\n") + len(SEP_LINE)
    if over == "tcp":
        del settings["tls_cert"], settings["tls_key"]
    async with running_server(**settings) as server:
        if over == "tls":
            client = await tls_client(server.address[1], pki)
        else:
            client = await LineClient.connect(server.address[1])
        try:
            await client.send(f"blob blob {kib}\nquit\n")
            total = await read_steadily(client.reader, rate, want)
        finally:
            client.writer.transport.abort()
        assert total == want, f"cut off after {total} of {want} bytes"
        assert await until(lambda: counted_out(server))
    assert errors_logged() == []


# -- the time-outs, seen through TLS --------------------------------------------------------------------

async def test_the_idle_timeout_is_told_through_tls_and_closes(pki, errors_logged):
    async with running_server(**tls_settings(pki), idle_timeout=0.3) as server:
        client = await tls_client(server.address[1], pki)
        try:
            assert await client.ask("testsvc add 1 2") == "3\n" + SEP
            rest = await client.read_all()  # until the server's close_notify
        finally:
            await client.close()
        assert rest == b"ERROR: idle for 0.3 s; closing the connection\n" + SEP_LINE
        assert await until(lambda: counted_out(server))
    assert errors_logged() == []


@pytest.mark.parametrize("how", ["begun in one write", "a key", "a first line typed"])
async def test_the_line_timeout_is_told_through_tls_and_closes(pki, errors_logged, how):
    """A line begun and never finished: after a first command, in one write or
    as one key; or as the first line, typed a key at a time as a person types
    (each key read before the next is sent: keys sent together are one read,
    and a one-shot)."""
    async with running_server(**tls_settings(pki), line_timeout=0.3) as server:
        client = await tls_client(server.address[1], pki)
        try:
            if how == "a first line typed":
                (connection,) = server.connections
                for count, key in enumerate(b"tes", 1):
                    await client.send(bytes([key]))
                    assert await until(lambda count=count: connection.reads == count)
            else:
                assert await client.ask("testsvc add 1 2") == "3\n" + SEP
                await client.send(b"testsvc add" if how == "begun in one write" else b"t")
            rest = await client.read_all()
        finally:
            await client.close()
        assert rest == b"ERROR: line not finished within 0.3 s; closing the connection\n" + SEP_LINE
        assert await until(lambda: counted_out(server))
    assert errors_logged() == []


# -- close_notify and TCP half-close, in every order -------------------------------------------

async def connected(server, pki, banner=True):
    client = await RawTLS.connect(server.address[1], pki)
    await client.handshake()
    if banner:
        await client.until(SEP_LINE)
    return client


@pytest.mark.parametrize("when", ["with its Finished", "with its Finished and a line",
                                  "after the banner", "with a line", "mid-command"])
@pytest.mark.parametrize("how", ["close_notify, TCP kept open", "FIN without close_notify"])
async def test_a_client_that_ends_tls_is_let_go(pki, errors_logged, when, how):
    """The client ends its side (a close_notify it never follows with a FIN, or a
    FIN with no close_notify), at each moment, in the same segment as what
    comes before: the server closes the TCP connection itself and gives the
    place back.  A line after the banner is answered when it is answered at
    once (later replies are lost: asyncio's TLS closes at the client's end)."""
    async with running_server(**tls_settings(pki), max_connections_per_address=1) as server:
        client = await RawTLS.connect(server.address[1], pki)
        try:
            if when.startswith("with its Finished"):
                await client.handshake(send_finished=False)  # sent with what follows
            else:
                await client.handshake()
                await client.until(SEP_LINE)
            if when.endswith("a line"):
                client.tls.write(b"testsvc add 1 2\n")
            elif when == "mid-command":
                client.send("testsvc sleep 0.3")
                assert await until(lambda: server.connections
                                   and the_connection(server).pipeline.busy)
            if how.startswith("close_notify"):
                client.send_close_notify()
            else:
                client.flush()
                client.half_close()
            rest = await client.to_the_end(seconds=3.0)
        finally:
            client.close()
        if when == "with a line":
            assert rest == b"3\n" + SEP_LINE, rest
        assert b"ERROR" not in rest, rest
        assert await until(lambda: counted_out(server), seconds=3.0)
        await still_serves(server, pki)
    assert errors_logged() == []


@pytest.mark.parametrize("trigger", ["a line too long", "a one-shot"])
async def test_a_fin_while_the_server_has_stopped_reading_for_good(pki, errors_logged, trigger):
    """While a command runs, the server stops reading for good, to close once
    it is done: a line too long arrived, or the command is a one-shot (a first
    line without newline, then silence).  The client then sends a FIN without
    close_notify, and later resets: the connection must end, and its place
    come back, within the time-outs."""
    settings = {**tls_settings(pki), "max_line": 100, "max_connections_per_address": 1,
                "idle_timeout": 0.3, "send_timeout": 0.3, "shutdown_timeout": 0.5}
    async with running_server(**settings) as server:
        client = await connected(server, pki)
        try:
            if trigger == "a line too long":
                client.send(b"testsvc sleep 0.2\n" + b"x" * 200)
            else:
                client.send(b"testsvc sleep 0.4")
            assert await until(lambda: server.connections
                               and the_connection(server).pipeline.busy
                               and not the_connection(server).pipeline.reading)
            client.half_close()
            with contextlib.suppress(TimeoutError):
                await client.to_the_end(seconds=1.5)
            closed_by_server = client.tcp_eof
            client.reset()
            let_go = await until(lambda: counted_out(server), seconds=1.0)
        finally:
            client.close()
        assert closed_by_server, "the server never closed the TCP connection"
        assert let_go, f"its place is still taken: {server.admission.by_address}"
    assert errors_logged() == []


@pytest.mark.parametrize("ending", ["quit", "idle"])
async def test_a_client_that_never_answers_the_servers_close_notify(pki, errors_logged, ending):
    """The server ends the connection (quit; the idle time-out) and sends its
    close_notify; the client reads everything but never answers it and keeps
    the TCP connection open.  The place must come back within the server's own
    time-outs (here all 0.3 s), not hang on the client."""
    settings = {**tls_settings(pki), "idle_timeout": 0.3, "send_timeout": 0.3,
                "line_timeout": 0.3, "shutdown_timeout": 0.5, "max_connections_per_address": 1}
    async with running_server(**settings) as server:
        client = await connected(server, pki)
        try:
            if ending == "quit":
                client.send("quit")
            await client.until(SEP_LINE)  # bye, or the idle ERROR
            for _ in range(100):  # bounded: the close_notify follows at once
                if client.close_notify or not await client._more(TIMEOUT):
                    break
                client._decrypt()
            assert client.close_notify
            began = time.monotonic()
            let_go = await until(lambda: counted_out(server), seconds=1.5)
            took = time.monotonic() - began
        finally:
            client.close()
        assert let_go, f"held {took:.1f} s after its close_notify: {server.admission.by_address}"
    assert errors_logged() == []


async def test_a_client_that_talks_on_after_the_servers_close_notify(pki, errors_logged):
    """After quit (and the server's close_notify) the client sends more lines
    instead of its close_notify, then its close_notify: nothing more runs,
    nothing is logged as an error, and the place comes back."""
    async with running_server(**tls_settings(pki), max_connections_per_address=1) as server:
        client = await connected(server, pki)
        try:
            client.send("quit")
            assert (await client.until(SEP_LINE)).startswith(b"bye")
            for _ in range(100):  # bounded: the close_notify follows at once
                if client.close_notify or not await client._more():
                    break
                client._decrypt()
            assert client.close_notify
            client.tls.write(b"testsvc add 1 2\nkill\n")  # still possible before unwrap
            client.flush()
            client.send_close_notify()
            rest = await client.to_the_end(seconds=3.0)
        finally:
            client.close()
        assert rest == b""
        assert await until(lambda: counted_out(server), seconds=3.0)
        assert not server.manager.shutdown_requested.is_set()
        await still_serves(server, pki)
    assert errors_logged() == []


# -- renegotiation and key updates (openssl s_client's R, k and K commands) --------------------------

class SClient:
    """``openssl s_client`` in command mode: a line starting with R renegotiates
    (TLS 1.2), k or K sends a key update (TLS 1.3, K asks for one back)."""

    def __init__(self, process):
        self.process, self.out = process, b""

    @classmethod
    async def start(cls, port, pki, version):
        process = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
            str(pki / "ca.pem"), "-verify_return_error", version,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        return cls(process)

    async def stdout_until(self, marker):
        async with asyncio.timeout(TIMEOUT):
            for _ in range(10_000):
                if marker in self.out:
                    return
                data = await self.process.stdout.read(65536)
                if not data:
                    break
                self.out += data
        pytest.fail(f"s_client printed no {marker!r}: {self.out[-300:]!r}")

    async def stderr_line(self, starting):
        """Read stderr up to a line that starts with ``starting``; all of it."""
        seen = b""
        async with asyncio.timeout(TIMEOUT):
            for _ in range(1000):
                line = await self.process.stderr.readline()
                seen += line
                if not line or line.startswith(starting):
                    return seen
        return seen

    async def send(self, line):
        self.process.stdin.write(line + b"\n")
        await self.process.stdin.drain()

    async def finish(self):
        with contextlib.suppress(ConnectionError):
            self.process.stdin.close()
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), TIMEOUT)
        except TimeoutError:
            self.process.kill()
            out, err = await self.process.communicate()
        self.out += out
        return err


async def test_renegotiation_is_declined_and_costs_nothing(pki, errors_logged):
    """TLS 1.2: the client asks to renegotiate (a second handshake, costly for
    the server); the server declines (no_renegotiation), the client gives up,
    nothing is logged as an error and the place comes back."""
    need("openssl")
    async with running_server(**tls_settings(pki)) as server:
        client = await SClient.start(server.address[1], pki, "-tls1_2")
        try:
            await client.stdout_until(SEP_LINE)  # the banner
            await client.send(b"systemstatus echo before")
            await client.stdout_until(b"before\n" + SEP_LINE)
            await client.send(b"R")
            assert b"RENEGOTIATING" in await client.stderr_line(b"RENEGOTIATING")
            err = await client.finish()
        finally:
            if client.process.returncode is None:
                client.process.kill()
                await client.process.wait()
        assert b"no renegotiation" in err, err
        assert await until(lambda: counted_out(server))
        await still_serves(server, pki)
    assert errors_logged() == []


@pytest.mark.parametrize("key_update", [b"k", b"K"])
async def test_tls13_key_updates_between_commands(pki, errors_logged, key_update):
    need("openssl")
    async with running_server(**tls_settings(pki)) as server:
        client = await SClient.start(server.address[1], pki, "-tls1_3")
        try:
            await client.stdout_until(SEP_LINE)
            for round_ in range(3):
                await client.send(f"systemstatus echo round {round_}".encode())
                await client.stdout_until(f"round {round_}\n".encode() + SEP_LINE)
                await client.send(key_update)
                assert b"KEYUPDATE" in await client.stderr_line(b"KEYUPDATE")
            await client.send(b"quit")
            await client.stdout_until(b"bye\n" + SEP_LINE)
            await client.finish()
        finally:
            if client.process.returncode is None:
                client.process.kill()
                await client.process.wait()
        assert await until(lambda: counted_out(server))
    assert errors_logged() == []


# -- shutdown with handshakes and commands under way ---------------------------------------------

async def test_shutdown_with_handshakes_and_tls_commands_under_way(pki, errors_logged):
    """Shutdown meets: three handshakes stopped after the ClientHello, a TCP
    connection that sent nothing, a handshake whose Finished is unsent, an idle
    TLS client, one mid-command and one part way into a line.  It ends
    within its shutdown_timeout, the command's reply is delivered first, and
    nothing is counted against the caps afterwards."""
    settings = {**tls_settings(pki), "shutdown_timeout": 1.0}
    async with running_server(**settings) as server:
        port = server.address[1]
        raw = []
        for _ in range(3):
            raw.append(await RawTLS.connect(port, pki))
            raw[-1].hello()
        raw.append(await RawTLS.connect(port, pki))  # not even a ClientHello
        unfinished = await RawTLS.connect(port, pki)
        await unfinished.handshake(send_finished=False)
        raw.append(unfinished)
        idle = await tls_client(port, pki)
        busy = await tls_client(port, pki)
        typing = await tls_client(port, pki)
        try:
            assert await typing.ask("testsvc add 1 2") == "3\n" + SEP
            await typing.send(b"systemstatus ec")  # (not a first line: no one-shot)
            await busy.send("testsvc sleep 0.4")
            assert await until(lambda: len(server.connections) == 3 and any(
                c.pipeline.busy for c in server.connections))
            assert server.admission.count == 8
            began = time.monotonic()
            await server.shutdown()
            took = time.monotonic() - began
            assert server.admission.count == 0 and not server.connections
            assert await busy.reply() == b"slept 0.4\n" + SEP_LINE
            for client in (idle, busy, typing):
                assert await client.read_all() == b""
            for client in raw:
                await client.to_the_end()
                assert not client.received
        finally:
            for client in raw:
                client.close()
            for client in (idle, busy, typing):
                client.writer.transport.abort()
        assert took < 1.0, f"shutdown took {took:.2f} s"
    assert errors_logged() == []


@pytest.mark.parametrize("how", [
    "close_notify, TCP kept open",
    "FIN without close_notify",
])
async def test_shutdown_meets_a_client_ending_tls_mid_command(pki, errors_logged, caplog, how):
    """During shutdown, a client whose command is running ends its side: the
    connection closes when the command ends, not a shutdown_timeout later."""
    caplog.set_level(logging.WARNING, logger="smanager.server")
    settings = {**tls_settings(pki), "shutdown_timeout": 1.0}
    async with running_server(**settings) as server:
        client = await connected(server, pki)
        try:
            client.send("testsvc sleep 0.3")
            assert await until(lambda: server.connections and the_connection(server).pipeline.busy)
            began = time.monotonic()
            shutdown = asyncio.create_task(server.shutdown())
            assert await until(lambda: not the_connection(server).pipeline.accepting)
            if how.startswith("close_notify"):
                client.send_close_notify()
            else:
                client.half_close()
            await asyncio.wait_for(shutdown, TIMEOUT)
            took = time.monotonic() - began
            assert server.admission.count == 0
        finally:
            client.close()
        not_reading = [r.getMessage() for r in caplog.records if "not reading" in r.getMessage()]
        assert not not_reading and took < 0.9, f"shutdown took {took:.2f} s: {not_reading}"
    assert errors_logged() == []


# -- mutual TLS with users ---------------------------------------------------------------------------

async def test_a_certificate_for_no_user_only_gets_as_far_as_login(pki, tmp_path, errors_logged):
    """Mutual TLS and a users file naming alice: alice's certificate logs her in;
    mallory's (signed by the same CA, naming no user) may see help and log in,
    and its first other command is refused and ends the connection."""
    users_file = make_users(tmp_path / "users", alice="admin", carol="read")
    settings = {**tls_settings(pki, mutual=True), "users_file": users_file}
    async with running_server(**settings) as server:
        port = server.address[1]
        alice = await tls_client(port, pki, "alice")
        try:
            assert b"testsvc" in alice.banner
            assert await alice.ask("testsvc add 1 2") == "3\n" + SEP
            assert [c.peer.user for c in server.connections] == ["alice"]
        finally:
            await alice.close()
        for attempt in ("testsvc add 1 2", "kill", "restart testsvc", "x" * 2000):
            mallory = await tls_client(port, pki, "mallory")
            try:
                assert b"testsvc" not in mallory.banner
                assert await mallory.ask("help -s") == \
                    "TOP: \nSERVICES: \nCOMMANDS: help login\n" + SEP
                refused = await mallory.ask(attempt)
                assert refused.startswith("ERROR: "), refused
                assert await mallory.read_all() == b""  # and closed
            finally:
                await mallory.close()
        assert not server.manager.shutdown_requested.is_set()
        mallory = await tls_client(port, pki, "mallory")
        try:
            assert (await mallory.ask("login carol wrong")).startswith("ERROR: ")
            assert await mallory.read_all() == b""
        finally:
            await mallory.close()
        mallory = await tls_client(port, pki, "mallory")
        try:
            assert (await mallory.ask("login carol carol-pw")).startswith("logged in as carol")
            assert (await mallory.ask("testsvc add 1 2")).startswith(
                "ERROR: 'testsvc add' needs the operate level; carol has read")
        finally:
            await mallory.close()
        assert await until(lambda: counted_out(server))
    assert errors_logged() == []
