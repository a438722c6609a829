"""The wire grammar, text side: a line in, a reply out.

1. A line is UTF-8.  Surrounding whitespace is ignored and a blank line gets no
   reply.  Words are split like a shell: quotes keep spaces, a backslash escapes.
2. On connect the server sends the banner: a rule of 50 ``*``, ``Service
   Manager``, the rule again, ``Available Services:``, one ``-<name>`` per
   service, then the separator.
3. Every reply is the command's text, ending in one newline (nothing for an
   empty reply), then the separator: a line of exactly 50 ``-``.
4. No line of a reply body can look like the separator.  A body line made only
   of 50 or more dashes (whitespace aside) gets one more dash in front; a client
   that wants the original removes one dash from such lines of 51 or more.
5. An error reply is one line, ``ERROR: <message>``, then the separator.  Input
   echoed in an error is shortened and stripped of control characters.
6. A first line that looks like HTTP closes the connection unanswered: a web
   page can make a browser send a POST to a port on localhost.
"""

import json
import re
import shlex
from typing import NamedTuple

from . import errors

SEPARATOR = "-" * 50
BANNER_RULE = "*" * 50
BANNER_TITLE = "Service Manager"
_SEPARATOR_BYTES = (SEPARATOR + "\n").encode()
_NEWLINE_SEPARATOR = "\n" + SEPARATOR + "\n"
_SHELL_SPECIALS = frozenset("'\"\\")
# A request line (an upper-case method, then a path, "*" or a URL; or anything
# ending in an HTTP version), or a Host header.  Case matters for the method,
# so a command an admin types ("get x", "delete old") is never mistaken for it.
_HTTP_REQUEST = re.compile(rb"^(?:[A-Z]+ (?:/|\*|https?://)|[A-Z]+ \S+ HTTP/\d|[Hh][Oo][Ss][Tt]:)")


class Request(NamedTuple):
    """One parsed line: its words, and the line as typed (for error messages)."""

    words: tuple
    line: str


class ParseError(ValueError):
    """A line that cannot become a request; the message is the wire error."""


def parse_line(raw):
    """Bytes of one line -> a Request, or None for a blank line.

    Raises ParseError for text that is not UTF-8 or not shell-splittable.
    """
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ParseError(errors.NOT_UTF8) from None
    if not line:
        return None
    if _SHELL_SPECIALS.isdisjoint(line):
        return Request(tuple(line.split()), line)
    try:
        words = shlex.split(line)
    except ValueError:
        raise ParseError(errors.UNBALANCED_QUOTES) from None
    return Request(tuple(words), line) if words else None


# The first bytes of the lines looks_like_http() can say yes to: a capital (a
# method), an h (a Host: header), or the white space it skips.  A caller may
# look here first and spare itself the call for every other line.
HTTP_FIRST_BYTES = frozenset(bytes([byte]) for byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZh \t\n\r\x0b\x0c")


def looks_like_http(raw):
    """True for a line a browser or HTTP client would send."""
    return _HTTP_REQUEST.match(raw.lstrip()) is not None


# -- replies ---------------------------------------------------------------------


class Preformatted(str):
    """Reply text sent exactly as it is, trailing blank line included (help)."""

    __slots__ = ()


class Final:
    """What a streaming command yields last to end with a value, as a plain
    command returns one: a run's result after its output lines."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class Shown:
    """A command's value together with the text people see: text mode sends
    ``text`` (a table, say), JSON mode sends ``value`` (the rows as objects)."""

    __slots__ = ("value", "text")

    def __init__(self, value, text):
        self.value, self.text = value, text

    def __repr__(self):
        return f"Shown({self.value!r}, {self.text!r})"


def to_text(value):
    """What a command returned, as reply text ending in exactly one newline."""
    if type(value) is str:  # the common case, first
        value = value.rstrip("\n")
        return value + "\n" if value else ""
    if isinstance(value, Preformatted):
        return value
    if isinstance(value, Shown):
        return to_text(value.text)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (dict, list, tuple)):
        try:
            value = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        except Exception:  # noqa: BLE001 - keys JSON cannot have, an item whose str() fails
            value = _shown(value, repr)
    elif not isinstance(value, str):
        value = _shown(value, str)
    value = value.rstrip("\n")
    return value + "\n" if value else ""


def _shown(value, show):
    try:
        return show(value)
    except Exception:  # noqa: BLE001 - a reply must be sent whatever the value
        return f"<{type(value).__name__} object that cannot be shown>"


def escape_body(text):
    """Dash-stuff any line that could be mistaken for the separator (rule 4)."""
    if SEPARATOR not in text:
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        core = line.strip()
        if len(core) >= len(SEPARATOR) and core.count("-") == len(core):
            lines[index] = line.replace("-", "--", 1)
    return "\n".join(lines)


def unescape_body(text):
    """Undo escape_body: what a client does to get a body back exactly."""
    if SEPARATOR not in text:
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        core = line.strip()
        if len(core) > len(SEPARATOR) and core.count("-") == len(core):
            lines[index] = line.replace("-", "", 1)
    return "\n".join(lines)


def render_body(text):
    """Reply text as wire bytes, without the separator (a streamed chunk)."""
    if text and not text.endswith("\n"):
        text += "\n"
    return escape_body(text).encode("utf-8", "replace")


def render_text(text):
    """A whole reply: body then separator."""
    return render_body(text) + _SEPARATOR_BYTES


def render_error(message):
    """A one-line error reply, then the separator."""
    return render_body(errors.as_line(message)) + _SEPARATOR_BYTES


def render_reply(reply):
    """A whole (not streamed) Reply: its error, or its value as text."""
    if reply.error is not None:
        return render_error(reply.error)
    return render_value(reply.value)


def render_value(value):
    """A command's value (no error) as a whole reply."""
    if type(value) is str and SEPARATOR not in value:
        value = value.rstrip("\n")  # the common case, without the general path's calls
        if not value:
            return _SEPARATOR_BYTES
        try:
            return (value + _NEWLINE_SEPARATOR).encode()  # (no errors argument: faster)
        except UnicodeEncodeError:  # a lone surrogate
            return (value + _NEWLINE_SEPARATOR).encode("utf-8", "replace")
    return render_text(to_text(value))


def render_end(error=None, result=None):
    """The end of a streamed reply: an error line, or the value it ended with
    (see Final), then the separator."""
    if error:
        return render_error(error)
    return render_body(to_text(result)) + _SEPARATOR_BYTES if result is not None \
        else _SEPARATOR_BYTES


def render_banner(service_names):
    """The greeting sent on connect (rule 2)."""
    lines = [BANNER_RULE, BANNER_TITLE, BANNER_RULE, "Available Services:"]
    lines += ["-" + name for name in service_names]
    return render_text("\n".join(lines))
