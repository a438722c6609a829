"""Flow control: the server stops reading while it has enough queued or unsent,
resumes when it can, and keeps replies in order meanwhile; a client that never
reads cannot make it buffer without bound."""

from helpers import (
    QUICK,
    SEP,
    TIMEOUT,
    read_reply,
    rev_server,
    small_buffer_client,
    the_connection,
    until,
)

IAC, IP, DO = 255, 244, 253


async def test_replies_paused_by_a_slow_reader_keep_their_order():
    async with rev_server() as server:
        client, conn = await small_buffer_client(server)
        batch = "".join(f"rev blob 64\nrev say {i}\n" for i in range(40))  # 2.5 MiB of replies
        await client.send(batch)
        # The server sees the client lagging:
        assert await until(lambda: conn.pipeline.write_paused, QUICK)
        for i in range(40):
            assert await client.reply_text(TIMEOUT) == ("y" * 1023 + "\n") * 64 + SEP
            assert await client.reply_text(TIMEOUT) == f"{i}\n" + SEP
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        await client.close()


async def test_pipelining_past_the_queue_limit_pauses_and_resumes_reading(client):
    await client.send(b"".join(b"systemstatus echo %d\n" % i for i in range(1000)))
    for i in range(1000):
        assert await read_reply(client) == f"{i}\n" + SEP


async def test_ctrl_c_with_more_than_256_lines_queued_keeps_reading(server, client):
    flood = b"testsvc forever\n" + b"systemstatus echo x\n" * 300 + bytes([IAC, IP])
    await client.send(flood)
    conn = the_connection(server)
    assert await until(lambda: conn.lines_seen == 301, QUICK)
    assert conn.transport.is_reading()


async def test_a_telnet_option_flood_from_a_client_that_never_reads_is_bounded(server):
    client, conn = await small_buffer_client(server)  # it never reads
    client.writer.write(bytes([IAC, DO, 1]) * 350_000)  # 1 MiB in, 1 MiB of refusals owed
    # A server that stops reading never gets there: this gives up after QUICK.
    await until(lambda: conn.transport.get_write_buffer_size() > 512 * 1024, QUICK)
    assert conn.transport.get_write_buffer_size() <= 512 * 1024
    client.writer.transport.abort()
