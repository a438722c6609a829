"""The clients' shared parts, pure: addresses and the request lines a client
refuses to send."""

import pytest

from smanager.client import parse_address
from smanager.client.common import request_bytes


@pytest.mark.parametrize(("text", "address"), [
    ("web1", ("web1", 10000)),
    ("web1:10001", ("web1", 10001)),
    (" 10.0.0.7:22 ", ("10.0.0.7", 22)),
    ("[::1]:10002", ("::1", 10002)),
    ("[::1]", ("::1", 10000)),
    ("::1", ("::1", 10000)),
])
def test_addresses_parse(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "web1:", "web1:x", "web1:0", "web1:70000", "[::1", ":80"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize("line", ["a\nb", "a\rb", "mode text", "MODE  Text", "mode"])
def test_lines_that_would_break_the_session_are_refused(line):
    with pytest.raises(ValueError):
        request_bytes(line)
