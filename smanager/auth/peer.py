"""A connected client, as the core sees it: who it is, what it may run, its sessions."""

import itertools

from ..service import Session
from ..wire.address import format_address
from .levels import Level

_connection_ids = itertools.count(1)
_ADMIN = Level.ADMIN  # (an Enum member costs 4 times a global: EnumType has a __getattr__)
_ADMIN_RANK = _ADMIN._value_


class Peer:
    """One connection's identity and standing; the access policy sets
    ``level`` and ``on_probation`` (see access.py)."""

    def __init__(self, address, host=None, certificate=None):
        # "host:port", for logs; or the socket's (host, port, ...), made into
        # that when first asked: most connections never are (see ``address``).
        self._address = address
        self.host = host or self.address  # what failed logins are counted against
        self.certificate = certificate  # the name on its verified TLS client certificate
        self.login = None  # the user it logged in as
        # What it may run, ``level`` (also as a plain int, ``rank``: see below),
        # set here as the setter would, without a call on every connection's path.
        self._level, self.rank = _ADMIN, _ADMIN_RANK
        # Not logged in on a server with users: short lines, few commands, and
        # closed on its first error (the README's "probation").
        self.on_probation = False
        self.challenge = None  # (user, nonce) of the challenge awaiting its auth
        self.id = next(_connection_ids)
        self.sessions = {}  # service name -> (instance, Session)

    @property
    def address(self):
        """"host:port" ("[::1]:10000"), for logs."""
        address = self._address
        if type(address) is tuple:
            address = self._address = format_address(*address[:2])
        return address

    @property
    def level(self):
        return self._level

    @level.setter
    def level(self, level):
        # The manager compares ``rank`` with a remembered command's on every
        # line: two ints compare at a fraction of two IntEnum members' cost.
        self._level, self.rank = level, level._value_

    @property
    def user(self):
        return self.login or self.certificate

    def session_for(self, loaded):
        """The Session this connection has with a running service (a new one
        after the service restarted)."""
        entry = self.sessions.get(loaded.name)
        if entry is None or entry[0] is not loaded.instance:
            session = Session(self.address, self.id, _client=self)  # reads user and level here
            entry = self.sessions[loaded.name] = (loaded.instance, session)
        return entry[1]
