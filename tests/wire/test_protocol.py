"""The text side of the wire: parsing lines and rendering replies (no sockets)."""

import pytest
from helpers import SEP

from smanager.wire import errors, protocol
from smanager.wire.protocol import SEPARATOR, ParseError, Request, parse_line


@pytest.mark.parametrize("raw, words", [
    (b"help", ("help",)),
    (b"  help   -s  ", ("help", "-s")),
    (b"systemstatus echo 'two  spaces' x", ("systemstatus", "echo", "two  spaces", "x")),
    (b'echo "a b" c\\ d', ("echo", "a b", "c d")),
    (b"echo a=b", ("echo", "a=b")),
    (b"echo #not-a-comment", ("echo", "#not-a-comment")),
    ("systemstatus echo caf\u00e9".encode(), ("systemstatus", "echo", "caf\u00e9")),
])
def test_parse_words(raw, words):
    assert parse_line(raw) == Request(words, raw.decode().strip())


@pytest.mark.parametrize("raw", [b"", b"   ", b"\t", b"\x0b\x0c"])
def test_blank_lines_are_nothing(raw):
    assert parse_line(raw) is None


@pytest.mark.parametrize("raw, message", [
    (b"echo \xff\xfe", "line is not valid UTF-8"),
    (b"echo 'unbalanced", "unbalanced quotes"),
    (b'echo "x', "unbalanced quotes"),
])
def test_parse_errors(raw, message):
    with pytest.raises(ParseError, match=message):
        parse_line(raw)


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1", b"POST /x HTTP/1.0", b"PUT /", b"OPTIONS * HTTP/1.1",
    b"Host: localhost:10000", b"HOST:x", b"BREW /pot HTTP/1.1", b"GET http://x/ HTTP/1.1",
    b"POST /kill", b"PROPFIND /",
])
def test_http_is_recognised(raw):
    assert protocol.looks_like_http(raw)
    assert raw[:1] in protocol.HTTP_FIRST_BYTES  # so the connection's cheap look asks


def test_no_line_starting_outside_http_first_bytes_looks_like_http():
    """The connection asks looks_like_http() only of a first line starting with
    one of these: every other byte, before any ending the pattern knows, is a no."""
    endings = [b"ET / HTTP/1.1", b"OST: x", b"ost: x", b" / x", b" x HTTP/1", b"x", b""]
    for first in range(256):
        for rest in endings:
            line = bytes([first]) + rest
            if protocol.looks_like_http(line):
                assert line[:1] in protocol.HTTP_FIRST_BYTES, line
    assert protocol.looks_like_http(b" \t GET / HTTP/1.1")  # white space first: it is asked


@pytest.mark.parametrize("raw", [b"help", b"systemstatus uptime", b"get_heartbeat", b"hostname",
                                 b"get x", b"delete old-backups", b"DELETE old", b"options list",
                                 b"hosts list"])
def test_commands_are_not_http(raw):
    assert not protocol.looks_like_http(raw)


@pytest.mark.parametrize("value, text", [
    ("hi", "hi\n"),
    ("hi\n", "hi\n"),
    ("hi\n\n\n", "hi\n"),
    ("", ""),
    (None, ""),
    (42, "42\n"),
    (1.5, "1.5\n"),
    (True, "true\n"),
    (b"bytes\xff", "bytes\ufffd\n"),
    ({(1, 2): "tuple keys"}, "{(1, 2): 'tuple keys'}\n"),
    ({"a": [1, 2]}, '{\n  "a": [\n    1,\n    2\n  ]\n}\n'),
    (["x"], '[\n  "x"\n]\n'),
])
def test_to_text(value, text):
    assert protocol.to_text(value) == text


def test_render_text_adds_one_newline_and_the_separator():
    assert protocol.render_text("hi") == ("hi\n" + SEP).encode()
    assert protocol.render_text("hi\n") == ("hi\n" + SEP).encode()
    assert protocol.render_text("") == SEP.encode()


def test_preformatted_text_keeps_its_blank_line():
    assert protocol.to_text(protocol.Preformatted("a\n\n")) == "a\n\n"


def test_render_error_is_one_line():
    wire = protocol.render_error("bad\r\nthing  here\x1b[2J\n")
    assert wire == ("ERROR: bad thing  here?[2J\n" + SEP).encode()


def test_render_error_is_bounded():
    line = protocol.render_error("x" * 10_000).decode().split("\n")[0]
    assert len(line) == len("ERROR: ") + errors.LINE_LIMIT
    assert line.endswith("...")


@pytest.mark.parametrize("body", [
    SEPARATOR,
    SEPARATOR + "\r",
    "  " + SEPARATOR + "  ",
    "-" * 51,
    "-" * 80,
    "text\n" + SEPARATOR + "\nmore",
])
def test_no_body_line_can_look_like_the_separator(body):
    wire = protocol.render_text(body).decode()
    lines = wire.split("\n")
    assert lines[-2] == SEPARATOR and lines[-1] == ""
    for line in lines[:-2]:
        assert line.strip() != SEPARATOR
    # ... and the client-side rule gives the body back exactly.
    assert protocol.unescape_body(wire[: -len(SEP)]) == body.rstrip("\n") + "\n"


@pytest.mark.parametrize("body", ["-" * 49, "--- x ---", "a-b", "=" * 50])
def test_other_lines_are_untouched(body):
    assert protocol.render_text(body) == (body + "\n" + SEP).encode()


def test_banner_matches_the_seed():
    assert protocol.render_banner(["systemstatus"]).decode() == (
        "*" * 50 + "\nService Manager\n" + "*" * 50 + "\nAvailable Services:\n"
        "-systemstatus\n" + SEP)


@pytest.mark.parametrize("text, shown", [
    ("foo", "'foo'"),
    ("a\r\nb", "'ab'"),
    ("bell\x07", "'bell?'"),
    ("x" * 100, "'" + "x" * 57 + "...'"),
])
def test_echoed_input_is_safe(text, shown):
    assert errors.shown(text) == shown
