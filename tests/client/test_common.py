"""The clients' shared parts, pure: addresses and the request lines a client
refuses to send."""

import pytest

from smanager.client import AsyncClient, Client, parse_address
from smanager.client.common import proof_request, request_bytes


@pytest.mark.parametrize(("text", "address"), [
    ("web1", ("web1", 10000)),
    ("web1:10001", ("web1", 10001)),
    (" 10.0.0.7:22 ", ("10.0.0.7", 22)),
    ("[::1]:10002", ("::1", 10002)),
    ("[::1]", ("::1", 10000)),
    ("::1", ("::1", 10000)),
    ("/run/smanager.sock", ("/run/smanager.sock", None)),  # a path: a Unix socket
    ("./smanager.sock", ("./smanager.sock", None)),
    ("sockets/web:1", ("sockets/web:1", None)),
])
def test_addresses_parse(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "web1:", "web1:x", "web1:0", "web1:70000", "[::1", ":80",
                                  "http://web1:10000", "unix:///run/smanager.sock"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize("line", ["a\nb", "a\rb", "mode text", "MODE  Text", "mode"])
def test_lines_that_would_break_the_session_are_refused(line):
    with pytest.raises(ValueError):
        request_bytes(line)


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_a_client_refuses_tls_for_a_unix_socket_rather_than_drop_it(kind):
    with pytest.raises(ValueError, match="Unix socket.*TLS only over TCP"):
        kind("/run/smanager.sock", ssl=object())


class Login:
    user = "bob"

    def proof(self, challenge):
        return "AbcDef0123456789xyz="  # base64 that is also an identifier before its '='


def test_the_proof_is_sent_by_name_so_it_never_reads_as_name_equals_value():
    challenge = '{"ok": true, "result": "pbkdf2-sha256 10000 c2FsdA== nonce"}'
    assert proof_request(challenge, Login(), "web1:10000") == b"auth proof=AbcDef0123456789xyz=\n"
