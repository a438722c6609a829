"""Privilege levels: what a connection may run.

Each command has a level; a connection runs commands at or below its own.

- ``read``: look, change nothing (help, status-like commands);
- ``operate``: a service's commands (the default for every service command);
- ``admin``: ``kill``, ``restart``, and what a service marks ``@level("admin")``.

Logging in and leaving (``login``, ``challenge``, ``auth``, ``quit``) need no
level.  With no users configured every connection is ``admin``: the seed's
experience.
"""

import enum


class Level(enum.IntEnum):
    NONE = 0  # not logged in
    READ = 1
    OPERATE = 2
    ADMIN = 3

    def __str__(self):
        return self.name.lower()


NAMES = ("read", "operate", "admin")
DEFAULT = Level.OPERATE


def parse(text):
    """'read', 'operate' or 'admin' -> Level; ValueError for anything else."""
    if text.lower() not in NAMES:
        raise ValueError(f"level must be one of {', '.join(NAMES)}, not {text!r}")
    return Level[text.upper()]


def level(name):
    """Set the level a command needs (the default is operate):

        @level("read")
        def cmd_status(self): ...
    """
    needed = parse(name)

    def mark(function):
        function.required_level = needed
        return function
    return mark
