"""The manager: runs requests against the services of its Roster.  No sockets here.

It also sets the policy around the roster's changes: a restart cannot be cut
short by the client that asked for it, and stopping waits for it to end.
"""

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ..auth.access import Access
from ..auth.levels import Level
from ..auth.login import Logins
from ..wire import errors
from ..wire.protocol import ParseError, parse_line
from .builtins import Builtins
from .commands import commands_of
from .lifecycle import call_hook
from .roster import Roster
from .runner import Outcome, Runner

log = logging.getLogger("smanager.manager")


class Manager:
    """Executes requests against the services its Roster runs."""

    def __init__(self, directories, *, command_timeout=30.0, hook_timeout=10.0,
                 options=None, executor=None, access=None, backoff_max=60.0, config_file=None):
        self.hook_timeout = hook_timeout
        self.executor = executor or ThreadPoolExecutor(32, thread_name_prefix="smanager-cmd")
        self.runner = Runner(self.executor, command_timeout)
        self.access = access or Access()
        self.logins = Logins(self.access, self.executor, backoff_max)
        self.builtins = Builtins(self)
        self.roster = Roster(directories, commands_of(Builtins), hook_timeout=hook_timeout,
                             options=options or {}, executor=self.executor,
                             config_file=config_file)
        self.shutdown_requested = asyncio.Event()
        self.started = time.time()
        self._restart_lock = asyncio.Lock()
        self._restarts = set()  # restart tasks, kept referenced until they end
        self._stopped = False

    # -- requests ----------------------------------------------------------------

    def answer(self, raw, peer):
        """The one way a line is run: one framed line's bytes, and who sent it ->
        None for a blank line, a str (a text reply, done at once: most replies,
        and an Outcome for each would cost a tenth of a trivial command), an
        Outcome, or a coroutine that finishes it.  The connection's worker
        finishes a coroutine, and sends an Outcome's stream.

        Parsing, resolving and binding depend only on the line and the catalog,
        so the catalog remembers the Call of a line that needs no session, and
        the first branch runs the next identical line at once.  Access is
        checked there too (one compare): a connection whose level is too low
        takes the general path, which says why not.
        """
        catalog = self.roster.catalog
        call = catalog.calls.get(raw)
        if call is None or call.rank > peer.rank:  # (the levels as ints: compared fast)
            try:
                request = parse_line(raw)
            except ParseError as exc:
                return Outcome(error=str(exc))
            if request is None:
                return None
            call = self._bind(catalog, request, peer)
            if type(call) is Outcome:
                return call
            if call.service is not None and not call.service.tracks_clients \
                    and not call.command.wants_session:
                catalog.remember(raw, call)
        return self.runner.start(call)

    def _bind(self, catalog, request, peer):
        # Why a service failed is for those who may see it in help (see access.py).
        target = catalog.resolve(request.words, peer.level is Level.ADMIN)
        if type(target) is str:
            return Outcome(error=target)
        if not self.access.allows(peer, target, catalog):
            return Outcome(error=self.access.denied(peer, target, catalog))
        service = target.service
        if service is None:  # a built-in's "session" is the Peer
            return self.runner.bind(target, self.builtins, peer)
        session = None
        if target.command.wants_session or service.tracks_clients:
            session = peer.session_for(service)
        return self.runner.bind(target, service.instance, session)

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

    def server_facts(self):
        """What the server around the manager adds to ``status`` (the server
        replaces this: its listeners and connections)."""
        return {}

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

