"""Talking to a server, driven with strings and stream readers: no server."""

import asyncio

import pytest

from smanager.collector import Collector
from smanager.metrics import asking
from smanager.metrics.collecting import CollectError


def reader_of(data):
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_a_body_is_read_by_its_length_by_its_chunks_or_to_the_end():
    assert await asking.read_body(reader_of(b"abcdef"), {"content-length": "3"}) == b"abc"
    chunked = reader_of(b"4\r\nWiki\r\n6;ext=1\r\npedia!\r\n0\r\n\r\n")
    assert await asking.read_body(chunked, {"transfer-encoding": "chunked"}) == b"Wikipedia!"
    assert await asking.read_body(reader_of(b"to the end"), {}) == b"to the end"


@pytest.mark.parametrize("headers, data", [
    ({"content-length": str(asking.MAX_REPLY + 1)}, b""),
    ({"transfer-encoding": "chunked"}, b"%x\r\n" % (asking.MAX_REPLY + 1)),
    ({}, b"x" * (asking.MAX_REPLY + 1))])
async def test_a_body_longer_than_the_limit_is_refused_before_it_is_kept(headers, data):
    with pytest.raises(ValueError, match="longer than"):
        await asking.read_body(reader_of(data), headers)


async def test_a_body_cut_short_or_with_a_bad_length_is_an_error():
    with pytest.raises(asyncio.IncompleteReadError):
        await asking.read_body(reader_of(b"ab"), {"content-length": "3"})
    with pytest.raises(ValueError, match="not a number"):
        await asking.read_body(reader_of(b"ab"), {"content-length": "two"})
    with pytest.raises(ValueError):
        await asking.read_body(reader_of(b"zz\r\n"), {"transfer-encoding": "chunked"})


@pytest.mark.parametrize("failure, said", [
    (ConnectionRefusedError(111, "Connection refused"), "db:6379: connection refused"),
    (OSError(113, "No route to host"), "db:6379: No route to host"),
    (asyncio.IncompleteReadError(b"", 5), "db:6379: the connection closed in the middle"),
    (ValueError("no Redis INFO values in a reply\nstarting 'x'"), "db:6379: no Redis INFO values")])
async def test_a_failed_talk_is_one_line_naming_the_address(failure, said):
    with pytest.raises(CollectError) as raised:
        async with asking.talking("db:6379", 5):
            raise failure
    assert str(raised.value).startswith(said) and "\n" not in str(raised.value)


async def test_a_talk_past_its_deadline_says_how_long_it_waited():
    with pytest.raises(CollectError, match=r"^db:6379: no reply within 0\.01 s$"):
        async with asking.talking("db:6379", 0.01):
            await asyncio.Event().wait()


def test_the_deadline_of_a_talk_is_below_the_monitors_time_limit():
    collector = Collector()
    collector.timeout = 2.0
    assert asking.deadline(collector) == pytest.approx(1.8)
