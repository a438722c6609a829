"""SService, the class a service author subclasses.

A service is a class; its ``cmd_`` and ``toplevel_cmd_`` methods are its
commands (see smanager.commands).  Everything else here is optional: lifecycle
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
from dataclasses import dataclass, field

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


@dataclass(eq=False)
class Session:
    """One client connection, as one service sees it.

    ``peer`` is the client's address (``host:port``); ``data`` is a dict the
    service may keep anything in for as long as that client stays connected.
    """

    peer: str
    connection_id: int
    data: dict = field(default_factory=dict)


class SService:
    """Base class of every service.

    Class attributes a subclass may set:
      name             -- the service's name (default: class name, lower-cased)
      concurrent       -- True lets its plain (blocking) commands run at the
                          same time; by default they run one at a time
      command_timeout  -- seconds a command may take (default: server setting)
    ``options`` holds the ``[service.<name>]`` table of the server's config.
    """

    name = None
    concurrent = False
    command_timeout = None
    options = {}
    # Class-level defaults, so a subclass that forgets super().__init__() works.
    _state = State.NEW
    _background = None

    @property
    def state(self):
        return self._state

    def _change_state(self, new):
        if new not in TRANSITIONS[self._state]:
            raise RuntimeError(f"{type(self).__name__}: cannot go from "
                               f"{self._state.value} to {new.value}")
        self._state = new

    # -- hooks: no-ops unless a service overrides them ---------------------------

    async def start(self):
        """Called once before the first command; may be async work."""

    async def stop(self):
        """Called once when the service stops (restart, kill, shutdown)."""

    def cleanup(self):
        """The seed's hook, called after stop(); runs in a worker thread."""

    def client_disconnected(self, session):
        """Called when a client that used this service disconnects."""

    # -- background work ---------------------------------------------------------

    def run_in_background(self, coroutine, name=None):
        """Run a coroutine as a task that is cancelled when the service stops."""
        if self._state not in (State.STARTING, State.RUNNING):
            coroutine.close()
            raise RuntimeError(f"{type(self).__name__} is {self._state.value}: "
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
