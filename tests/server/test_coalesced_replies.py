"""Replies ready by the end of a read go out together: one write for a read's worth
of pipelined lines, in order; a reply that must wait still goes out when ready; and the
bytes held for one write are bounded."""

import asyncio

from helpers import SEP, TIMEOUT, LineClient, rev_server, the_connection

from smanager.server.pipeline import COALESCE_BYTES


class CountingTransport:
    """The connection's transport, counting the pipeline's writes."""

    def __init__(self, real):
        self.real, self.writes = real, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def write(self, data):
        self.writes.append(len(data))
        self.real.write(data)


async def counted_client(server):
    client = await LineClient.connect(server.address[1])
    await client.ask("rev say warm")
    pipeline = the_connection(server).pipeline
    pipeline.transport = counting = CountingTransport(pipeline.transport)
    return client, counting


async def test_the_replies_of_one_read_go_out_in_one_write_in_order():
    async with rev_server() as server:
        client, counting = await counted_client(server)
        await client.send("".join(f"rev say {n}\n" for n in range(20)).encode())
        replies = await client.replies(20)
        assert replies == [f"{n}\n{SEP}" for n in range(20)]
        assert counting.writes == [sum(len(reply) for reply in replies)]
        await client.close()


async def test_a_reply_that_waits_goes_out_when_ready_after_those_before_it():
    async with rev_server() as server:
        client, counting = await counted_client(server)
        await client.send(b"rev say a\nrev say b\ntestsvc sleep 0.05\nrev say c\n")
        assert await client.replies(4) == [f"a\n{SEP}", f"b\n{SEP}", f"slept 0.05\n{SEP}",
                                           f"c\n{SEP}"]
        assert len(counting.writes) == 3  # a and b together; the sleep; c, answered after it
        await client.close()


async def test_the_lines_that_waited_behind_a_command_go_out_in_one_write_when_it_ends():
    async with rev_server() as server:
        client, counting = await counted_client(server)
        await client.send(b"rev say a\ntestsvc sleep 0.05\nrev say b\nrev say c\nrev say d\n")
        assert await client.replies(5) == [f"a\n{SEP}", f"slept 0.05\n{SEP}", f"b\n{SEP}",
                                           f"c\n{SEP}", f"d\n{SEP}"]
        assert counting.writes == [len(f"a\n{SEP}"), len(f"slept 0.05\n{SEP}"),
                                   3 * len(f"b\n{SEP}")]  # b, c and d: one pass, one write
        await client.close()


async def test_the_bytes_held_for_one_write_are_bounded():
    async with rev_server() as server:
        client, counting = await counted_client(server)
        word = "x" * 1000
        lines = 200  # about 200 KB of replies from one 200 KB read, or a few reads
        await client.send("".join(f"rev say {word}\n" for _ in range(lines)).encode())
        async with asyncio.timeout(TIMEOUT):
            replies = await client.replies(lines)
        assert replies == [f"{word}\n{SEP}"] * lines
        assert max(counting.writes) < COALESCE_BYTES + 1100  # one reply past the bound at most
        await client.close()


async def test_the_lines_of_one_read_are_answered_in_one_pass_as_the_worker():
    """No task switch and no turn of the event loop between the pipelined lines of one
    read: each is answered as the connection's worker, before any callback runs."""
    async with rev_server() as server:
        client, counting = await counted_client(server)
        pipeline = the_connection(server).pipeline
        loop, answer, seen, turns = asyncio.get_running_loop(), pipeline._answer, [], []

        def recording_answer(raw, peer):
            if not seen:  # runs at the loop's next turn: it must come after every line
                loop.call_soon(lambda: turns.append(len(seen)))
            seen.append(asyncio.current_task())
            return answer(raw, peer)

        pipeline._answer = recording_answer
        await client.send("".join(f"rev say {n}\n" for n in range(16)).encode())
        assert await client.replies(16) == [f"{n}\n{SEP}" for n in range(16)]
        assert counting.writes == [sum(len(f"{n}\n{SEP}") for n in range(16))]
        assert turns == [16] and set(seen) == {pipeline.worker}
        await client.close()


async def test_a_telnet_answer_follows_the_replies_to_the_lines_before_it_in_the_read():
    """Lines, a telnet option request and a line in one read: the refusal goes out after
    the first two replies and before the third, as it was read (DO ECHO -> WONT ECHO)."""
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        await client.ask("rev say warm")  # past the first line: the read is taken as a batch
        await client.send(b"rev say a\nrev say b\n\xff\xfd\x01rev say c\n")
        expected = f"a\n{SEP}b\n{SEP}".encode() + b"\xff\xfc\x01" + f"c\n{SEP}".encode()
        async with asyncio.timeout(TIMEOUT):
            got = await client.reader.readexactly(len(expected))
        assert got == expected
        await client.close()
