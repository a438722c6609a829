"""The roster: which services run, and how they come and go.  No sockets here.

Services are listed in load order (directories in the order given, files by
name, classes in source order), start all at once, each within its time
limit, and stop in reverse order.  At start-up the roster returns once every
service has started or after START_GRACE seconds, whichever is first, so the
server listens while a slow start() goes on; until it ends, the service's
commands say it is still starting.  A restart imports the code again before
stopping anything, so a file that no longer imports leaves its running
services alone.  Every change ends in a new Catalog, published whole.
"""

import asyncio
import logging
import time

from ..config import ConfigError
from ..service import State
from ..wire import errors
from .builtins import UNLISTED
from .catalog import Catalog, Failure, Loaded
from .commands import commands_of
from .lifecycle import Refusal, overrides, start_service, stop_service
from .loader import VALID_NAME, import_file, service_files, service_name

log = logging.getLogger("smanager.roster")
START_GRACE = 1.0  # seconds start-up waits for slow start() hooks before listening


class Roster:
    """Loads, starts, restarts and stops services; holds the current Catalog."""

    def __init__(self, directories, builtin_commands, *, hook_timeout, options, executor,
                 config_file=None):
        self.directories = list(directories)
        self.config_file = config_file
        self._kept = {}  # service name -> its SService.kept, across restarts
        self.builtin_commands = builtin_commands
        self.hook_timeout = hook_timeout
        self.options = options
        self.executor = executor
        self.catalog = Catalog([], builtin_commands, unlisted=UNLISTED)
        self._starting = None  # the first start, while it goes on

    async def start(self, grace=START_GRACE):
        """Load every service and start them; return when all have started, or
        after ``grace`` seconds while the slow ones go on starting."""
        log.info("loading services from %s", ", ".join(map(str, self.directories)) or "nowhere")
        scans = [import_file(path) for path in service_files(self.directories)]
        made, failures = self._make(scans, reserved=set())
        for name, failure in self._unused_tables(made, failures).items():
            log.warning("%s: %s", name, failure.reason)
            failures[name] = failure
        self._publish(made, failures)  # listed at once; each says "starting" until it runs
        self._starting = asyncio.get_running_loop().create_task(self._first_start(made))
        done, _ = await asyncio.wait({self._starting}, timeout=grace)
        refused = [name for name, failure in self.catalog.failures.items() if failure.refused]
        if refused:  # fail closed: the server must not run without these
            reasons = [self.catalog.failures[name].reason.removeprefix("failed to start: ")
                       for name in refused]
            await self.stop()
            raise ConfigError("; ".join(f"{name}: {reason}"
                                        for name, reason in zip(refused, reasons)))
        if not done:
            slow = [s.name for s in made if s.instance.state is State.STARTING]
            log.warning("still starting after %g s: %s; accepting connections meanwhile",
                        grace, " ".join(slow))

    async def _first_start(self, made):
        started, _ = await self._start_all(made, publish=True)
        log.info("services running: %s", " ".join(s.name for s in started) or "none")

    async def _settled(self):
        """Let the first start end (each start() is bounded) before changing anything."""
        if self._starting is not None:
            await asyncio.wait({self._starting})

    async def stop(self):
        await self._settled()
        await self._stop(list(self.catalog.services.values()))
        self._publish([], {})

    async def restart(self, name=None):
        """Reload one service, or all; the report for the client."""
        await self._settled()
        if name is None:
            return await self._restart_all()
        return await self._restart_one(name.lower())

    async def _restart_all(self):
        old = list(self.catalog.services.values())
        scans = [import_file(path) for path in service_files(self.directories)]
        broken = {scan.path: scan.error for scan in scans if scan.error}
        kept = [s for s in old if s.path in broken]
        await self._stop([s for s in old if s.path not in broken], "restarting")
        reserved = {s.name for s in kept}
        made, failures = self._make(
            [scan for scan in scans if not (scan.error and scan.path in {s.path for s in kept})],
            reserved)
        started, failed = await self._start_all(made)
        failures.update(failed)
        order = {scan.path: index for index, scan in enumerate(scans)}
        running = sorted(kept + started, key=lambda s: order.get(s.path, len(order)))
        failures.update(self._unused_tables(running, failures))
        self._publish(running, failures)
        for loaded in kept:  # the loader has logged why
            log.warning("%s: kept running the old code", loaded.name)
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
        if path is None:  # not a service at all: a [service.NAME] table naming none
            raise errors.CommandError(f"{name} {failure.reason}; there is nothing to restart")
        scan = import_file(path)
        if scan.error and current is not None:
            log.warning("%s: kept running the old code", name)  # the loader has logged why
            return f"{name}: kept running the old code: {scan.error}"
        if current is not None or not failure.whole_file:
            scan.classes = [cls for cls in scan.classes if service_name(cls) == name]
        others = [s for s in self.catalog.services.values() if s is not current]
        if current is not None:
            await self._stop([current], "restarting")
        made, failures = self._make([scan], {s.name for s in others})
        started, failed = await self._start_all(made)
        failures.update(failed)
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

    def _make(self, scans, reserved):
        """Instantiate the classes found; returns (made, failures)."""
        made, failures = [], {}
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
                loaded = self._make_one(cls, name, scan.path, failures)
                if loaded is not None:
                    reserved.add(name)
                    made.append(loaded)
        return made, failures

    def _running(self, name):
        """SService.sibling: service NAME's instance while it runs."""
        loaded = self.catalog.services.get(name)
        if loaded is None or loaded.instance.state is not State.RUNNING:
            return None
        return loaded.instance

    def _name_problem(self, name, reserved):
        if not VALID_NAME.match(name):
            return "a service name is letters, digits, '_', '.', '-' (64 at most)"
        if name in self.builtin_commands:
            return "that name is a built-in command"
        if name in reserved:
            return "another service already has that name"
        return None

    def _make_one(self, cls, name, path, failures):
        try:
            # options first, so __init__ can read its settings: its own copy
            instance = cls.__new__(cls)
            instance.options = dict(self.options.get(name, {}))
            instance.config_file = self.config_file
            instance.kept = self._kept.setdefault(name, {})
            instance._siblings = self._running
            instance._state = State.NEW  # (see SService: the runner reads it on every command)
            instance.__init__()
            commands = commands_of(cls)
        except errors.SERVICE_FAILURES as exc:  # a broken service is a report
            log.exception("service %s could not be created", name)
            failures[name] = Failure(path, f"failed to load: {errors.describe_exception(exc)}")
            return None
        return Loaded.wrap(name, instance, commands, path)

    async def _start_all(self, made, publish=False):
        """Start services at once; returns (started, {name: Failure} of the rest).
        With ``publish`` (they are in the catalog already), each failure leaves
        the catalog as it happens."""
        failed = {}

        async def start(loaded):
            reason = await self._start(loaded)
            if reason is None:
                return
            failed[loaded.name] = failure = Failure(loaded.path, f"failed to start: {reason}",
                                                    refused=isinstance(reason, Refusal))
            if publish:
                self._publish([s for s in self.catalog.services.values() if s is not loaded],
                              {**self.catalog.failures, loaded.name: failure})

        # Most services have no start(): they start at once, without a task each.
        for loaded in made:
            if not overrides(loaded.instance, "start"):
                await start(loaded)
        await asyncio.gather(*(start(loaded) for loaded in made
                               if overrides(loaded.instance, "start")))
        return [loaded for loaded in made if loaded.name not in failed], failed

    async def _start(self, loaded):
        """Start one service; None, or why it failed (it is stopped again)."""
        reason = await start_service(loaded.instance, timeout=self.hook_timeout,
                                     executor=self.executor)
        loaded.started = time.time()
        if reason is not None:
            await stop_service(loaded.instance, timeout=self.hook_timeout,
                               executor=self.executor)
        return reason

    async def _stop(self, services, why="stopping"):
        for loaded in reversed(services):
            for stream in list(loaded.streams):  # it would go on sending from old code
                stream.end(f"{loaded.name} is {why}")
            await stop_service(loaded.instance, timeout=self.hook_timeout, executor=self.executor,
                               restarting=why == "restarting")

    def _unused_tables(self, made, failures):
        """A [service.NAME] table naming no service is a mistake: a typo, or a
        service that is not installed.  It shows with the failures."""
        known = {loaded.name for loaded in made} | failures.keys()
        return {name: Failure(None, f"has a [service.{name}] table in the config, but no "
                                    "service of that name is loaded")
                for name in self.options.keys() - known}

    def _publish(self, running, failures):
        self.catalog = Catalog(running, self.builtin_commands, failures, UNLISTED)
