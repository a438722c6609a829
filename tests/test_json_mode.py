"""JSON mode: `mode json` makes every reply one line of JSON, `mode text` goes back."""

import asyncio
import datetime
import json
import math

import pytest
from conftest import SEP_LINE, TIMEOUT, LineClient, ask_core, started_manager

from smanager.core.runner import Outcome
from smanager.wire.formats import Json, Text

SEP = SEP_LINE.decode()


# -- the format, without sockets -------------------------------------------------------

@pytest.mark.parametrize(("value", "line"), [
    ("up 3 days\n", '{"ok": true, "result": "up 3 days"}\n'),
    ("two\nlines", '{"ok": true, "result": "two\\nlines"}\n'),
    ("", '{"ok": true, "result": ""}\n'),
    (None, '{"ok": true, "result": null}\n'),
    (42, '{"ok": true, "result": 42}\n'),
    (1.5, '{"ok": true, "result": 1.5}\n'),
    (True, '{"ok": true, "result": true}\n'),
    ({"a": [1, 2], "b": None}, '{"ok": true, "result": {"a": [1, 2], "b": null}}\n'),
    ((1, "x"), '{"ok": true, "result": [1, "x"]}\n'),
    (b"raw\xffbytes", '{"ok": true, "result": "raw\ufffdbytes"}\n'),
    ("é ✓", '{"ok": true, "result": "é ✓"}\n'),
    ("-" * 50, '{"ok": true, "result": "' + "-" * 50 + '"}\n'),
])
def test_a_reply_is_one_json_line_that_keeps_its_structure(value, line):
    assert Json.reply(Outcome(value)).decode() == line


def test_values_json_cannot_hold_are_sent_as_their_text():
    assert json.loads(Json.reply(Outcome(math.nan)))["result"] == "nan"
    assert json.loads(Json.reply(Outcome({1, 2})))["result"] == "{1, 2}"
    when = datetime.date(2026, 11, 22)
    assert json.loads(Json.reply(Outcome({"when": when})))["result"] == {"when": "2026-11-22"}
    loop = []
    loop.append(loop)
    assert json.loads(Json.reply(Outcome(loop)))["result"] == "[[...]]"


def test_an_error_is_one_line_without_the_text_prefix():
    line = Json.reply(Outcome(error="kaput\nsecond line\x1b[31m"))
    assert line == b'{"ok": false, "error": "kaput second line?[31m"}\n'


def test_a_stream_is_chunk_lines_then_a_final_line():
    assert Json.chunk({"n": 1}) == b'{"chunk": {"n": 1}}\n'
    assert Json.chunk("tick\n") == b'{"chunk": "tick"}\n'
    assert Json.end() == b'{"ok": true, "result": null}\n'
    assert Json.end("interrupted") == b'{"ok": false, "error": "interrupted"}\n'


def test_text_mode_is_the_seed_format():
    assert Text.reply(Outcome("hi")) == b"hi\n" + SEP_LINE
    assert Text.chunk(3) == b"3\n"
    assert Text.end() == SEP_LINE


async def test_mode_is_a_command_with_help_and_a_clear_error():
    async with started_manager() as manager:
        assert await ask_core(manager, "mode JSON") == "json\n" + SEP
        assert await ask_core(manager, "mode xml") == \
            "ERROR: no mode 'xml'; use 'mode json' or 'mode text'\n" + SEP
        assert await ask_core(manager, "mode") == \
            "ERROR: missing MODE; usage: mode MODE\n" + SEP
        assert (await ask_core(manager, "help mode")).startswith(
            "mode MODE\n    switch this connection's replies between text and JSON\n")
        assert "mode" not in await ask_core(manager, "help -s")  # the seed's layout stays


# -- over a socket ----------------------------------------------------------------------

async def json_lines(client, count):
    return [json.loads(await asyncio.wait_for(client.reader.readline(), TIMEOUT))
            for _ in range(count)]


async def test_a_connection_switches_to_json_and_back(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send("mode json")
        assert await json_lines(client, 1) == [{"ok": True, "result": "json"}]
        await client.send("testsvc add 2 3\nnosuch\ntestsvc count 3\nmode text\nhostname")
        assert await json_lines(client, 6) == [
            {"ok": True, "result": 5},
            {"ok": False, "error": "unknown command 'nosuch' (try 'help')"},
            {"chunk": 1}, {"chunk": 2}, {"chunk": 3}, {"ok": True, "result": None}]
        assert await client.reply() == b"text\n" + SEP_LINE  # a switch applies to its own reply
        assert (await client.reply()).decode().endswith("\n" + SEP)
    finally:
        await client.close()


async def test_json_mode_is_per_connection(server):
    first = await LineClient.connect(server.address[1])
    second = await LineClient.connect(server.address[1])
    try:
        await first.send("mode json")
        await json_lines(first, 1)
        assert await second.ask("testsvc add 1 1") == "2\n" + SEP
    finally:
        await first.close()
        await second.close()


async def test_interrupting_a_stream_in_json_mode_ends_it_with_an_error_line(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send("mode json\ntestsvc forever")
        assert await json_lines(client, 2) == [{"ok": True, "result": "json"},
                                               {"chunk": "tick 1"}]
        await client.send(b"\xff\xf4")  # telnet IP: Ctrl-C
        for _ in range(1000):  # bounded: ticks come every 10 ms until the interrupt lands
            message = (await json_lines(client, 1))[0]
            if "ok" in message:
                break
            assert message["chunk"].startswith("tick ")
        assert message == {"ok": False, "error": "interrupted"}
        await client.send("testsvc add 1")
        assert await json_lines(client, 1) == [{"ok": True, "result": 2}]
    finally:
        await client.close()


async def test_an_oversized_line_in_json_mode_gets_a_json_error(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send("mode json")
        await json_lines(client, 1)
        await client.send(b"x" * 70000 + b"\n")
        assert await json_lines(client, 1) == [
            {"ok": False, "error": "line longer than 65536 bytes; closing the connection"}]
        assert await client.read_all() == b""
    finally:
        await client.close()
