"""A connection's reads: every connection reads into one shared buffer, and what
it keeps across reads must be its own copy."""

import asyncio
import socket
import types

from helpers import QUICK, SEP, LineClient, rev_server, until

from smanager.config import Config
from smanager.server.connection import Connection


def test_buffer_updated_hands_on_a_copy():
    shared = memoryview(bytearray(64))
    server = types.SimpleNamespace(config=Config(), receive_buffer=shared)
    connections = [Connection(server), Connection(server)]
    seen = []
    for conn in connections:
        conn.pipeline = object()  # begun (not refused at the door)
        conn.data_received = seen.append  # what buffer_updated passes on
    for conn, text in zip(connections, (b"first", b"other")):
        buffer = conn.get_buffer(-1)
        assert buffer.obj is shared.obj  # one buffer for every connection
        buffer[:len(text)] = text
        conn.buffer_updated(len(text))
    shared[:8] = b"XXXXXXXX"
    assert seen == [b"first", b"other"] and all(type(data) is bytes for data in seen)


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
