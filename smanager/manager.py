"""The manager: owns the running services and runs requests.  No sockets here.

Services start in load order (directories in the order given, files by name,
classes in source order) and stop in reverse.  ``restart`` imports the code
again before stopping anything, so a file that no longer imports leaves its
running services alone.
"""

import asyncio
import gc
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

from . import errors
from .builtins import UNLISTED, Builtins
from .catalog import Catalog, Failure, Loaded
from .commands import commands_of
from .lifecycle import call_hook, start_service, stop_service
from .loader import VALID_NAME, import_file, service_files, service_name
from .protocol import parse_line
from .runner import Reply, Runner
from .service import Session

log = logging.getLogger("smanager.manager")
_connection_ids = itertools.count(1)


class Peer:
    """A connected client as the manager sees it: its address and its sessions."""

    def __init__(self, address):
        self.address = address
        self.id = next(_connection_ids)
        self.sessions = {}  # service name -> (instance, Session)

    def session_for(self, loaded):
        entry = self.sessions.get(loaded.name)
        if entry is None or entry[0] is not loaded.instance:
            entry = self.sessions[loaded.name] = (loaded.instance, Session(self.address, self.id))
        return entry[1]


class Manager:
    """Loads, starts, restarts and stops services; executes requests against them."""

    def __init__(self, directories, *, command_timeout=30.0, hook_timeout=10.0,
                 options=None, executor=None):
        self.directories = list(directories)
        self.hook_timeout = hook_timeout
        self.options = options or {}
        self.executor = executor or ThreadPoolExecutor(32, thread_name_prefix="smanager-cmd")
        self.runner = Runner(self.executor, command_timeout)
        self.builtins = Builtins(self)
        self.builtin_commands = commands_of(Builtins)
        self.catalog = Catalog([], self.builtin_commands, unlisted=UNLISTED)
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
        and the next identical line skips straight to running it.
        """
        catalog = self.catalog
        call = catalog.calls.get(raw)
        if call is None:
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
        service = target.service
        if service is None:
            return self.runner.bind(target, self.builtins, None)
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

    async def start(self):
        scans = [import_file(path) for path in service_files(self.directories)]
        loaded, failures = await self._start_scans(scans, reserved=set())
        self._publish(loaded, failures)
        log.info("services running: %s", " ".join(s.name for s in loaded) or "none")
        gc.freeze()  # see _restart

    async def stop(self):
        """Stop every service, in reverse order, after any restart under way."""
        async with self._restart_lock:
            self._stopped = True
            await self._stop(list(self.catalog.services.values()))
            self._publish([], {})

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
                if name is None:
                    return await self._restart_all()
                return await self._restart_one(name.lower())
            finally:
                gc.collect()
                gc.freeze()

    async def _restart_all(self):
        old = list(self.catalog.services.values())
        scans = [import_file(path) for path in service_files(self.directories)]
        broken = {scan.path: scan.error for scan in scans if scan.error}
        kept = [s for s in old if s.path in broken]
        await self._stop([s for s in old if s.path not in broken])
        reserved = {s.name for s in kept}
        started, failures = await self._start_scans(
            [scan for scan in scans if not (scan.error and scan.path in {s.path for s in kept})],
            reserved)
        order = {scan.path: index for index, scan in enumerate(scans)}
        running = sorted(kept + started, key=lambda s: order.get(s.path, len(order)))
        self._publish(running, failures)
        report = [f"{s.name}: kept running the old code: {broken[s.path]}" for s in kept]
        report += [f"{name}: {failure.reason}" for name, failure in failures.items()]
        report.append("restarted: " + (" ".join(s.name for s in started) or "nothing"))
        return "\n".join(report)

    async def _restart_one(self, name):
        current = self.catalog.services.get(name)
        failure = self.catalog.failures.get(name)
        if current is None and failure is None:
            raise errors.CommandError(f"no service named {errors.shown(name)} (try 'help')")
        path = current.path if current else failure.path
        scan = import_file(path)
        if scan.error and current is not None:
            return f"{name}: kept running the old code: {scan.error}"
        if current is not None or not failure.whole_file:
            scan.classes = [cls for cls in scan.classes if service_name(cls) == name]
        others = [s for s in self.catalog.services.values() if s is not current]
        if current is not None:
            await self._stop([current])
        started, failures = await self._start_scans([scan], {s.name for s in others})
        if not started and not failures:
            failures = {name: Failure(path, f"no longer defined in {path.name}")}
        running = [started[0] if s is current else s
                   for s in self.catalog.services.values() if s is not current or started]
        if current is None:
            running += started
        kept_failures = {key: value for key, value in self.catalog.failures.items()
                         if key != name and key not in failures}
        self._publish(running, {**kept_failures, **failures})
        report = [f"{key}: {value.reason}" for key, value in failures.items()]
        return "\n".join(report + ["restarted: " + " ".join(s.name for s in started)]
                         if started else report)

    async def _start_scans(self, scans, reserved):
        """Instantiate and start the classes found; returns (running, failures)."""
        running, failures = [], {}
        for scan in scans:
            if scan.error:
                failures[scan.label] = Failure(scan.path, f"failed to load: {scan.error}",
                                               whole_file=True)
                continue
            for cls in scan.classes:
                name = service_name(cls)
                problem = self._name_problem(name, reserved)
                if problem:
                    log.error("service %s from %s not loaded: %s", name, scan.path.name, problem)
                    failures.setdefault(name, Failure(scan.path, f"not loaded: {problem}"))
                    continue
                loaded = await self._start_one(cls, name, scan.path, failures)
                if loaded is not None:
                    reserved.add(name)
                    running.append(loaded)
        return running, failures

    def _name_problem(self, name, reserved):
        if not VALID_NAME.match(name):
            return "a service name is letters, digits, '_', '.', '-' (64 at most)"
        if name in self.builtin_commands:
            return "that name is a built-in command"
        if name in reserved:
            return "another service already has that name"
        return None

    async def _start_one(self, cls, name, path, failures):
        try:
            instance = cls()
            instance.options = dict(self.options.get(name, {}))
            commands = commands_of(cls)
        except errors.SERVICE_FAILURES as exc:  # a broken service is a report
            log.exception("service %s could not be created", name)
            failures[name] = Failure(path, f"failed to load: {errors.describe_exception(exc)}")
            return None
        reason = await start_service(instance, timeout=self.hook_timeout, executor=self.executor)
        if reason is not None:
            await stop_service(instance, timeout=self.hook_timeout, executor=self.executor)
            failures[name] = Failure(path, f"failed to start: {reason}")
            return None
        return Loaded.wrap(name, instance, commands, path)

    async def _stop(self, services):
        for loaded in reversed(services):
            await stop_service(loaded.instance, timeout=self.hook_timeout, executor=self.executor)

    def _publish(self, running, failures):
        self.catalog = Catalog(running, self.builtin_commands, failures, UNLISTED)
