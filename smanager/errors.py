"""Every error a client can see, in one place.

Each is one line of text; protocol.render_error() puts ``ERROR: `` in front.
Anything that is not in this vocabulary (an exception from a service) is logged
with its traceback and reaches the client only as its one-line message.
"""

import unicodedata

ECHO_LIMIT = 60
LINE_LIMIT = 400

NOT_UTF8 = "line is not valid UTF-8"
UNBALANCED_QUOTES = "unbalanced quotes"
INTERRUPTED = "interrupted"
SHUTTING_DOWN = "server is shutting down"


class CommandError(Exception):
    """Raise from a command to reply with a clean one-line error.

    The message is sent to the client as ``ERROR: <message>`` and nothing is
    logged as a crash: this is how a command reports a problem its user made.
    """


class ArgumentError(ValueError):
    """The words of a request do not fit the command's signature."""


def shown(text, limit=ECHO_LIMIT):
    """User input made safe to echo: printable, one line, and short."""
    cleaned = "".join(
        "?" if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char
        for char in text.replace("\r", "").replace("\n", "")
    )
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3] + "..."
    return repr(cleaned)


def as_line(message):
    """Any message as a single bounded line, prefixed for the wire."""
    line = " ".join(str(message).split())
    if len(line) > LINE_LIMIT:
        line = line[: LINE_LIMIT - 3] + "..."
    return "ERROR: " + line


def line_too_long(limit):
    return f"line longer than {limit} bytes; closing the connection"


def unknown_command(words):
    return f"unknown command {shown(' '.join(words[:1]))} (try 'help')"


def unknown_service_command(service, command):
    return f"unknown command {shown(command)} for {service} (try '{service} help')"


def unknown_topic(topic):
    return f"no help for {shown(topic)} (try 'help')"


def bad_arguments(problem, usage):
    return f"{problem}; usage: {usage}"


def timed_out(label, seconds):
    return f"{label} timed out after {seconds:g} s"


def busy(label, seconds):
    return (f"{label} timed out after {seconds:g} s waiting for its service, "
            "which is still running an earlier command")


def failed(label, exc):
    """A service raised: the client gets the exception's type and message only."""
    if isinstance(exc, CommandError):
        return str(exc) or f"{label} failed"
    detail = str(exc)
    kind = type(exc).__name__
    return f"{label} failed: {kind}: {detail}" if detail else f"{label} failed: {kind}"


def describe_exception(exc):
    """A load or start failure as one line, for logs and help."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
