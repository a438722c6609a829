"""The scripts service's settings, and its runs: accepted, queued, running, ended, recorded.

Rules:

1. ``read_settings(table)`` checks the ``[service.scripts]`` table: ``dir`` (a
   directory or a list of them, absolute), ``state_dir`` [proc's default],
   ``max_concurrent`` [4], ``max_queued`` [100], ``output_cap`` bytes
   [1000000], ``keep_days`` [30], ``keep_runs`` per script [1000].  Any other
   key is a SpecError naming it.  Without ``dir`` the service is idle: nothing
   here is made, and no disk is touched.
2. ``ScriptRuns(settings)`` opens the history (state_dir/state.db, shared with
   proc), marks the runs a killed server left as lost, and prunes.  The
   history's writes are committed together every FLUSH_AFTER seconds (a
   trivial run's two commits were a sixth of its time in the server).
3. ``start(script, given, user)`` is synchronous: the parameters are checked,
   then the run enters Admission at once (an Entry: let in, queued, or refused
   with Admission's own Busy words), and only then is it recorded: a refused
   run leaves no trace.  Refused says why, in one line.  The run gets its id
   and its own task; it is ``live`` until it ends.  Every PRUNE_EVERY ended
   runs, the history is pruned.
4. ``close()`` stops every live run (a queued one never starts) and waits for
   each to be recorded, then closes the history.
5. ``adopt(settings)``: a restarted service takes these runs over; the new
   limits apply at once (Admission's rule 5: a larger max_concurrent starts
   the runs already queued first).  The state directory cannot change while
   runs are live.
"""

import asyncio
import logging
import sqlite3
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..config import ConfigError, read_file
from .admission import Admission, Busy
from .checks import CheckedTable, SpecError, check_keys
from .config_read import default_state_dir
from .runhistory import RunHistory
from .runoutput import RunOutput
from .scriptrun import (
    STOP_GRACE,
    ParamError,
    ScriptRun,
    check_params,
    environment,
    masked,
)

log = logging.getLogger("smanager.scripts")

KEYS = frozenset({"dir", "state_dir", "max_concurrent", "max_queued", "output_cap",
                  "keep_days", "keep_runs"})
PRUNE_EVERY = 100
FLUSH_AFTER = 0.05  # seconds: the history's writes are committed together this often
CLOSE_TIMEOUT = STOP_GRACE + 5  # a run's TERM, grace, KILL and its pipes' grace, with room


class Refused(Exception):
    """A run that cannot be started; one line."""


@dataclass(frozen=True)
class Settings:
    dirs: tuple[str, ...]  # empty: idle
    state_dir: str | None  # None when idle
    max_concurrent: int = 4
    max_queued: int = 100
    output_cap: int = 1_000_000
    keep_days: float = 30.0
    keep_runs: int = 1000


def current_table(options: Mapping, config_file: str | None = None,
                  service: str = "scripts") -> Mapping:
    """The [service.SERVICE] table as it is now: re-read from the server's config
    file when there is one (so a restart of the service follows edits), else OPTIONS."""
    if not config_file:
        return options
    try:
        return read_file(config_file).get("service", {}).get(service, {})
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def read_settings(table: Mapping) -> Settings:
    """The [service.scripts] table, checked (rule 1); SpecError, one line."""
    check_keys("scripts", table, KEYS)
    checked = CheckedTable("scripts", table)
    listed = table.get("dir", [])
    listed = [listed] if isinstance(listed, str) else listed
    if not isinstance(listed, list):
        checked.fail("dir", "must be a directory or a list of them")
    dirs = tuple(CheckedTable("scripts", {"dir": item}).path("dir") for item in listed)
    return Settings(
        dirs=dirs,
        state_dir=(checked.path("state_dir") or default_state_dir()) if dirs else None,
        max_concurrent=checked.integer("max_concurrent", 4, 1),
        max_queued=checked.integer("max_queued", 100, 0),
        output_cap=checked.integer("output_cap", 1_000_000, 1),
        keep_days=checked.number("keep_days", 30, above=0),
        keep_runs=checked.integer("keep_runs", 1000, 1))


