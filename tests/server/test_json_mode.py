"""JSON mode over a socket: `mode json` makes every reply one line of JSON, per
connection, pipelined switches apply in order, and the errors a connection can
meet (a line too long, not UTF-8, Ctrl-C mid-stream) are JSON too."""

import json

from helpers import SEP, SEP_LINE, LineClient, json_lines, running_server


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


async def test_a_line_that_is_not_utf8_gets_a_json_error(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send(b"mode json\nsystemstatus echo \xe9t\xe9\ntestsvc add 1\n")  # Latin-1
        assert await json_lines(client, 3) == [
            {"ok": True, "result": "json"},
            {"ok": False, "error": "line is not valid UTF-8"},
            {"ok": True, "result": 2}]
    finally:
        await client.close()


async def test_text_replies_read_with_a_mode_switch_take_the_new_mode_at_once(server):
    # One read, one pass: the lines after each switch render in its mode.
    client = await LineClient.connect(server.address[1])
    try:
        await client.send(b"mode json\nsystemstatus echo hi\nmode text\nsystemstatus echo hi\n")
        assert await json_lines(client, 2) == [{"ok": True, "result": "json"},
                                               {"ok": True, "result": "hi"}]
        assert await client.reply() == b"text\n" + SEP_LINE
        assert await client.reply() == b"hi\n" + SEP_LINE
    finally:
        await client.close()


async def test_mode_switches_pipelined_behind_a_slow_command_apply_in_order(server):
    client = await LineClient.connect(server.address[1])
    try:
        await client.send("testsvc sleep 0.01\nmode json\ntestsvc add 1\nmode text\n"
                          "mode json\ntestsvc count 1\nmode text\ntestsvc add 2")
        assert await client.reply() == b"slept 0.01\n" + SEP_LINE
        assert await json_lines(client, 2) == [{"ok": True, "result": "json"},
                                               {"ok": True, "result": 2}]
        assert await client.reply() == b"text\n" + SEP_LINE
        assert await json_lines(client, 3) == [{"ok": True, "result": "json"}, {"chunk": 1},
                                               {"ok": True, "result": None}]
        assert await client.reply() == b"text\n" + SEP_LINE
        assert await client.reply() == b"3\n" + SEP_LINE
    finally:
        await client.close()


async def test_a_one_shot_mode_json_like_echo_n_into_nc():
    async with running_server(oneshot_delay=0.05) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send(b"mode json")  # no newline, no half-close
            assert await client.read_all() == b'{"ok": true, "result": "json"}\n'
        finally:
            await client.close()


async def test_json_mode_with_telnet_editing_and_a_half_close(server):
    client = await LineClient.connect(server.address[1])
    try:
        # IAC EC erases the '1', IAC NOP is ignored; the last line has no newline.
        await client.send(b"mode json\r\ntestsvc add 1\xff\xf7 2\xff\xf1\r\ntestsvc data")
        client.writer.write_eof()
        assert [json.loads(row) for row in (await client.read_all()).splitlines()] == [
            {"ok": True, "result": "json"}, {"ok": True, "result": 3},
            {"ok": True, "result": {"b": [1, 2], "a": None}}]
    finally:
        await client.close()
