"""The words of monitor's commands: numbers, durations, times, metric names, options.

Each reader raises CommandError with one line naming what was wrong; nothing here
reads a clock (``now`` is given).
"""

import re

from smanager.wire.errors import CommandError

from .alerts import duration, finite_number
from .store import LARGEST

METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}")
ABSOLUTE_AFTER = 1e9  # since=/until= above this are wall-clock seconds, not ages
NUMBERS = {"interval", "timeout", "expect"}  # the collector options that are numbers


def metric_name(text):
    if not METRIC_NAME.fullmatch(text):
        raise CommandError(f"bad metric name {text[:40]!r}: letters, digits, _ . : - "
                           "(200 at most)")
    return text


def number(what, text):
    """A finite number."""
    try:
        value = finite_number(what, text)
    except ValueError:
        raise CommandError(f"{what} must be a number, not {text[:40]!r}") from None
    if abs(value) > LARGEST:
        raise CommandError(f"{what} is out of range (at most 1e300 either way)")
    return value


def seconds(what, text):
    """A duration: 90s, 30m, 1h, 2d, or seconds."""
    try:
        return duration(text)
    except ValueError:
        raise CommandError(f"{what} must be a duration like 90s, 30m, 1h, 2d, not {text[:40]!r}") \
            from None


def when(text, now):
    """since=/until=: 'now', an age (1h), or wall-clock seconds."""
    if text == "now":
        return now
    try:
        value = float(text)
        if value > ABSOLUTE_AFTER:
            return value
    except ValueError:
        pass
    return now - seconds("since and until", text)


def step(text):
    width = seconds("step", text)
    if width < 1 or width != int(width):
        raise CommandError("step must be whole seconds, at least 1s")
    return int(width)


def typed(key, text):
    """A key=value word as the config file's table would hold it: numbers for the
    options that are numbers, text for the rest (a password of digits stays text)."""
    if key in NUMBERS:
        try:
            return int(text) if text.isdigit() else float(text)
        except ValueError:
            return text  # the kind says what is wrong with it
    return text
