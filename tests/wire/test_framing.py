"""Framing: bytes in, lines and telnet events out (no sockets).

The second part holds the framer's fast path (plain lines, no telnet state) to
exactly what its general path gives, with a seeded differential test.
"""

import random
import re

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


# -- the fast path gives what the general path gives -----------------------------------------

ALPHABET = [b"a", b"b", b" ", b"=", b"\r", b"\n", b"\x00", b"\xff", b"\xfd", b"\xfb", b"\xfa",
            b"\xf0", b"\xf4", b"\xf7", b"\xf8", b"\x06", b"\x01", b"\xc3"]
WEIGHTS = [10, 5, 4, 1, 3, 4, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
CTRL_C = bytes([IAC, 244])


def events_of(chunks, max_line, general=False, counter=None):
    """Everything a fresh framer emits for these chunks, then end of input, and its state.
    With ``general``, every feed is forced down the general path; ``counter`` (a list)
    gets one item for each feed that took the fast path."""
    framer = LineFramer(max_line)
    calls = []
    for name in ("_add_text", "_feed_telnet"):  # count the general path's calls
        method = getattr(framer, name)
        setattr(framer, name, lambda *args, _m=method: (calls.append(1), _m(*args))[1])
    events = []
    for chunk in chunks:
        if general:
            framer._stateful = True  # the fast path's guard; the general path recomputes it
        before, stopped = len(calls), framer.overflowed
        found = framer.feed(chunk)
        if framer.only_lines:  # what a caller may take as a batch of lines
            assert all(type(event) is bytes for event in found), (chunk, found)
        events += found
        if counter is not None and len(calls) == before and not stopped:
            counter.append(chunk)
    events += framer.eof()
    state = (bytes(framer._partial), framer.overflowed, framer.telnet_seen)
    return [(type(e).__name__, bytes(e) if isinstance(e, bytes) else None) for e in events], state


def random_input(rng):
    if rng.random() < 0.5:  # plain lines: what the fast path is for
        lines = [bytes(rng.choices(b"ab =\t\xc3\x28x\r", k=rng.randint(0, 12)))
                 + rng.choice([b"\n", b"\r\n"]) for _ in range(rng.randint(1, 3))]
        return b"".join(lines)
    return b"".join(rng.choices(ALPHABET, WEIGHTS, k=rng.randint(1, 30)))


def random_chunks(rng, data):
    if rng.random() < 0.3:  # a read per line, as an interactive client sends them
        return re.findall(rb"[^\n]*\n|[^\n]+$", data)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 4))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def test_the_fast_path_gives_exactly_what_the_general_path_gives():
    """A seeded differential test: the same chunks through the framer as it is, and
    through the general path alone, must give the same events and leave the same state."""
    rng = random.Random(20240601)
    fast = []
    for _ in range(20000):
        data = random_input(rng)
        max_line = rng.choice([1, 2, 3, 5, 8, 13, 80, 65536])
        chunks = random_chunks(rng, data)
        assert events_of(chunks, max_line, counter=fast) == \
            events_of(chunks, max_line, general=True), (data, chunks, max_line)
    assert len(fast) > 4000  # the fast path really was exercised


def test_the_fast_path_at_the_line_limit():
    for limit in (1, 2, 80):
        for body in (b"x" * (limit - 1), b"x" * limit, b"x" * (limit + 1)):
            for end in (b"\n", b"\r\n", b"\r\r\n"):
                data = body + end
                assert events_of([data], limit) == events_of([data], limit, general=True)


def test_without_overflow_the_chunking_changes_nothing():
    """Whole, random chunks and single bytes give the same events, when no line reaches the
    limit (a CR left before a CR NUL aside)."""
    rng = random.Random(7)
    for _ in range(5000):
        data = random_input(rng)
        limit = len(data) + 2

        def norm(result):
            events, state = result
            return [(kind, value.rstrip(b"\r") if kind == "bytes" else value)
                    for kind, value in events], state

        whole = norm(events_of([data], limit))
        assert norm(events_of(random_chunks(rng, data), limit)) == whole, data
        assert norm(events_of([data[i:i + 1] for i in range(len(data))], limit)) == whole, data


def test_a_line_at_the_limit_ending_crlf_does_not_depend_on_where_a_read_ends():
    line = b"y" * 80
    assert events_of([line + b"\r\n"], 80)[0] == [("bytes", line)]
    assert events_of([line + b"\r", b"\n"], 80)[0] == [("bytes", line)]


@pytest.mark.parametrize("tail", [CTRL_C, bytes([IAC, DO, 1])])
def test_nothing_follows_an_overflow_in_the_same_read(tail):
    assert LineFramer(80).feed(b"x" * 100 + tail) == [OVERFLOW]
