"""Checking one TOML table's values: each mistake a SpecError, one line naming
where and which key, with the nearest known key suggested for a typo.
Booleans are never numbers; paths must be absolute (~ expanded)."""

import difflib
import json
import math
import os
import re
import shlex
import signal
from collections.abc import Mapping

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = 'a name is 1-64 letters, digits, "_", "." or "-", not starting with "_", "." or "-"'
RESERVED_NAMES = frozenset({"all"})  # "all" means every program in commands


class SpecError(ValueError):
    """A setting that cannot be used; the message is one line naming where and which."""


def shown(value) -> str:
    """A value as TOML writes it, for a message: "text", 1.5, true, [1, 2]."""
    return json.dumps(value, ensure_ascii=False, default=str)


def choices(options) -> str:
    """'"a", "b" or "c"'."""
    return ", ".join(map(shown, options[:-1])) + " or " + shown(options[-1])


def check_name(where: str, name) -> None:
    """A program's, template's or session's name, or one named in depends_on."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SpecError(f"{where} {shown(name)}: not a valid name; {NAME_RULE}")
    if name in RESERVED_NAMES:
        raise SpecError(f"{where} {shown(name)}: the name is reserved")


def check_keys(where: str, table: Mapping, known, prefix: str = "") -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f' (did you mean "{prefix}{close[0]}"?)' if close else ""
            raise SpecError(f'{where}: unknown key "{prefix}{key}"{hint}')


def split_command(where: str, value: str, key: str = "command") -> list[str]:
    """A command string split as a shell would split it, without the shell."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise SpecError(f"{where}: {key} cannot be split: {exc}") from None


class CheckedTable:
    """One table's values, each checked as it is taken out."""

    def __init__(self, where: str, table: Mapping, prefix: str = ""):
        self.where, self.table, self.prefix = where, table, prefix

    def fail(self, key, message):
        raise SpecError(f"{self.where}: {self.prefix}{key} {message}")

    def get(self, key, default=None):
        return self.table.get(key, default)

    def number(self, key, default, *, above=None, least=None, most=None) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"must be a number, not {shown(value)}")
        if above is not None and value <= above:
            self.fail(key, f"must be more than {above}, not {shown(value)}")
        if least is not None and value < least:
            self.fail(key, f"must be at least {least}, not {shown(value)}")
        if most is not None and value > most:
            self.fail(key, f"must be at most {most}, not {shown(value)}")
        return float(value)

    def integer(self, key, default, least, most=None) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number, not {shown(value)}")
        if value < least or (most is not None and value > most):
            limit = f"at least {least}" if most is None else f"{least}-{most}"
            self.fail(key, f"must be {limit}, not {value}")
        return value

    def flag(self, key, default) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {shown(value)}")
        return value

    def choice(self, key, default, options) -> str:
        value = self.table.get(key, default)
        if value not in options or not isinstance(value, str):
            self.fail(key, f"must be {choices(options)}, not {shown(value)}")
        return value

    def path(self, key) -> str | None:
        value = self.table.get(key)
        if value is not None and not (isinstance(value, str) and value):
            self.fail(key, f"must be a path, not {shown(value)}")
        if value is not None and not os.path.isabs(value := os.path.expanduser(value)):
            self.fail(key, f"must be an absolute path, not {shown(value)}")
        return value

    def signal(self, key, default) -> signal.Signals:
        value = self.table.get(key, default)
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return signal.Signals(value)
            if isinstance(value, str):
                name = value.upper()
                return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        except (KeyError, ValueError):
            pass
        self.fail(key, f"must be a signal name like TERM or a number, not {shown(value)}")

    def owner(self, key) -> str | None:
        """A user or group: a name, or a number (kept as its digits)."""
        value = self.table.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if value is not None and not (isinstance(value, str) and value.strip()):
            self.fail(key, f"must be a name or a number, not {shown(value)}")
        return value
