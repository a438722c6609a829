"""The commands every smanager has, described by the same rules as a service's.

``quit``, ``exit``, ``mode``, ``status``, ``challenge`` and ``auth`` are not
listed, so ``help`` keeps the seed's layout (``COMMANDS: help kill restart``);
``help mode`` and ``help status`` work.  ``login`` is listed once users exist.

A built-in's ``session`` parameter receives the connection's Peer.
"""

import logging

from ..auth.levels import Level, level
from ..wire import errors
from ..wire.formats import FORMATS
from . import helptext, status
from .commands import filtered
from .runner import Outcome

log = logging.getLogger("smanager.builtins")
UNLISTED = frozenset({"quit", "exit", "mode", "login", "challenge", "auth", "status"})


def anyone(function):
    """Logging in, leaving, and choosing the reply format need no level."""
    function.required_level = Level.NONE
    return function


class Builtins:
    """Built-in commands; they act on the manager that owns them."""

    def __init__(self, manager):
        self.manager = manager

    @level("read")
    async def cmd_help(self, *topic, session):
        """display help message

        help                  services, toplevel and built-in commands
        help -s               the same, as three lines for scripts
        help SERVICE          a service's commands (also: SERVICE help)
        help -s SERVICE       the same, as two lines for scripts
        help SERVICE COMMAND  a command's usage and description
        """
        manager = self.manager
        return helptext.for_topic(manager.access.view(manager.catalog, session), topic)

    @level("admin")
    async def cmd_kill(self):
        """kill server

        Stops accepting connections, lets running commands finish and deliver
        their replies, stops every service, closes every connection and exits.
        """
        self.manager.request_shutdown()
        return Outcome("shutting down", close=True)

    @level("read")
    async def cmd_status(self, session):
        """the server and its services, at a glance

        The version, when it started, what it listens on, its connections,
        and for each service its state and since when; for admin, also each
        service's file and its latest failed command (or why it is not
        running).
        """
        return status.report(self.manager, session)

    @level("admin")
    async def cmd_restart(self, service=None, *, session):
        """restart services

        Stops the service (or every service), loads its code again from disk
        and starts it; connections stay open.  If the new code cannot be
        loaded, the running version is kept and the reply says why.
        """
        log.info("%s user=%s asked to restart %s", session.address, session.user or "-",
                 service or "every service")
        return await self.manager.restart(service)

    @anyone  # it changes only how this connection's replies look
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
        return Outcome(chosen, mode=chosen)

    @anyone
    @filtered("password")
    async def cmd_login(self, user, password, session):
        """log in as a user

        Over a connection anyone can watch, prefer TLS, or 'challenge' and
        'auth', which keep the password off the wire (tshell and the client
        library use them).  Before logging in a connection may send only a
        few short lines, and is closed on its first error.
        """
        return await self.manager.logins.login(session, user, password)

    @anyone
    async def cmd_challenge(self, user, client_nonce="", session=None):
        """begin a login that keeps the password off the wire

        Replies 'pbkdf2-sha256 ITERATIONS SALT NONCE' (NONCE begins with
        CLIENT_NONCE); answer with 'auth PROOF' where, as in SCRAM (RFC 5802),
        with SHA-256 and base64, and SALT as sent:
            Salted    = PBKDF2(password, SALT, ITERATIONS)
            ClientKey = HMAC(Salted, "Client Key")
            Message   = "USER,NONCE,ITERATIONS,SALT"
            PROOF     = ClientKey XOR HMAC(SHA-256(ClientKey), Message)
        The reply to auth ends with HMAC(HMAC(Salted, "Server Key"), Message):
        check it to know this is the real server.
        """
        return self.manager.logins.challenge(session, user, client_nonce)

    @anyone
    @filtered("proof")
    async def cmd_auth(self, proof, session):
        """answer the last challenge and log in (see 'help challenge')"""
        return self.manager.logins.auth(session, proof)

    @anyone
    async def cmd_quit(self):
        """close this connection"""
        return Outcome("bye", close=True)

    cmd_exit = cmd_quit
