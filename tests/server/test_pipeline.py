"""The eager pipeline, over real sockets: a line with nothing ahead of it is
answered as it is framed (its first step run by the connection's worker), the
others queue behind it; replies stay strictly in order whatever each command
does (answer at once, wait, stream, fail, cancel, close); Ctrl-C, half-close and
one-shot clients meet it at every point.  The commands come from the rev service
(tests/fixtures/rev), beside testsvc.

Several tests here began as proofs of faults since fixed: a worker killed by a
cancellation not meant for it, a line lost to a Ctrl-C in the same read, a
telnet command acted on after an overflow.
"""

import asyncio

from helpers import (
    QUICK,
    SEP,
    LineClient,
    rev_of,
    rev_server,
    small_buffer_client,
    the_connection,
    until,
)

from smanager.server.worker import DRAIN

CTRL_C = bytes([255, 244])  # telnet IAC IP


async def test_pipelined_eager_and_waiting_lines_are_answered_strictly_in_order():
    lines = [
        ("rev say one", "one\n"),
        ("testsvc sleep 0.02", "slept 0.02\n"),       # async, waits
        ("rev say two", "two\n"),
        ("", None),                                    # blank: no reply
        ("testsvc block 0.01", "blocked 0.01\n"),     # a thread
        ("rev say three", "three\n"),
        ("testsvc count 2", "1\n2\n"),                 # a stream
        ("rev firstfail", "ERROR: rev firstfail failed: LookupError: at once\n"),
        ("'unbalanced", "ERROR: unbalanced quotes\n"),
        ("rev later four", "four\n"),
        ("rev yielding", "yielded\n"),
        ("rev done_future", "ab\n"),
        ("nosuch", "ERROR: unknown command 'nosuch' (try 'help')\n"),
        ("rev say five", "five\n"),
    ]
    expected = [text + SEP for _, text in lines if text is not None]
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        for round_ in range(3):  # the 2nd and 3rd rounds run from the memo
            await client.send("\n".join(line for line, _ in lines) + "\n")
            assert await client.replies(len(expected), QUICK) == expected, round_
        await client.close()


async def test_lines_arriving_while_a_job_waits_queue_behind_it():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP  # the worker exists now
        await client.send("rev slow 0.1")
        for i in range(20):  # each its own write, so mostly a read of one line: the fast path
            await client.send(f"rev say {i}")
        await client.send("rev later end")
        got = await client.replies(22, QUICK)
        assert got == ["slow done\n" + SEP] + [f"{i}\n" + SEP for i in range(20)] + ["end\n" + SEP]
        await client.close()


async def test_a_first_step_acts_as_the_connection_worker():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev whose", QUICK) == "same task\n" + SEP  # first line: advance()
        assert await client.ask("rev whose", QUICK) == "same task\n" + SEP  # a later line
        await client.send("rev whose\nrev whose\n")                   # pipelined
        assert await client.replies(2, QUICK) == ["same task\n" + SEP] * 2
        worker = the_connection(server).worker
        assert rev_of(server).seen == [worker] * 4
        await client.close()


async def test_task_groups_entered_in_the_first_step():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev group", QUICK) == "6\n" + SEP
        assert await client.ask("rev group", QUICK) == "6\n" + SEP
        assert (await client.ask("rev group fail=yes", QUICK)).startswith(
            "ERROR: rev group failed: ")
        assert await client.ask("rev group", QUICK) == "6\n" + SEP
        await client.close()


async def test_a_reply_that_closes_ends_the_pipeline():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        await client.send("rev mark\nrev quitlater\nrev mark\nrev mark\n")
        assert await client.read_all() == ("mark 1\n" + SEP + "leaving\n" + SEP).encode()
        await client.close()
        client = await LineClient.connect(server.address[1])
        await client.send("rev ping\nrev mark\nquit\nrev mark\n")  # eager close mid-pipeline
        assert await client.read_all() == ("pong\n" + SEP + "mark 2\n" + SEP + "bye\n" + SEP).encode()
        await client.close()
        assert rev_of(server).marks == 2


async def test_half_close_answers_every_line_then_closes():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev later a\nrev ping\ntestsvc count 2\nrev say last")
        client.writer.write_eof()
        assert await client.read_all() == ("a\n" + SEP + "pong\n" + SEP + "1\n2\n" + SEP
                                           + "last\n" + SEP).encode()
        await client.close()


async def test_a_one_shot_first_line_that_waits_is_answered_then_closed():
    async with rev_server(oneshot_delay=0.05) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev later one-shot")
        assert await client.read_all() == ("one-shot\n" + SEP).encode()
        await client.close()


async def test_a_first_line_cut_short_by_eof_runs_exactly_once():
    """The one-shot timer is armed by the unterminated first line; the EOF that follows
    must run the line once, not once per path."""
    async with rev_server(oneshot_delay=0.05) as server:
        for expected in ("mark 1", "mark 2"):
            client = await LineClient.connect(server.address[1])
            await client.send(b"rev mark")
            client.writer.write_eof()
            assert await client.read_all() == (expected + "\n" + SEP).encode()
            await client.close()
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev mark")  # the timer fires first; the EOF finds nothing left
        assert await client.read_all() == ("mark 3\n" + SEP).encode()
        await client.close()
        assert rev_of(server).marks == 3


