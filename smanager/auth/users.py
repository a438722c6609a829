"""The users file: one user a line, ``NAME LEVEL VERIFIER``, managed with ``smanager users``.

    # smanager users: NAME LEVEL VERIFIER (see scram.py)
    alice admin pbkdf2-sha256:600000:3q2+7w...:Vx9f...

It holds no password, only what checks one.  It is written whole, to a new
file renamed over the old, with mode 0600.  The server reads it again when it
changes, so an added, removed or changed user counts without a restart.

A server given a users file must be able to use it: one that does not exist,
cannot be read, or names no user stops it from starting (a mistyped name must
not leave it open to everyone).  Only ``smanager users add`` creates the file.
"""

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import levels
from .scram import Verifier

log = logging.getLogger("smanager.users")
HEADER = "# smanager users: NAME LEVEL VERIFIER; manage with 'smanager users'\n"
NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MISSING = "it does not exist; 'smanager users add NAME' creates it"


@dataclass(frozen=True)
class User:
    name: str
    level: levels.Level
    verifier: Verifier


def check_name(name):
    if not NAME.fullmatch(name):
        raise ValueError(f"a user name is 1-64 letters, digits or _.@-, not {name!r}")
    return name


def parse(text):
    """The users in a file's text, by name; ValueError naming the bad line."""
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            name, level, verifier = line.split()
            user = User(check_name(name), levels.parse(level), Verifier.decode(verifier))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if name in users:
            raise ValueError(f"line {number}: {name} is there twice")
        users[name] = user
    return users


def render(users):
    return HEADER + "".join(f"{u.name} {u.level} {u.verifier.encode()}\n"
                            for u in sorted(users.values(), key=lambda u: u.name))


def load(path):
    """The users in a file.  OSError (FileNotFoundError if there is none), ValueError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    return parse(text)


def save(path, users):
    """Replace the file at once: a reader sees the old file or the new, never half."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent or ".",
                                         prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(render(users))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def _stamp(path):
    """What changes whenever the file does: replaced (inode) or edited (time, size)."""
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns, info.st_size


class UsersFile:
    """The users file as the server sees it: read again when it changes."""

    def __init__(self, path):
        """Read it for the first time: ValueError if it does not exist, cannot
        be read, or names no user, so that the server refuses to start."""
        self.path = path
        try:
            self._stamp = _stamp(path)  # before reading: a change in between is read again
            self.users = load(path)
        except FileNotFoundError:
            raise ValueError(MISSING) from None
        except OSError as exc:
            raise ValueError(exc.strerror or str(exc)) from None
        if not self.users:
            raise ValueError("it names no users; 'smanager users add NAME' adds one")

    def refresh(self):
        """Read the file again if it changed; True if it did.  A file that turns
        bad is logged and the users read last are kept; one that is gone or
        names nobody leaves nobody able to log in (the server stays closed)."""
        try:
            stamp = _stamp(self.path)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            stamp = ("cannot look", exc.errno)  # then reading fails too, and says why
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # each change is read, and logged, once
        try:
            users = load(self.path) if stamp is not None else {}
        except (OSError, ValueError) as exc:
            log.error("users file %s: %s; keeping the users read before", self.path,
                      getattr(exc, "strerror", None) or exc)
            return False
        if stamp is None:
            log.warning("users file %s is gone: no one can log in until it is back", self.path)
        elif not users:
            log.warning("users file %s names no users: no one can log in", self.path)
        self.users = users
        return True
