"""Clients for smanager servers, for programs, tshell and the tests.

    from smanager.client import Client

    with Client("web1", 10000) as server:
        reply = server.call("systemstatus uptime")
        print(reply.text if reply.ok else reply.error)

``Client`` blocks; ``AsyncClient`` is the same, awaited.  Both talk JSON mode,
so ``reply.value`` keeps a command's structure and ``reply.text`` is what
telnet would show.  ``call`` returns error replies; ``run`` raises
CommandFailed for them.  Not getting an answer at all raises CannotConnect,
ConnectionLost (a CannotConnect) or TimedOut; all are ClientErrors.
``Client(host, port, user="alice", password=...)`` logs in on every
connection without sending the password (challenge and auth); a refusal
raises LoginFailed (a CannotConnect).  A host with a ``/`` in it is the path of
a server's Unix socket: ``Client("/run/smanager.sock")``.
"""

from .addresses import format_address, parse_address
from .asynchronous import AsyncClient
from .blocking import Client
from .common import (
    CannotConnect,
    ClientError,
    CommandFailed,
    ConnectionLost,
    LoginFailed,
    Reply,
    TimedOut,
)
from .scripts import Scripts
from .tls import tls_context

__all__ = [
    "AsyncClient", "CannotConnect", "Client", "ClientError", "CommandFailed",
    "ConnectionLost", "LoginFailed", "Reply", "Scripts", "TimedOut", "format_address",
    "parse_address", "tls_context",
]