async def test_ctrl_c_stops_a_handed_over_job_and_the_session_goes_on():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        await client.send(b"rev guarded\n")
        await asyncio.wait_for(rev_of(server).guarding.wait(), QUICK)  # it runs now
        await client.send(CTRL_C)
        assert await client.reply_text(QUICK) == "ERROR: interrupted\n" + SEP
        await asyncio.wait_for(rev_of(server).cleaned.wait(), QUICK)
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        assert the_connection(server).worker.cancelling() == 0
        await client.close()


async def test_a_deadline_that_has_passed_in_the_first_step_is_the_commands_timeout():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP  # the worker is idle now
        assert await client.ask("rev deadline 0", QUICK) == "deadline passed\n" + SEP
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        await client.close()


async def test_a_deadline_that_has_passed_on_the_first_line_is_fine():
    """(The same command as the first line works: the new worker steps before the timer.)"""
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev deadline 0", QUICK) == "deadline passed\n" + SEP
        assert await client.ask("rev deadline 0.01", QUICK) == "deadline passed\n" + SEP
        await client.close()


async def test_a_service_cancelling_its_own_task_does_not_hang_the_connection():
    async with rev_server() as server:
        parked = await LineClient.connect(server.address[1])
        other = await LineClient.connect(server.address[1])
        await parked.send("rev park")
        await asyncio.wait_for(rev_of(server).parked_event.wait(), QUICK)
        assert await other.ask("rev unpark", QUICK) == "unparked\n" + SEP
        assert (await parked.reply_text(QUICK)).startswith("ERROR: ")
        assert await parked.ask("rev ping", QUICK) == "pong\n" + SEP
        await parked.close()
        await other.close()


async def test_a_swallowed_ctrl_c_does_not_poison_the_connection():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        await client.send("rev stubborn")
        await asyncio.wait_for(rev_of(server).entered.wait(), QUICK)
        await client.send(CTRL_C)
        assert await client.reply_text(QUICK) in ("swallowed\n" + SEP, "ERROR: interrupted\n" + SEP)
        # The same line on a fresh connection: "ERROR: rev cancelled failed: CancelledError".
        assert await client.ask("rev cancelled", QUICK) == \
            "ERROR: rev cancelled failed: CancelledError\n" + SEP
        await client.close()


async def test_a_failed_task_group_does_not_poison_the_connection():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert (await client.ask("rev group fail=yes", QUICK)).startswith(
            "ERROR: rev group failed: ")
        assert await client.ask("rev cancelled", QUICK) == \
            "ERROR: rev cancelled failed: CancelledError\n" + SEP
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        await client.close()


async def test_a_commands_own_cancelled_error_is_its_failure():
    """(The control for the test above: without a swallowed Ctrl-C, it is a plain error.)"""
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        for _ in range(2):
            assert await client.ask("rev cancelled", QUICK) == (
                "ERROR: rev cancelled failed: CancelledError\n" + SEP)
        await client.close()


async def test_a_line_and_ctrl_c_in_one_read_are_answered_as_in_two_reads():
    async with rev_server() as server:
        client = await LineClient.connect(server.address[1])
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP  # idle, with a worker
        await client.send(b"rev guarded\n" + CTRL_C)
        assert await client.reply_text(QUICK) == "ERROR: interrupted\n" + SEP
        assert await client.ask("rev ping", QUICK) == "pong\n" + SEP
        await client.close()


async def test_an_oversized_line_then_ctrl_c_in_one_read_still_answers_and_explains():
    async with rev_server(max_line=80) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev say before\n" + b"x" * 100 + CTRL_C)
        assert await client.read_all() == (
            "before\n" + SEP + "ERROR: line longer than 80 bytes; closing the connection\n"
            + SEP).encode()
        await client.close()


async def test_an_oversized_line_behind_a_waiting_command_is_explained_after_its_reply():
    """The limit's error waits for the worker: the lines before it are answered first."""
    async with rev_server(max_line=80) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"rev later first\nrev say second\n" + b"x" * 100 + b"\n")
        assert await client.read_all() == (
            "first\n" + SEP + "second\n" + SEP
            + "ERROR: line longer than 80 bytes; closing the connection\n" + SEP).encode()
        await client.close()


async def test_an_oversized_lines_error_waits_like_any_reply_for_a_client_not_reading():
    """While the client is not reading, the error is not written and the connection not
    closed: a shutdown or a kill in that time ends it as it would with a reply waiting."""
    async with rev_server(max_line=80) as server:
        client, conn = await small_buffer_client(server)
        await client.send(b"rev blob 512\n" + b"x" * 100 + b"\n")
        await until(lambda: conn.pipeline.job is not None)
        assert conn.pipeline.job.work is DRAIN and not conn.transport.is_closing()
        got = await client.read_all()
        assert got.startswith(b"y" * 1023 + b"\n")
        assert got.endswith(b"\n" + SEP.encode() + b"ERROR: line longer than 80 bytes; "
                            b"closing the connection\n" + SEP.encode())
        await client.close()


async def test_a_reply_that_closes_is_the_last_word_whatever_follows_in_its_read():
    async with rev_server(max_line=80) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"quit\n" + b"x" * 100 + b"\n")
        assert await client.read_all() == ("bye\n" + SEP).encode()
        await client.close()


async def test_a_first_error_on_probation_is_the_last_word_whatever_follows(users_file):
    async with rev_server(users_file=str(users_file), login_max_line=100) as server:
        client = await LineClient.connect(server.address[1])
        await client.send(b"nosuch\n" + b"x" * 200 + b"\n")
        assert await client.read_all() == (
            "ERROR: unknown command 'nosuch' (try 'help')\n" + SEP).encode()
        await client.close()


