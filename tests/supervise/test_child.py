"""The process runner alone: real children, their exact environment, stdin, exit
statuses and signals, and the end of a run."""

import asyncio
import signal

import pytest

from smanager.supervise.child import SpawnError, spawn
from smanager.supervise.output import Output


async def run_to_end(argv, **options):
    output = Output("t", None)
    run = await spawn(output, argv=argv, env=options.pop("env", {"PATH": "/usr/bin:/bin"}),
                      **options)
    status = await asyncio.wait_for(run.ended(), 10)
    return status, [line.text for line in output.last(50, "both")]


async def test_the_environment_is_exactly_what_the_caller_gives():
    status, lines = await run_to_end(["sh", "-c", "env | sort"], env={"PATH": "/usr/bin:/bin",
                                                                       "ONLY": "this"})
    assert status == (0, None)
    assert lines == ["ONLY=this", "PATH=/usr/bin:/bin", "PWD=/"]


async def test_stdin_bytes_reach_the_program_and_then_end():
    status, lines = await run_to_end(["sh", "-c", "cat; echo done"], stdin=b"SECRET=s3\n")
    assert (status, lines) == ((0, None), ["SECRET=s3", "done"])


async def test_an_exit_status_and_a_killing_signal_are_told_apart():
    assert (await run_to_end(["sh", "-c", "exit 3"]))[0] == (3, None)
    assert (await run_to_end(["sh", "-c", "kill -TERM $$"]))[0] == (None, signal.SIGTERM)


async def test_a_program_that_cannot_start_is_one_line_naming_it():
    with pytest.raises(SpawnError, match=r"^/no/such: command not found"):
        await spawn(Output("t", None), argv=["/no/such"], env={})


async def test_a_child_that_exits_before_its_pipes_are_connected_is_still_seen_to_end():
    # The exit can be reported while spawn() still waits for the pipes: it must
    # not be lost (every one of these runs ends, none waits for its time limit).
    statuses = await asyncio.gather(*(run_to_end(["true"]) for _ in range(100)))
    assert {status for status, _ in statuses} == {(0, None)}
