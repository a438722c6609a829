"""The commands every smanager has, described by the same rules as a service's.

``quit``, ``exit`` and ``mode`` work everywhere but are not listed, so ``help``
keeps the seed's layout (``COMMANDS: help kill restart``); ``help mode`` works.
"""

from . import errors, help as help_text
from .formats import FORMATS
from .runner import Reply

UNLISTED = frozenset({"quit", "exit", "mode"})


class Builtins:
    """Built-in commands; they act on the manager that owns them."""

    def __init__(self, manager):
        self.manager = manager

    async def cmd_help(self, *topic):
        """display help message

        help                  services, toplevel and built-in commands
        help -s               the same, as three lines for scripts
        help SERVICE          a service's commands (also: SERVICE help)
        help -s SERVICE       the same, as two lines for scripts
        help SERVICE COMMAND  a command's usage and description
        """
        return help_text.for_topic(self.manager.catalog, topic)

    async def cmd_kill(self):
        """kill server

        Stops accepting connections, lets running commands finish and deliver
        their replies, stops every service, closes every connection and exits.
        """
        self.manager.request_shutdown()
        return Reply("shutting down", close=True)

    async def cmd_restart(self, service=None):
        """restart services

        Stops the service (or every service), loads its code again from disk
        and starts it; connections stay open.  If the new code cannot be
        loaded, the running version is kept and the reply says why.
        """
        return await self.manager.restart(service)

    async def cmd_mode(self, mode):
        """switch this connection's replies between text and JSON

        mode json   each reply is one line of JSON: {"ok": true, "result": ...}
                    or {"ok": false, "error": "..."}; a stream sends
                    {"chunk": ...} lines, then one of those
        mode text   back to text and the separator (the default)

        The switch applies from its own reply on.
        """
        chosen = mode.lower()
        if chosen not in FORMATS:
            raise errors.CommandError(f"no mode {errors.shown(mode)}; use 'mode json' or 'mode text'")
        return Reply(chosen, mode=chosen)

    async def cmd_quit(self):
        """close this connection"""
        return Reply("bye", close=True)

    cmd_exit = cmd_quit
