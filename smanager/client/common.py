"""What both clients share, without I/O: the greeting, replies, errors, logging in.

A client session goes like this (the server side is in wire/protocol.py and wire/formats.py):

1. Read the banner, up to the separator; its ``-NAME`` lines are the services.
2. Send ``mode json``; the answer must be ``{"ok": true, "result": "json"}``.
3. Per request: send one line; read JSON lines, ``{"chunk": ...}`` ones
   first for a stream, until the one that has ``"ok"``.
4. Ctrl-C is the telnet "interrupt process" bytes; the server answers it by
   ending the running command with ``{"ok": false, "error": "interrupted"}``.
"""

import json
import os
import shlex
import socket
from dataclasses import dataclass, field
from ssl import SSLCertVerificationError, SSLContext, SSLError

from ..config import DEFAULT_HOST, DEFAULT_PORT
from ..wire.protocol import BANNER_RULE, SEPARATOR, to_text
from .addresses import is_socket_path, where_of

INTERRUPT = b"\xff\xf4"  # telnet IAC IP
MAX_LINE = 64 * 1024 * 1024  # a reply line longer than this is not from an smanager
BANNER_LINES = 100_000
DEFAULT_TIMEOUT = 30.0  # seconds to connect, and to wait for each line of a reply


class Endpoint:
    """What both clients keep of their server: where it is, how to reach it and
    log in, and the help index they cache."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 timeout: float = DEFAULT_TIMEOUT, ssl: SSLContext | None = None,
                 user: str | None = None, password: str | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.user, self.password = user, password  # logged in as on every (re)connection
        self.ssl = ssl  # an ssl.SSLContext (smanager.client.tls_context) for a TLS server
        self.unix = is_socket_path(host)  # a Unix socket's path (see addresses.py)
        if self.unix and ssl is not None:  # asked for, it must not be quietly dropped
            raise ValueError(f"{host} is a Unix socket, and a server speaks TLS only over TCP")
        self.where = where_of(host, port)
        self.banner_services = []
        self._index = {}  # help topic -> `help -s` fields, until refresh()

    def refresh(self) -> None:
        """Forget the cached help index (after a restart added or removed commands)."""
        self._index.clear()


class ClientError(Exception):
    """Anything that kept a request from getting its answer."""


class CannotConnect(ClientError, ConnectionError):
    """No connection to the server, or it is not an smanager."""


class ConnectionLost(CannotConnect):
    """The server closed the connection before the reply was complete."""


class LoginFailed(CannotConnect):
    """The server would not let this user in (wrong password, unknown user, back-off)."""


class TimedOut(ClientError, TimeoutError):
    """No answer in time; the connection is closed, as its state is unknown."""


class CommandFailed(ClientError):
    """The server answered with an error (raised by ``run``, never by ``call``)."""

    def __init__(self, reply):
        super().__init__(reply.error)
        self.reply = reply


@dataclass
class Reply:
    """A server's answer to one line.

    ``value`` keeps the command's structure (a dict stays a dict); ``text`` is
    what telnet would show, without the separator (the server's own text for
    a value it shows as a table, say).  A stream's chunks are in ``chunks``,
    and their texts in ``texts``, unless they were handed to ``on_chunk`` or
    ``on_text`` callbacks.
    """

    line: str
    ok: bool
    value: object = None
    error: str | None = None
    chunks: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    value_text: str | None = None  # the server's text for the value, when it sent one

    @property
    def text(self):
        shown = "".join(self.texts or [text_of(chunk) for chunk in self.chunks])
        if self.value_text is not None:
            return shown + self.value_text
        return shown + (text_of(self.value) if self.value is not None else "")

    def __str__(self):
        return self.text if self.ok else f"{self.text}ERROR: {self.error}\n"


def text_of(value):
    """A result as text mode shows it: JSON mode strips the final newline of text."""
    if isinstance(value, str):
        return value + "\n" if value else ""
    return to_text(value)


def hand_on(chunk, text, kept, on_chunk, on_text):
    """A stream's chunk (and what telnet shows for it) to the caller's callbacks,
    or, with neither, into KEPT: the (chunks, texts) of the Reply."""
    if on_chunk is None and on_text is None:
        kept[0].append(chunk)
        kept[1].append(text)
        return
    if on_chunk is not None:
        on_chunk(chunk)
    if on_text is not None:
        on_text(text)


def text_in(message, key):
    """What telnet shows for MESSAGE[KEY]: the text the server sent beside it, if
    it did, else the value as text."""
    return text_of(message["text"] if "text" in message else message.get(key))


def cannot_connect(where, exc):
    """The CannotConnect for an error from connecting (a refusal, a name that
    does not resolve, or one the IDNA codec cannot even encode)."""
    if isinstance(exc, UnicodeError):
        return CannotConnect(f"cannot connect to {where}: not a valid host name")
    return CannotConnect(f"cannot connect to {where}: {describe_os_error(exc)}")


def no_greeting(endpoint, exc):
    """What to raise when the banner did not come: ``exc`` is the TimedOut, or
    the ConnectionLost for a server that closed, met reading it; the new
    error says what that usually means."""
    where, secure = endpoint.where, endpoint.ssl is not None
    if isinstance(exc, ConnectionLost):
        if not secure:
            return exc
        return ConnectionLost(f"{where} closed the connection before its greeting (a TLS "
                              "server does that when it wants a client certificate it "
                              "can verify, or has too many connections)")
    hint = "" if secure or endpoint.unix else \
        " (a TLS server waits for the client to speak first: use TLS)"
    return TimedOut(f"{where} sent no greeting within {endpoint.timeout:g} s{hint}")


def too_long(where):
    return f"{where} sent a reply line over {MAX_LINE // 2**20} MiB, more than a client takes"


def stopped_by_later_request(line):
    return ClientError(f"{line!r} was stopped by a later request on the same connection")


def lost(where, exc):
    return ConnectionLost(f"{where}: {describe_os_error(exc)}")


def describe_os_error(exc):
    """'Connection refused', not asyncio's "Connect call failed ('10.0.0.1', 1)";
    for TLS, what OpenSSL says ('certificate verify failed: certificate has
    expired'), not the errno it carries (1, which strerror calls 'Operation
    not permitted')."""
    if isinstance(exc, SSLCertVerificationError):
        unknown_ca = " (a CA not trusted here)" if exc.verify_code in UNKNOWN_CA else ""
        return f"certificate verify failed: {exc.verify_message.rstrip('.')}{unknown_ca}"
    if isinstance(exc, SSLError):
        reason = exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
        hint = " (not a TLS server?)" if exc.reason == "WRONG_VERSION_NUMBER" else ""
        return f"TLS: {reason}{hint}"
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc)


