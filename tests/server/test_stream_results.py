"""A stream may end with a value (smanager.Final): text mode shows it after the
chunks, JSON mode sends it as the final line's result, clients keep it."""

import asyncio
import json

from helpers import SEP, TIMEOUT, LineClient, running_server, with_fixtures

from smanager.client import AsyncClient


def tally_server():
    return running_server(services=with_fixtures("tally"))


async def test_text_mode_shows_the_chunks_then_the_final_value_then_the_separator():
    async with tally_server() as server:
        client = await LineClient.connect(server.address[1])
        reply = await client.ask("tally count 3")
        assert reply == '1\n2\n3\n{\n  "total": 6\n}\n' + SEP


async def test_json_mode_sends_the_final_value_as_the_result():
    async with tally_server() as server:
        client = await LineClient.connect(server.address[1])
        await client.send("mode json")
        await client.send("tally count 2")
        lines = [json.loads(await asyncio.wait_for(client.reader.readline(), TIMEOUT))
                 for _ in range(4)][1:]
        assert lines == [{"chunk": "1"}, {"chunk": "2"}, {"ok": True, "result": {"total": 3}}]


async def test_a_client_keeps_the_chunks_and_the_final_value():
    async with tally_server() as server:
        async with AsyncClient("127.0.0.1", server.address[1]) as client:
            reply = await client.call("tally count 2")
        assert reply.chunks == ["1", "2"] and reply.value == {"total": 3}
        assert reply.text.startswith("1\n2\n{")
