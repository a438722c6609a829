"""The server's spare task (core/eager.py, Spare), over real sockets: a client
whose commands finish at once costs no task of its own, and nothing one
connection's first steps leave on the spare reaches another connection: a
reference, a weak reference, a done callback, a cancellation (before or after
the spare started), a context variable."""

import asyncio
import socket

import pytest
from helpers import QUICK, SEP, LineClient, rev_of, rev_server, the_connection, until

from smanager.config import Config
from smanager.server.server import Server


async def test_a_client_whose_commands_finish_at_once_costs_no_task_of_its_own():
    """Two netcat-like clients: their first steps run as the server's one
    spare task, which stays spare: no task was made, started or ended for them."""
    async with rev_server() as server:
        spares = []
        for _ in range(2):
            client = await LineClient.connect(server.address[1])
            assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
            assert the_connection(server).worker is None
            spares.append(server.spare.task)
            await client.close()
            assert await until(lambda: not server.connections, QUICK)
        assert spares[0] is spares[1] is not None and not spares[0].done()


async def test_a_first_step_that_keeps_its_task_makes_it_the_connections_own():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev keeptask", QUICK) == "kept\n" + SEP
        kept = rev_of(server).kept
        assert the_connection(server).worker is kept and server.spare.task is not kept
        assert await client.ask("rev whose", QUICK) == "same task\n" + SEP
        assert rev_of(server).seen == [kept]  # later lines run as it too
        await client.close()


async def test_a_first_step_that_waits_keeps_its_deadline_on_a_fresh_connection():
    """asyncio.timeout() entered in a first step run as the spare: the spare
    becomes the connection's task, and the deadline reaches the command."""
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev deadline 0.01", QUICK) == "deadline passed\n" + SEP
        assert the_connection(server).worker is not None
        other = await LineClient.connect(server.address[1])
        assert await other.ask("rev ping", QUICK) == "pong\n" + SEP  # a new spare serves it
        await client.close()
        await other.close()


async def test_a_cancellation_asked_for_in_a_first_step_is_not_handed_to_the_next_connection():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        spare = server.spare.task
        assert await client.ask("rev selfcancel", QUICK) == "asked\n" + SEP
        assert server.spare.task is not spare  # that connection took it, cancellation and all
        other = await LineClient.connect(server.address[1])
        assert await other.ask("rev whose", QUICK) == "same task\n" + SEP
        assert rev_of(server).seen[-1] is not spare
        await client.close()
        await other.close()


async def test_a_cancellation_asked_of_a_spare_not_yet_started_ends_that_connection():
    """A spare made in the same turn has not run its first step: a cancel() then
    ends it before anything of it runs.  The connection closes, as one whose
    worker is cancelled while idle does, instead of keeping a dead worker."""
    async with rev_server() as server:
        keeper = await LineClient.connect(server.address[1])
        assert await keeper.ask("rev keeptask", QUICK) == "kept\n" + SEP  # adopts the spare
        client = await LineClient.connect(server.address[1])  # a fresh spare for it
        assert await client.ask("rev selfcancel", QUICK) == "asked\n" + SEP
        await client.send("rev later ok\n")
        assert await asyncio.wait_for(client.reader.read(4096), QUICK) == b""  # closed
        assert await keeper.ask("rev ping", QUICK) == "pong\n" + SEP
        await keeper.close()
        await client.close()


async def after_a_one_liner(server, line, reply, question):
    """A client sends LINE (answered REPLY) and leaves; what a new one is told to QUESTION."""
    first = await LineClient.connect(server.address[1])
    assert await first.ask(line, QUICK) == reply + "\n" + SEP
    await first.close()
    second = await LineClient.connect(server.address[1])
    try:
        return await second.ask(question, QUICK)
    finally:
        await second.close()


async def test_state_kept_weakly_by_task_does_not_reach_the_next_connection():
    async with rev_server() as server:
        told = await after_a_one_liner(server, "rev tag alice", "tagged", "rev tagged")
        assert told == "nobody\n" + SEP


async def test_a_done_callback_fires_when_its_own_connection_ends():
    async with rev_server() as server:
        alice = await LineClient.connect(server.address[1])
        assert await alice.ask("rev ondone alice", QUICK) == "noted\n" + SEP
        await alice.close()
        assert await until(lambda: rev_of(server).ended == ["alice"], QUICK)
        bob = await LineClient.connect(server.address[1])
        assert await bob.ask("rev later", QUICK) == "later\n" + SEP
        await bob.close()
        assert await until(lambda: not server.connections, QUICK)
        assert rev_of(server).ended == ["alice"]


async def test_a_context_variable_set_by_one_connection_is_not_another_ones():
    """The next spare may be made in the middle of one connection's pass: it
    still starts from the server's context, not that connection's."""
    async with rev_server() as server:
        bob = await LineClient.connect(server.address[1])
        await bob.send(b"rev setvar bob-secret\nrev say last")  # no final newline
        assert await bob.reply_text(QUICK) == "set\n" + SEP
        keeper = await LineClient.connect(server.address[1])
        assert await keeper.ask("rev keeptask", QUICK) == "kept\n" + SEP  # adopts the spare
        bob.writer.write_eof()  # bob's last pass makes the next spare
        assert await bob.reply_text(QUICK) == "last\n" + SEP
        carol = await LineClient.connect(server.address[1])
        assert await carol.ask("rev getvar", QUICK) == "unset\n" + SEP  # it waits: adopted
        for client in (bob, keeper, carol):
            await client.close()


async def test_a_context_variable_set_in_a_first_step_is_there_after_its_waits():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev setwait mine", QUICK) == "mine\n" + SEP
        assert await client.ask("rev getnow", QUICK) == "mine\n" + SEP  # the next line too
        await client.send("rev later x\nrev getnow\n")  # answered by the worker, behind a wait
        assert await client.replies(2, QUICK) == ["x\n" + SEP, "mine\n" + SEP]
        other = await LineClient.connect(server.address[1])
        assert await other.ask("rev getnow", QUICK) == "unset\n" + SEP
        await client.close()
        await other.close()


async def test_a_variable_set_by_a_one_liner_does_not_reach_the_next_connection():
    async with rev_server() as server:
        told = await after_a_one_liner(server, "rev setvar mine", "set", "rev getnow")
        assert told == "unset\n" + SEP


async def test_a_task_name_set_by_one_connection_is_not_the_next_ones():
    async with rev_server() as server:
        told = await after_a_one_liner(server, "rev name alice-session", "named", "rev taskname")
        assert told != "alice-session\n" + SEP


async def test_a_server_that_fails_to_start_leaves_no_spare_task_behind():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Server(Config(host="127.0.0.1", port=taken.getsockname()[1]))
        with pytest.raises(OSError):
            await server.start()
    assert server.spare is None or server.spare.task is None