# OpenSSL's X509_V_ERR_ codes for a certificate no trusted CA vouches for:
# UNABLE_TO_GET_ISSUER_CERT, DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN,
# UNABLE_TO_GET_ISSUER_CERT_LOCALLY.
UNKNOWN_CA = frozenset({2, 18, 19, 20})


def request_bytes(line):
    """One request line as bytes, or ValueError for a line no client should send:
    a blank one (the server answers nothing, so it would wait forever), one with
    a line break (two requests), or ``mode`` (it would take the connection out
    of the JSON the client reads), or text that is not UTF-8 (input read with
    surrogateescape: a raw 0xFF byte would be a telnet command to the server)."""
    if "\n" in line or "\r" in line:
        raise ValueError("a request is one line")
    try:
        words = shlex.split(line)  # as the server splits it
    except ValueError:
        words = line.split()
    if not words:
        raise ValueError("a request needs a command")
    if words[0].lower() == "mode" and [word.lower() for word in words] != ["mode", "json"]:
        raise ValueError("a client keeps its connection in JSON mode")
    try:
        return line.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        raise ValueError("a request must be valid UTF-8") from None


def join(*words):
    """Words as one request line, quoted so the server splits them back the same."""
    return shlex.join(str(word) for word in words)


class Greeting:
    """Reads the banner a line at a time (rule 1)."""

    def __init__(self, where):
        self.where = where
        self.lines = []

    def add(self, line):
        """Take one banner line; True once the banner is complete."""
        if not self.lines and line.startswith("ERROR: "):  # a server refusing us (a limit)
            raise CannotConnect(f"{self.where}: {line.removeprefix('ERROR: ')[:200]}")
        if not self.lines and line != BANNER_RULE:
            raise CannotConnect(f"{self.where} is not an smanager (it said {line[:60]!r})")
        if line == SEPARATOR:
            return True
        if len(self.lines) > BANNER_LINES:
            raise CannotConnect(f"{self.where} sent a banner that does not end")
        self.lines.append(line)
        return False

    @property
    def services(self):
        listed = self.lines[self.lines.index("Available Services:") + 1:] \
            if "Available Services:" in self.lines else []
        return [line[1:] for line in listed if line.startswith("-")]


def check_mode_switch(raw, where):
    """The answer to ``mode json`` (rule 2), as a raw line."""
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if answer != {"ok": True, "result": "json"}:
        raise CannotConnect(f"{where} does not speak JSON mode (an older SManager?)")


def decode(raw, where):
    """One JSON line from the server -> a dict (rule 3)."""
    try:
        message = json.loads(raw)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not ("ok" in message or "chunk" in message):
        raise ClientError(f"{where} sent something that is not a reply: {raw[:60]!r}")
    return message


def finish(line, message, chunks, texts=()):
    """The final message of a reply -> Reply."""
    texts = list(texts)
    if message.get("ok"):
        shown = text_in(message, "result") if "text" in message else None
        return Reply(line, True, message.get("result"), None, chunks, texts, shown)
    return Reply(line, False, None, str(message.get("error")), chunks, texts)


def terse_fields(text):
    """``help -s`` output -> {"TOP": [...], "SERVICES": [...], ...}."""
    fields = {}
    for row in text.splitlines():
        key, colon, names = row.partition(":")
        if colon:
            fields[key.strip()] = names.split()
    return fields


# -- logging in (see smanager/auth/scram.py): challenge, then auth --------------------

def challenge_request(login):
    """``login`` is a passwords.ClientLogin."""
    return request_bytes(f"challenge {shlex.quote(login.user)} {login.nonce}")


def _login_result(raw, login, where):
    """The text of a reply to ``challenge`` or ``auth``; LoginFailed for an error."""
    message = decode(raw, where)
    if not message.get("ok"):
        raise LoginFailed(f"{where}: cannot log in as {login.user}: {message.get('error')}")
    return str(message.get("result"))


def proof_request(raw, login, where):
    """The ``auth`` line answering the server's reply to ``challenge`` (slow: PBKDF2)."""
    try:
        proof = login.proof(_login_result(raw, login, where))
    except ValueError as exc:  # a challenge this client will not answer
        raise LoginFailed(f"{where}: cannot log in as {login.user}: {exc}") from None
    # Named: a proof is base64 and ends in '=', so one that happens to hold no
    # '+' or '/' (a fifth of them) reads as NAME=VALUE on its own.
    return request_bytes(f"auth proof={proof}")


def check_login(raw, login, where):
    """The server's reply to ``auth``: it must let us in, and prove it knew our verifier."""
    if not login.server_is_real(_login_result(raw, login, where)):
        raise LoginFailed(f"{where}: the server could not prove it knows {login.user}'s "
                          "password: not the real server?")
