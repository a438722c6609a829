"""Every error a client can see, in one place.

Each is one line of text; protocol.render_error() puts ``ERROR: `` in front.
Anything that is not in this vocabulary (an exception from a service) is logged
with its traceback and reaches the client only as its one-line message.
"""

import unicodedata

ECHO_LIMIT = 60
LINE_LIMIT = 400

# What service code may raise that must not take the server down with it: a
# command calling sys.exit() (argparse does) ends in a reply, not an exit.
SERVICE_FAILURES = (Exception, SystemExit, KeyboardInterrupt)

NOT_UTF8 = "line is not valid UTF-8"
UNBALANCED_QUOTES = "unbalanced quotes"
INTERRUPTED = "interrupted"
CANCELLED = "the command was cancelled"
SHUTTING_DOWN = "server is shutting down"


class CommandError(Exception):
    """Raise from a command to reply with a clean one-line error.

    The message is sent to the client as ``ERROR: <message>`` and nothing is
    logged as a crash: this is how a command reports a problem its user made.
    """


class ArgumentError(ValueError):
    """The words of a request do not fit the command's signature."""


def _printable(text):
    """No control or format characters: they could drive the admin's terminal."""
    if text.isprintable():
        return text
    return "".join("?" if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char
                   for char in text)


def _shortened(text, limit):
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(text, limit=ECHO_LIMIT):
    """User input made safe to echo: printable, one line, short, and quoted."""
    return repr(_shortened(_printable(text.replace("\r", "").replace("\n", "")), limit))


def one_line(message):
    """Any message as a single printable, bounded line."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return _shortened(_printable(line), LINE_LIMIT)


def as_line(message):
    """Any message as the text form's error line."""
    return "ERROR: " + one_line(message)


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


def still_busy(service, label, why, seconds):
    return (f"{service} is still running '{label}' ({why}, running for {seconds:.0f} s); "
            "try again when it ends")


def busy(label, seconds):
    return (f"{label} timed out after {seconds:g} s waiting for its service, "
            "which is still running an earlier command")


def _detail(exc):
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still gets a reply
        return "(its message could not be shown)"


def failed(label, exc):
    """A service raised: the client gets the exception's type and message only."""
    if isinstance(exc, CommandError):
        return _detail(exc) or f"{label} failed"
    return f"{label} failed: {describe_exception(exc)}"


def not_running(name, state):
    if state in ("new", "starting"):
        return f"{name} is still starting; try again in a moment"
    return f"{name} is {state} (restarting?); try again"


def not_started(name, reason):
    """A service that failed to load or start, asked for by name."""
    return f"{name} {reason}"


def describe_exception(exc):
    """An exception as one line, for replies, logs and help."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    detail = _detail(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
