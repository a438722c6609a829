"""Who may run what: the server's access policy.  No sockets here.

1. With no users file, every connection may run everything (the seed's
   experience).  With one, the server is *closed* for the whole of its life:
   the file must name a user at start (else it does not start, users.py), and
   removing every user later, or the file, does not open it again.
2. A closed server gives each connection the level of the user it logged in
   as, or that its TLS client certificate names; else ``Level.NONE``.
3. A connection runs a command if its level reaches the command's, or if
   the command is in the unauthenticated allowance (by
   default ``help``; ``login``, ``challenge``, ``auth``, ``quit`` and
   ``mode`` need no level).  An entry is a command (``hostname``), a service
   (every command of it) or ``SERVICE COMMAND``.
4. A connection with no level on a closed server is *on probation*: short lines,
   few commands, closed on its first error (see server/connection.py, server/pipeline.py).
5. Help and the banner show only what the connection may run (``Catalog.view``).
"""

import logging
import weakref

from .levels import Level
from .users import UsersFile

log = logging.getLogger("smanager.access")


class Access:
    def __init__(self, users_file="", unauthenticated=("help",)):
        self.users_file = UsersFile(users_file) if users_file else None
        self.unauthenticated = frozenset(entry.lower() for entry in unauthenticated)
        self.closed = self.users_file is not None
        self._peers = weakref.WeakSet()  # every connection, to settle again when users change
        if self.closed:
            log.info("users are configured: connections must log in")

    @property
    def users(self):
        return self.users_file.users if self.users_file is not None else {}

    def refresh(self):
        """Read the users file again if it changed, and if it did, settle
        every connection again: a removed user loses its level at once."""
        if self.users_file is None or not self.users_file.refresh():
            return
        for peer in list(self._peers):
            self.settle(peer)

    def greet(self, peer, catalog):
        """A new connection: give it its level, and return the banner it is
        greeted with.  (Without a users file a Peer starts as what it keeps:
        admin, not on probation, seeing the whole catalog.)"""
        if not self.closed:
            return catalog.banner  # (every connection: one call, not three)
        self._peers.add(peer)  # settled again when the users file changes
        self.settle(peer)
        return self.view(catalog, peer).banner

    def settle(self, peer):
        """Give a connection its level (rule 2), now and whenever the users change."""
        if not self.closed:
            peer.level, peer.on_probation = Level.ADMIN, False
            return
        user = self.users.get(peer.login) if peer.login else None
        if user is None and peer.login:
            log.warning("%s: user %s is no longer in the users file", peer.address, peer.login)
            peer.login = None
        if user is None and peer.certificate:
            user = self.users.get(peer.certificate)
        peer.level = user.level if user is not None else Level.NONE
        peer.on_probation = user is None

    # -- may this connection run this? ------------------------------------------

    def allows(self, peer, target, catalog):
        command = target.command
        return command.level <= peer.level or self._in_allowance(target.service, command,
                                                                 catalog)

    def _in_allowance(self, service, command, catalog):
        names = self.unauthenticated
        if not names:
            return False
        if service is None:  # a built-in
            return command.name in names
        return (service.name in names or f"{service.name} {command.name}" in names
                or command.name in names and catalog.toplevel.get(command.name) == (service,
                                                                                 command))

    def denied(self, peer, target, catalog):
        """The error for a command the connection may not run; it is logged."""
        service, command = target.service, target.command
        label = command.name if service is None or \
            catalog.toplevel.get(command.name) == (service, command) \
            else f"{service.name} {command.name}"
        needed = target.command.level
        log.warning("%s user=%s denied %r (needs %s)", peer.address, peer.user or "-",
                    label, needed)
        if peer.level is Level.NONE:
            return f"'{label}' needs a login first: login USER PASSWORD"
        return f"'{label}' needs the {needed} level; {peer.user} has {peer.level}"

    # -- what help shows ---------------------------------------------------------

    def view(self, catalog, peer):
        """The catalog as this connection may see it (rule 5): help and banner read it."""
        if not self.closed:
            return catalog
        level = peer.level

        def may(service, command):
            return command.level <= level or self._in_allowance(service, command, catalog)
        return catalog.view(level, may)
