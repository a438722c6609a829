"""What is loaded right now, and how a request's words find a command.

A Catalog is an immutable snapshot, rebuilt whenever services start or
restart; a request only reads it.  Names resolve in this order:

1. a built-in command (help, kill, restart, quit, exit);
2. a service name: ``<service>`` alone or ``<service> help ...`` is help for it,
   ``<service> <command> ...`` runs one of its commands;
3. a toplevel command.  When two services offer the same toplevel name, the
   first service loaded wins.  A toplevel name that a built-in or a service
   name hides is not reachable, so help does not list it (and a warning says so).
"""

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..auth.levels import Level
from ..wire import errors, protocol
from . import helptext
from .lifecycle import overrides
from .turn import Turn

log = logging.getLogger("smanager.catalog")
REMEMBERED_LINES, REMEMBERED_LENGTH = 512, 256


@dataclass(eq=False)
class Loaded:
    """A running service with its command table."""

    name: str
    instance: object
    commands: dict
    path: Path | None = None
    turn: Turn | None = None  # for a service whose plain commands run one at a time
    tracks_clients: bool = False
    streams: set = field(default_factory=set)  # its streams still sending
    started: float | None = None  # when its start ended (time.time())
    last_error: tuple | None = None  # (time.time(), error line) of its latest failed command

    @classmethod
    def wrap(cls, name, instance, commands, path=None):
        if "help" in commands:
            log.warning("%s: its own 'help' command is hidden by the built-in help", name)
            commands = {key: value for key, value in commands.items() if key != "help"}
        return cls(name, instance, commands, path,
                   None if instance.concurrent else Turn(),
                   overrides(instance, "client_disconnected"))

    def limited_to(self, commands):
        """The same service showing only some of its commands (for help)."""
        return Loaded(self.name, self.instance, commands, self.path, self.turn,
                      self.tracks_clients)

    @property
    def title(self):
        return type(self.instance).__name__

    @property
    def doc(self):
        return inspect.cleandoc(type(self.instance).__doc__ or "")

    @property
    def timeout(self):
        return self.instance.command_timeout


@dataclass(frozen=True)
class Failure:
    """A service (or a whole file) that could not be loaded or started."""

    path: Path | None
    reason: str
    whole_file: bool = False  # the file did not import, so no class is known
    refused: bool = False  # start() raised StartRefused: the server must not run


class Target(NamedTuple):
    """What a request resolved to: a command, its service (None for a built-in), its words."""

    service: Loaded | None
    command: object
    words: tuple


class Catalog:
    """An immutable view of the running services, their commands, and help."""

    def __init__(self, services, builtins, failures=None, unlisted=(), toplevel=None):
        self.services = {loaded.name: loaded for loaded in services}
        self.builtins = builtins
        self.unlisted = frozenset(unlisted)
        self.failures = dict(failures or {})
        self.toplevel = self._toplevel_table() if toplevel is None else toplevel
        self.calls = {}  # line bytes -> its bound Call, for lines that repeat
        self.views = {}  # level -> the Catalog a connection of that level sees
        self.banner = protocol.render_banner(sorted(self.services))  # every connection's
        self._help = {}  # helptext.full or .terse -> its text, made when first asked for
        # (No cached_property: writing an instance's __dict__ makes 3.11 read every
        # attribute of it the slow way, calls included, which is read on every line.)

    def remember(self, raw, call):
        """Keep a line's Call for the next identical line; bounded, so memory is too."""
        if len(self.calls) < REMEMBERED_LINES and len(raw) <= REMEMBERED_LENGTH:
            self.calls[raw] = call

    def _toplevel_table(self):
        table = {}
        for loaded in self.services.values():
            for name, command in loaded.commands.items():
                if not command.toplevel:
                    continue
                owner = ("a built-in command" if name in self.builtins
                         else "a service" if name in self.services
                         else table[name][0].name if name in table else None)
                if owner is None:
                    table[name] = (loaded, command)
                else:
                    log.warning("toplevel command %r of %s is hidden by %s; use '%s %s'",
                                name, loaded.name, owner, loaded.name, name)
        return table

    def resolve(self, words, failures_shown=True):
        """A request's words -> a Target, or the error message to send (for a
        service that failed to load or start, why, if ``failures_shown``)."""
        first = words[0].lower()
        if first in self.builtins:
            return Target(None, self.builtins[first], words[1:])
        service = self.services.get(first)
        if service is not None:
            second = words[1].lower() if len(words) > 1 else "help"
            if second == "help":
                return Target(None, self.builtins["help"], (first, *words[2:]))
            command = service.commands.get(second)
            if command is None:
                return errors.unknown_service_command(first, words[1])
            return Target(service, command, words[2:])
        entry = self.toplevel.get(first)
        if entry is None:
            failure = self.failures.get(first) if failures_shown else None
            if failure is not None:
                return errors.not_started(first, failure.reason)
            return errors.unknown_command(words)
        return Target(entry[0], entry[1], words[1:])

    def view(self, level, may):
        """This catalog as a connection of ``level`` sees it, made once per level:
        only the commands ``may(service, command)`` allows, so help and the banner
        list nothing it cannot run; load failures only for admin.  (Views exist
        only once users do, so ``login`` is listed in them.)"""
        view = self.views.get(level)
        if view is None:
            view = self.views[level] = self._only(may, show_failures=level is Level.ADMIN)
        return view

    def _only(self, may, show_failures):
        services = {}
        for name, loaded in self.services.items():
            commands = {n: c for n, c in loaded.commands.items() if may(loaded, c)}
            if commands:
                services[name] = loaded.limited_to(commands)
        toplevel = {name: (services[owner.name], command)
                    for name, (owner, command) in self.toplevel.items()
                    if owner.name in services and name in services[owner.name].commands}
        builtins = {n: c for n, c in self.builtins.items() if may(None, c)}
        return Catalog(services.values(), builtins, self.failures if show_failures else {},
                       self.unlisted - {"login"}, toplevel=toplevel)

    def listed_builtins(self):
        return {name: cmd for name, cmd in self.builtins.items() if name not in self.unlisted}

    @property
    def full_help(self):
        return self._help_text(helptext.full)

    @property
    def terse_help(self):
        return self._help_text(helptext.terse)

    def _help_text(self, make):
        if make not in self._help:
            self._help[make] = make(self)
        return self._help[make]
