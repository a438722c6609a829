"""Framing: bytes in, lines and telnet events out (no sockets)."""

import pytest

from smanager.wire.framing import (
    DO,
    DONT,
    IAC,
    INTERRUPT,
    OVERFLOW,
    SB,
    SE,
    WILL,
    WONT,
    LineFramer,
    TelnetAnswer,
)


def feed_all(chunks, max_line=100):
    framer = LineFramer(max_line)
    events = []
    for chunk in chunks:
        events += framer.feed(chunk)
    return events, framer


@pytest.mark.parametrize("chunks, lines", [
    ([b"help\n"], [b"help"]),
    ([b"help\r\n"], [b"help"]),
    ([b"a\nb\r\nc\n"], [b"a", b"b", b"c"]),
    ([b"he", b"lp", b"\n"], [b"help"]),
    ([b"help\r", b"\n"], [b"help"]),
    ([b"help\r\x00"], [b"help"]),
    ([b"help\r", b"\x00next\n"], [b"help", b"next"]),
    ([b"\n\n"], [b"", b""]),
    ([b"a\rb\n"], [b"a\rb"]),  # a lone CR inside a line is just a byte
    ([b"no newline"], []),
])
def test_lines(chunks, lines):
    events, _ = feed_all(chunks)
    assert events == lines


def test_partial_line_is_kept_until_eof():
    framer = LineFramer()
    assert framer.feed(b"systemstatus up") == []
    assert framer.partial == b"systemstatus up"
    assert framer.feed(b"time") == []
    assert framer.eof() == [b"systemstatus uptime"]
    assert framer.eof() == []


def test_eof_drops_trailing_cr():
    framer = LineFramer()
    framer.feed(b"help\r")
    assert framer.eof() == [b"help"]


def test_take_partial():
    framer = LineFramer()
    framer.feed(b"done\nhalf")
    assert framer.take_partial() == b"half"
    assert framer.partial == b""


@pytest.mark.parametrize("verb, option, answer", [
    (DO, 1, bytes([IAC, WONT, 1])),  # DO ECHO -> WONT ECHO
    (DO, 3, bytes([IAC, WONT, 3])),
    (WILL, 1, bytes([IAC, DONT, 1])),  # WILL ECHO -> DONT ECHO
    (WILL, 24, bytes([IAC, DONT, 24])),
    (DO, 6, bytes([IAC, WILL, 6])),  # DO TIMING-MARK is answered
])
def test_option_requests_are_refused_or_marked(verb, option, answer):
    events, _ = feed_all([bytes([IAC, verb, option]) + b"help\n"])
    assert events == [answer, b"help"]
    assert isinstance(events[0], TelnetAnswer)


@pytest.mark.parametrize("verb", [WONT, DONT])
def test_refusals_need_no_answer(verb):
    events, _ = feed_all([bytes([IAC, verb, 1]) + b"x\n"])
    assert events == [b"x"]


def test_iac_iac_is_a_literal_ff():
    events, _ = feed_all([b"a" + bytes([IAC, IAC]) + b"b\n"])
    assert events == [b"a\xffb"]


def test_telnet_command_split_across_feeds():
    events, _ = feed_all([b"ab" + bytes([IAC]), bytes([DO]), bytes([1]) + b"c\n"])
    assert events == [bytes([IAC, WONT, 1]), b"abc"]


def test_subnegotiation_is_skipped_even_when_split():
    sub = bytes([IAC, SB, 24, 0]) + b"xterm" + bytes([IAC, SE])
    events, _ = feed_all([b"he" + sub[:4], sub[4:9], sub[9:] + b"lp\n"])
    assert events == [b"help"]


def test_endless_subnegotiation_overflows():
    events, framer = feed_all([bytes([IAC, SB, 24]) + b"x" * 200], max_line=100)
    assert events == [OVERFLOW]
    assert framer.overflowed


def test_interrupt_discards_the_partial_line_only():
    ctrl_c = bytes([IAC, 244, IAC, DO, 6])  # what telnet sends for Ctrl-C
    events, framer = feed_all([b"done\nhalf typed" + ctrl_c + b"next\n"])
    assert events == [b"done", INTERRUPT, bytes([IAC, WILL, 6]), b"next"]


def test_erase_line_and_erase_char():
    events, _ = feed_all([b"wrong" + bytes([IAC, 248]) + b"helpp" + bytes([IAC, 247]) + b"\n"])
    assert events == [b"help"]


@pytest.mark.parametrize("chunks", [
    [b"x" * 101 + b"\n"],  # a whole line over the limit
    [b"x" * 60, b"x" * 60],  # a partial line that grows over it
])
def test_overflow_stops_the_framer_for_good(chunks):
    events, framer = feed_all(chunks + [b"kill\n"], max_line=100)
    assert events == [OVERFLOW]
    assert framer.feed(b"kill\n") == [] and framer.eof() == []


def test_lines_before_an_overflow_still_count():
    events, _ = feed_all([b"help\n" + b"x" * 101 + b"\nkill\n"], max_line=100)
    assert events == [b"help", OVERFLOW]


def test_a_line_exactly_at_the_limit_is_fine():
    events, _ = feed_all([b"x" * 100 + b"\r\n"], max_line=100)
    assert events == [b"x" * 100]


def test_many_small_feeds_of_a_long_line_are_linear():
    framer = LineFramer(max_line=1 << 20)
    for _ in range(100_000):  # quadratic buffering would take minutes here
        assert framer.feed(b"x") == []
    assert framer.feed(b"\n") == [b"x" * 100_000]


def test_each_option_is_refused_once_but_every_timing_mark_is_answered():
    events, framer = feed_all([bytes([IAC, DO, 1]) * 3 + bytes([IAC, DO, 6]) * 2 + b"x\n"])
    assert events == [bytes([IAC, WONT, 1]), bytes([IAC, WILL, 6]), bytes([IAC, WILL, 6]), b"x"]
    assert framer.telnet_seen


@pytest.mark.parametrize("chunk", [1_000_000, 65_536, 40_000, 7])
def test_a_long_subnegotiation_counts_against_the_line_limit_however_it_is_split(chunk):
    data = b"\xff\xfa\x18" + b"k" * 102_400 + b"\xff\xf0kill\n"
    chunks = [data[start:start + chunk] for start in range(0, len(data), chunk)]
    assert feed_all(chunks, 65_536)[0] == [OVERFLOW]
