"""The manager: runs requests against the services of its Roster.  No sockets here.

It also sets the policy around the roster's changes: a restart cannot be cut
short by the client that asked for it, and stopping waits for it to end.
"""

import asyncio
import gc
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

from ..wire import errors
from ..auth.access import Access
from .builtins import Builtins
from .commands import commands_of
from ..auth.levels import Level
from .lifecycle import call_hook
from ..auth.login import Logins
from ..wire.protocol import parse_line
from .roster import Roster
from .runner import Reply, Runner
from ..service import Session

log = logging.getLogger("smanager.manager")
_connection_ids = itertools.count(1)


class Peer:
    """A connected client as the manager sees it: who it is, what it may run,
    and its sessions."""

    def __init__(self, address, host=None, certificate=None):
        self.address = address  # "host:port", for logs
        self.host = host or address  # what failed logins are counted against
        self.certificate = certificate  # the name on its verified TLS client certificate
        self.login = None  # the user it logged in as
        self.level = Level.ADMIN  # what it may run, and if it must mind its manners before
        self.strict = False  # logging in: both set by Access.settle
        self.challenge = None  # (user, nonce) of the challenge awaiting its auth
        self.id = next(_connection_ids)
        self.sessions = {}  # service name -> (instance, Session)

    @property
    def user(self):
        return self.login or self.certificate

    def session_for(self, loaded):
        entry = self.sessions.get(loaded.name)
        if entry is None or entry[0] is not loaded.instance:
            entry = self.sessions[loaded.name] = (loaded.instance, Session(self.address, self.id))
        return entry[1]


class Manager:
    """Executes requests against the services its Roster runs."""

    def __init__(self, directories, *, command_timeout=30.0, hook_timeout=10.0,
                 options=None, executor=None, access=None, backoff_max=60.0):
        self.hook_timeout = hook_timeout
        self.executor = executor or ThreadPoolExecutor(32, thread_name_prefix="smanager-cmd")
        self.runner = Runner(self.executor, command_timeout)
        self.access = access or Access()
        self.logins = Logins(self.access, self.executor, backoff_max)
        self.builtins = Builtins(self)
        self.roster = Roster(directories, commands_of(Builtins), hook_timeout=hook_timeout,
                             options=options or {}, executor=self.executor)
        self.shutdown_requested = asyncio.Event()
        self._restart_lock = asyncio.Lock()
        self._restarts = set()  # restart tasks, kept referenced until they end
        self._stopped = False

    # -- requests ----------------------------------------------------------------

    def begin_line(self, raw, peer):
        """Begin one line: None for a blank one, a Reply, or a coroutine that
        finishes it.  Raises protocol.ParseError for a line that cannot parse.

        Parsing, resolving and binding depend only on the line and the
        catalog, so the catalog keeps the Call of a line that needs no session
        and the next identical line skips straight to running it (if this
        connection's level allows it; else the slow path says why not).
        """
        catalog = self.catalog
        call = catalog.calls.get(raw)
        if call is None or call.command.level > peer.level:
            request = parse_line(raw)
            if request is None:
                return None
            call = self._bind(catalog, request, peer)
            if type(call) is Reply:
                return call
            if call.service is not None and not call.service.tracks_clients \
                    and not call.command.wants_session:
                catalog.remember(raw, call)
        return self.runner.start(call)

    def begin(self, request, peer):
        """Begin one parsed request: a Reply, or a coroutine that finishes it."""
        call = self._bind(self.catalog, request, peer)
        return call if type(call) is Reply else self.runner.start(call)

    def _bind(self, catalog, request, peer):
        target = catalog.resolve(request.words)
        if type(target) is str:
            return Reply(error=target)
        if not self.access.allows(peer, target, catalog):
            return Reply(error=self.access.denied(peer, target, catalog))
        service = target.service
        if service is None:  # a built-in's "session" is the Peer
            return self.runner.bind(target, self.builtins, peer)
        session = None
        if target.command.wants_session or service.tracks_clients:
            session = peer.session_for(service)
        return self.runner.bind(target, service.instance, session)

    async def execute(self, request, peer):
        """Run one parsed request to the end; always returns a Reply."""
        outcome = self.begin(request, peer)
        return outcome if isinstance(outcome, Reply) else await outcome

    async def client_left(self, peer):
        """Tell each service the client used (and that wants to know) it has gone."""
        for name, (instance, session) in peer.sessions.items():
            loaded = self.catalog.services.get(name)
            if loaded is None or loaded.instance is not instance or not loaded.tracks_clients:
                continue
            try:
                await call_hook(instance, "client_disconnected", session,
                                timeout=self.hook_timeout, executor=self.executor)
            except errors.SERVICE_FAILURES:  # a hook's failure is only logged
                log.exception("%s: client_disconnected failed", name)

    def request_shutdown(self):
        self.shutdown_requested.set()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def catalog(self):
        return self.roster.catalog

    async def start(self):
        await self.roster.start()
        gc.freeze()  # see _restart

    async def stop(self):
        """Stop every service, in reverse order, after any restart under way."""
        async with self._restart_lock:
            self._stopped = True
            await self.roster.stop()

    async def restart(self, name=None):
        """Reload and restart one service or all; returns the report for the client.

        The work runs in a task of its own: a client that leaves or presses
        Ctrl-C stops waiting for the report, not the restart half-way.
        """
        if self._stopped:
            raise errors.CommandError(errors.SHUTTING_DOWN)
        task = asyncio.get_running_loop().create_task(self._restart(name))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)
        return await asyncio.shield(task)

    async def _restart(self, name):
        async with self._restart_lock:
            if self._stopped:
                raise errors.CommandError(errors.SHUTTING_DOWN)
            # What is loaded lives as long as the server, so it is kept out of the
            # garbage collector's way (gc.freeze): with many services, every full
            # collection would otherwise walk all of it.  Code being replaced must
            # be collectable again, so it is thawed for the restart.
            gc.unfreeze()
            try:
                return await self.roster.restart(name)
            finally:
                gc.collect()
                gc.freeze()

