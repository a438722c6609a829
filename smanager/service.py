"""SService, the class a service author subclasses.

A service is a class; its ``cmd_`` and ``toplevel_cmd_`` methods are its
commands (see smanager.core.commands).  Everything else here is optional: lifecycle
hooks that do nothing unless overridden, a way to run background work that
stops with the service, and a per-connection Session a command can ask for.

Lifecycle: NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED.  A start that
fails ends in FAILED, from which the service is still stopped (so its
background tasks are cancelled and cleanup() runs).  Only _change_state()
moves a service between states, following TRANSITIONS.
"""

import asyncio
import enum
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

log = logging.getLogger("smanager.service")


class State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


TRANSITIONS = {
    State.NEW: {State.STARTING},
    State.STARTING: {State.RUNNING, State.FAILED},
    State.RUNNING: {State.STOPPING},
    State.FAILED: {State.STOPPING},
    State.STOPPING: {State.STOPPED},
    State.STOPPED: set(),
}


class StartRefused(Exception):
    """start() cannot go on safely, and the server must not run without it."""


@dataclass(eq=False)
class Session:
    """One client connection, as one service sees it.

    ``peer`` is the client's address (``host:port``); ``data`` is a dict the
    service may keep anything in for as long as that client stays connected.
    ``user`` and ``level`` say who the client is now (it may log in meanwhile):
    a service that decides per request what a command may do reads them.
    """

    peer: str
    connection_id: int
    data: dict[str, Any] = field(default_factory=dict)
    _client: Any = field(default=None, repr=False, compare=False)  # the connection's standing

    @property
    def user(self) -> str | None:
        """The user the client logged in as, or its TLS certificate's name; None for neither."""
        return self._client.user if self._client is not None else None

    @property
    def level(self) -> str:
        """What the client may run now: "none" (not logged in), "read", "operate" or
        "admin" (every client, on a server without users)."""
        return str(self._client.level) if self._client is not None else "admin"


class SService:
    """Base class of every service.

    Where each method runs:

    - ``def cmd_...`` (a plain method) runs in a worker thread, so it may block
      (``time.sleep``, ``subprocess.run``, file I/O) without stalling anyone.
      A service's plain commands run one at a time, unless it sets
      ``concurrent = True``; then they may run at once, and share its state
      across threads.
    - ``async def cmd_...`` runs on the event loop, with every other client:
      it must never block; await instead.  One that ``yield``s streams.
    - Hooks: ``start`` and ``stop`` on the loop if ``async def``, else in a
      thread; ``cleanup`` and ``client_disconnected`` in a thread if plain.

    Class attributes a subclass may set:
      name             -- the service's name (default: class name, lower-cased)
      concurrent       -- True lets its plain commands run at the same time
      command_timeout  -- seconds a command may take (default: server setting)
      hook_timeout     -- seconds start() and stop() may each take (default:
                          the server's shutdown_timeout); an instance may set
                          it, e.g. from how long its own children may take

    ``self.options`` is this service's own copy of the ``[service.<name>]``
    table of the server's config, already set when ``__init__`` runs, and
    ``self.config_file`` the file it came from (None without one), for a
    service that re-reads its table on request.

    ``self.restarting`` is True while stop() runs for ``restart``: a new
    instance (maybe of new code) follows at once, so a service that holds
    things outside the process (child programs) may leave them running for
    it to take over, in ``self.kept``: a dict the server keeps for the
    service across its restarts (and only for as long as the server runs).
    Otherwise ``restarting`` is False: the server is stopping.

    Raising StartRefused from start() on the server's first start stops the
    server with that one line (exit status 2): for a setting that cannot be
    honoured safely.  Any other exception only fails this service.
    """

    name: str | None = None
    concurrent: bool = False
    command_timeout: float | None = None
    hook_timeout: float | None = None
    config_file: str | None = None
    restarting: bool = False
    kept: dict[str, Any] = MappingProxyType({})  # the roster gives each instance the real one
    # Read-only and empty unless the server gives the instance its own table
    # (see smanager.core.roster), so no two services can share one by mistake.
    options: Mapping[str, Any] = MappingProxyType({})
    _siblings = None  # the roster's lookup: name -> another running service, or None
    # Class-level defaults, so a subclass that forgets super().__init__() works.
    # (Not _state, which every command's run reads: an instance attribute that
    # shadows a class attribute is looked up without 3.11's specialisation.
    # Until the first _change_state() it is missing, which reads as NEW.)
    _background = None

    def sibling(self, name: str) -> "SService | None":
        """Another service of this server, if it is running now, else None: for a
        service that works with another (monitor runs scripts, reads proc).  Ask
        each time: the sibling may be restarted, as a new instance."""
        return self._siblings(name) if self._siblings is not None else None

    @property
    def state(self) -> State:
        # Not getattr(), which would ask a service's own __getattr__; not
        # self.__dict__, which makes 3.11 read the instance's attributes (the
        # runner reads _state on every command) the slow way from then on.
        try:
            return object.__getattribute__(self, "_state")
        except AttributeError:
            return State.NEW

    def _change_state(self, new):
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{type(self).__name__}: cannot go from "
                               f"{self.state.value} to {new.value}")
        self._state = new

    # -- hooks: no-ops unless a service overrides them ---------------------------

    async def start(self) -> None:
        """Called once before the first command; may be async work."""

    async def stop(self) -> None:
        """Called once when the service stops (restart, kill, shutdown)."""

    def cleanup(self) -> None:
        """The seed's hook, called after stop(); runs in a worker thread."""

    def client_disconnected(self, session: Session) -> None:
        """Called when a client that used this service disconnects."""

    # -- background work ---------------------------------------------------------

    def run_in_background(self, coroutine: Coroutine[Any, Any, Any],
                          name: str | None = None) -> asyncio.Task:
        """Run a coroutine as a task that is cancelled when the service stops."""
        if self.state not in (State.STARTING, State.RUNNING):
            coroutine.close()
            raise RuntimeError(f"{type(self).__name__} is {self.state.value}: "
                               "no new background work")
        if self._background is None:
            self._background = set()
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task):
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task %s failed", type(self).__name__,
                      task.get_name(), exc_info=task.exception())

    async def _cancel_background(self):
        tasks = list(self._background or ())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