class ScriptRuns:
    """The runs of one scripts service (rules 2-5)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        try:
            loop = asyncio.get_running_loop()
            self.history = RunHistory(settings.state_dir, keep_days=settings.keep_days,
                                      keep_per_script=settings.keep_runs,
                                      defer=lambda flush: loop.call_later(FLUSH_AFTER, flush))
        except (OSError, sqlite3.Error) as exc:
            raise SpecError(f"scripts: cannot keep runs in state_dir {settings.state_dir}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
        self.admission = Admission(settings.max_concurrent, settings.max_queued)
        self.live = {}  # run id -> ScriptRun, until it has ended
        self._tasks = set()
        self._ended_since_prune = 0
        lost = self.history.mark_lost()
        if lost:
            log.warning("scripts: %d run(s) were still running when the last server stopped: "
                        "marked lost", lost)
        self.history.prune()

    def adopt(self, settings: Settings) -> list[str]:
        """Take new settings (rule 5); the problems with them, one line each."""
        problems = []
        if settings.state_dir != self.settings.state_dir:
            problems.append(f"state_dir: still {self.settings.state_dir} while runs are live; "
                            "restart scripts again once they have ended")
            settings = replace(settings, state_dir=self.settings.state_dir)
        self.settings = settings
        self.history.keep_days, self.history.keep_per_script = settings.keep_days, settings.keep_runs
        self.admission.set_limits(settings.max_concurrent, settings.max_queued)
        return problems

    def start(self, script, given: dict[str, str], *, user: str | None) -> ScriptRun:
        """Check, admit, record and start one run (rule 3); Refused if it cannot."""
        try:
            values = check_params(script, given)
            run = ScriptRun(script, user=user, since=time.strftime("%H:%M:%S"),
                            output=RunOutput(combined=script.output == "combined",
                                             cap=self.settings.output_cap))
            entry = Entry(self.admission, script, run)
            if entry.inside:
                run.state = "running"  # its turn has come: it starts when its task runs
        except (ParamError, Busy) as exc:
            raise Refused(str(exc)) from None
        shown = masked(script, values)
        run.id = self.history.begin(script.name, user=user, params=shown)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("run %d: %s by %s %s", run.id, script.name, user or "-",
                      " ".join(f"{key}={value}" for key, value in shown.items()))
        env, stdin = environment(script, values, run.id)
        self.live[run.id] = run
        task = asyncio.get_running_loop().create_task(
            run.drive(entry, self.history, env, stdin), name=f"scripts run {run.id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._ended(run, done))
        return run

    def running(self, run_id: int) -> ScriptRun | None:
        """The run with this id if it is queued or running (not once it has ended)."""
        run = self.live.get(run_id)
        return run if run is not None and run.state != "ended" else None

    def _ended(self, run, task):
        self._tasks.discard(task)
        self.live.pop(run.id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("run %d of %s failed", run.id, run.script.name, exc_info=task.exception())
        self._ended_since_prune += 1
        if self._ended_since_prune >= PRUNE_EVERY and self.history is not None:
            self._ended_since_prune = 0
            try:
                self.history.prune()
            except Exception:
                log.exception("scripts: pruning the run history failed")

    async def close(self):
        """Stop every live run, wait until each is recorded, close the history (rule 4)."""
        for run in list(self.live.values()):
            run.kill("the server is stopping")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT)
        self.history.close()
        self.history = None


class Entry:
    """One run's stay in Admission, entered now, in the request, rather than when
    the run's task first runs (so two requests in a row see each other):
    ``Entry(...)`` takes Admission.enter's first step at once -- Busy, let in, or
    queued --; ``wait()``, in the run's task, waits for its turn (a cancellation
    takes it out of the queue, Admission's rule 4); ``leave()`` gives back what
    it holds, or its place in the queue, and is synchronous."""

    def __init__(self, admission, script, run):
        self._gate = admission.enter(script.name, script.lock, run, started_at_text=run.since)
        self._entering = self._gate.__aenter__()
        try:
            self._waiting_on = self._entering.send(None)  # Busy comes out of here
            self.inside = False
        except StopIteration:
            self._waiting_on, self.inside = None, True

    async def wait(self):
        if not self.inside and self._waiting_on is not None:
            waiting_on, self._waiting_on = self._waiting_on, None
            await _resumed(self._entering, waiting_on)
            self.inside = True

    def leave(self):
        if self.inside:
            self.inside = False
            try:
                self._gate.__aexit__(None, None, None).send(None)  # never waits
            except StopIteration:
                pass
        elif self._waiting_on is not None:
            self._waiting_on = None
            try:
                self._entering.throw(asyncio.CancelledError())
            except (asyncio.CancelledError, StopIteration):
                pass


@types.coroutine
def _resumed(coroutine, waiting_on):
    """Carry on a coroutine whose first step left it waiting on ``waiting_on``, in the
    awaiting task: as core/eager.py's resume (the engines do not import the core)."""
    try:
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation: the coroutine handles it
                waiting_on = coroutine.throw(exc)
            else:
                waiting_on = coroutine.send(sent)
    except StopIteration as stop:
        return stop.value
