"""A connection's reads: every connection reads into one shared buffer, and what
it keeps across reads must be its own copy."""

import asyncio
import socket
import types

from helpers import QUICK, SEP, LineClient, rev_server, until

from smanager.config import Config
from smanager.server.connection import Connection
from smanager.server.pipeline import Phase


def test_buffer_updated_hands_on_a_copy():
    shared = memoryview(bytearray(64))
    config = Config()
    server = types.SimpleNamespace(config=config, receive_buffer=shared,
                                   line_limits=(config.max_line, config.max_line))
    connections = [Connection(server), Connection(server)]
    seen = []
    for conn in connections:  # begun (not refused at the door), and past its first line
        conn.pipeline = types.SimpleNamespace(phase=Phase.OPEN, take=lambda lines, first: seen.extend(lines))
        conn.peer, conn.lines_seen = types.SimpleNamespace(on_probation=False), 1
    for conn, text in zip(connections, (b"first\n", b"other\n")):
        buffer = conn.get_buffer(-1)
        assert buffer.obj is shared.obj  # one buffer for every connection
        buffer[:len(text)] = text
        conn.buffer_updated(len(text))
    shared[:8] = b"XXXXXXXX"
    assert seen == [b"first", b"other"] and all(type(line) is bytes for line in seen)


async def test_lines_kept_across_reads_do_not_alias_the_shared_buffer():
    async with rev_server() as server:
        a = await LineClient.connect(server.address[1])
        b = await LineClient.connect(server.address[1])
        assert await a.ask("rev ping", QUICK) == await b.ask("rev ping", QUICK) == "pong\n" + SEP
        conn_a = next(c for c in server.connections
                      if c.peer.address.endswith(str(a.writer.get_extra_info("sockname")[1])))
        # A: a job that waits, lines queued behind it, and half a line in the framer.
        await a.send(b"rev slow 0.2\n" + b"".join(b"rev say a%d\n" % i for i in range(50))
                     + b"rev say half-")
        assert await until(lambda: conn_a.framer.has_partial, QUICK)
        for i in range(30):  # B's reads overwrite the shared buffer many times meanwhile
            await b.send(b"".join(b"rev say %s\n" % (b"B" * 200) for _ in range(20)))
            assert await b.replies(20, QUICK) == ["B" * 200 + "\n" + SEP] * 20
        await a.send(b"done\n")
        assert await a.replies(52, QUICK) == ["slow done\n" + SEP] \
            + [f"a{i}\n" + SEP for i in range(50)] + ["half-done\n" + SEP]
        await a.close()
        await b.close()


async def test_replies_and_telnet_answers_go_out_in_the_order_they_were_asked_for():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        do_echo, wont_echo = bytes([255, 253, 1]), bytes([255, 252, 1])
        await client.send(b"rev say first\n" + do_echo + b"rev say second\n")
        expected = ("first\n" + SEP).encode() + wont_echo + ("second\n" + SEP).encode()
        got = b""
        for _ in range(100):  # each read waits at most QUICK
            chunk = await asyncio.wait_for(client.reader.read(1024), QUICK)
            got += chunk
            if not chunk or len(got) >= len(expected):
                break
        assert got == expected
        await client.close()



async def test_accepted_tcp_connections_have_keepalive_from_the_listener():
    # A client that vanishes without a FIN must be found by TCP keepalive; the
    # listener carries the option so that accepting costs no system call for it.
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        (conn,) = server.connections
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        await client.close()


class StandInTransport:
    """Enough of a transport to begin a connection by hand; keeps what is written."""

    def __init__(self):
        self.out, self.closing = bytearray(), False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data):
        self.out += data

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


async def test_lines_read_before_a_connection_began_are_answered_in_order_once_it_does():
    # Under TLS, lines that come with the handshake's last bytes are read before
    # start_tls returns; begin() answers them as if just read, however many
    # buffers' worth, one split across two of them included.
    async with rev_server() as server:
        conn, transport = Connection(server), StandInTransport()
        assert server.admission.admit("127.0.0.1") is None
        conn.admitted = "127.0.0.1"  # counted in, its handshake under way
        lines = b"".join(b"rev say %05d\n" % n for n in range(20000))
        assert len(lines) > len(server.receive_buffer) and len(server.receive_buffer) % 14
        for start in range(0, len(lines), 65536):  # as asyncio reads them
            chunk = lines[start:start + 65536]
            conn.get_buffer(-1)[:len(chunk)] = chunk
            conn.buffer_updated(len(chunk))
        begun = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(
            lambda: begun.set_result(conn.begin(transport)))  # from a callback, as asyncio would
        await asyncio.wait_for(begun, QUICK)
        replies = bytes(transport.out).split(SEP.encode())[1:-1]  # the banner first
        assert replies == [b"%05d\n" % n for n in range(20000)]
        conn.connection_lost(None)
