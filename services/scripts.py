"""scripts: directories of admin scripts (Pyjojo's format, unchanged) as remote commands.

The engine is smanager.supervise (jojo reads the scripts, scriptruns and
scriptrun run them, runhistory records them); this file is its command
surface.  Directories are [service.scripts] dir; see the README's "Scripts".
"""

import asyncio
import logging
import math

from smanager import CommandError, Final, Shown, SService, filtered, level
from smanager.supervise import scriptreport as report
from smanager.supervise import watcher
from smanager.supervise.checks import SpecError
from smanager.supervise.jojo import matches, scan
from smanager.supervise.scriptrun import reserved_problem
from smanager.supervise.scriptruns import (
    CLOSE_TIMEOUT,
    Refused,
    ScriptRuns,
    current_table,
    read_settings,
)

log = logging.getLogger("smanager.scripts")
IDLE = "no script directories are configured (set dir in [service.scripts])"
LEVELS = ("none", "read", "operate", "admin")  # a connection's, lowest first
YES, NO = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class Scripts(SService):
    """Run admin scripts (Pyjojo's format): list, show, run, runs, log, tail, kill

    Scripts are the executable files in [service.scripts] dir; each one's
    '# -- jojo --' block declares its parameters, tags, lock and level.
    """

    # Every command bounds its own waits; run and tail stream until the run ends.
    command_timeout = math.inf
    hook_timeout = CLOSE_TIMEOUT + 5  # stop() waits for the live runs to be stopped

    def __init__(self):
        self.runs = None  # ScriptRuns; None while idle
        self.dirs = ()
        self.scripts = {}  # name -> Script
        self.problems = {}  # name (or path) -> why it cannot be used

    async def start(self):
        handed = self.kept.pop("runs", None)  # live runs of the instance before a restart
        try:
            settings = read_settings(current_table(self.options, self.config_file))
        except SpecError as exc:
            if handed is None:
                raise CommandError(str(exc)) from None
            log.warning("scripts: kept the previous configuration: %s", exc)
            settings = handed.settings
        if handed is not None and (handed.live or handed.settings.state_dir == settings.state_dir):
            for problem in handed.adopt(settings):
                log.warning("scripts: %s", problem)
            self.runs = handed
        else:
            if handed is not None:
                await handed.close()
            if settings.dirs:
                try:
                    self.runs = ScriptRuns(settings)
                except SpecError as exc:
                    raise CommandError(str(exc)) from None
        self.dirs = settings.dirs
        if self.dirs:
            watcher.install()  # a pidfd per run, not a thread per run (Python 3.11)
            await self._scan()

    async def stop(self):
        if self.runs is None:
            return
        if self.restarting:  # the next instance takes the live runs over
            self.kept["runs"] = self.runs
            return
        await self.runs.close()

    async def _scan(self):
        scripts, problems = await asyncio.to_thread(scan, list(self.dirs))
        for name, script in list(scripts.items()):
            problem = reserved_problem(script)
            if problem:
                problems[name] = problem
                del scripts[name]
        for name, why in problems.items():
            log.warning("scripts: %s cannot be used: %s", name, why)
        self.scripts, self.problems = dict(sorted(scripts.items())), problems

    # -- looking ---------------------------------------------------------------------------

    @level("read")
    async def cmd_list(self, tags="", any="", **more):
        """Scripts: name, description, tags (tags=a,b all of them, any=a,b one, not=a none)"""
        unknown = sorted(set(more) - {"not"})
        if unknown:
            raise CommandError(f"unknown parameter {unknown[0]!r} (it takes: tags, any, not)")
        chosen = [script for script in self.scripts.values()
                  if matches(script, _listed(tags), _listed(any), _listed(more.get("not", "")))]
        return report.scripts_table(chosen, self.problems, None if self.dirs else IDLE)

    @level("read")
    async def cmd_show(self, name):
        """A script in full: description, parameters, tags, output, lock, timeout, level"""
        return report.script_details(self._script(name))

    @level("read")
    async def cmd_runs(self, name=None, n: int = 20):
        """The last N runs (of script NAME): id, script, user, start, duration, status"""
        runs = self._runs()
        rows = runs.history.runs(name, n)
        for row in rows:
            live = runs.running(row["id"])
            if live is not None:
                row["status"] = live.state
        return report.runs_table(rows)

    @level("read")
    async def cmd_log(self, id: int, session):
        """A run's output and result (a live run's output so far)"""
        runs = self._runs()
        row = runs.history.get(id)
        if row is None:
            raise CommandError(f"no run {id}")
        self._check_level(session, row["script"])
        live = runs.running(id)
        if live is None:
            return report.run_log(row)
        row["status"] = live.state
        follower = live.output.follow()
        lines = []
        while batch := follower.ready_now():
            lines += batch
        follower.close()
        return report.run_log(row, lines)

    @level("read")
    async def cmd_tail(self, id: int, session):
        """Follow a run from any session: its output so far, then as it comes, then its
        result; Ctrl-C only stops following"""
        runs = self._runs()
        live = runs.running(id)
        if live is None:
            row = runs.history.get(id)
            if row is None:
                raise CommandError(f"no run {id}")
            self._check_level(session, row["script"])
            if row["result"] is None:
                raise CommandError(f"run {id} is {row['status']}: its output was not kept")
            if lines := report.recorded_lines(row["result"]):
                yield report.chunk(lines)
            yield Final(report.ending(row["result"]))
            return
        self._check_level(session, live.script.name, live.script)
        follower = live.output.follow()
        try:
            async for line in follower:
                yield report.chunk([line] + follower.ready_now())
            yield Final(report.ending(await live.ended()))
        finally:
            follower.close()  # only this client stops following

    # -- acting ------------------------------------------------------------------------------

    @level("read")  # and the script's own level, checked once it is named
    @filtered(by=lambda service, words: service._secret_words(words))
    async def cmd_run(self, *name_and_params, session):
        """Run a script: run NAME [KEY=VALUE...] [bg=true]; streams its output, then its result

        In the foreground, Ctrl-C or leaving stops the script (TERM, 5 s, KILL);
        bg=true answers RUN ID at once and leaves it running (scripts tail ID).
        """
        name, given, background = _run_words(name_and_params)
        script = self._script(name)
        self._check_level(session, script.name, script)
        try:
            run = self._runs().start(script, given, user=session.user)
        except Refused as exc:
            raise CommandError(str(exc)) from None
        if background:
            yield Final(Shown({"run": run.id}, f"RUN {run.id}"))
            return
        follower = run.output.follow()
        try:
            async for line in follower:
                yield report.chunk([line] + follower.ready_now())
            yield Final(report.ending(await run.ended()))
        finally:
            follower.close()
            # Not when the service is restarting: the next instance keeps the run.
            if run.state != "ended" and self.state.value == "running":
                run.kill(f"the client left or pressed Ctrl-C ({session.user or session.peer})")

    async def cmd_kill(self, id: int, session):
        """Stop a run (TERM, 5 s, KILL; a queued one never starts); says how it ended"""
        runs = self._runs()
        live = runs.running(id)
        if live is None:
            row = runs.history.get(id)
            raise CommandError(f"no run {id}" if row is None
                               else f"run {id} has already ended: {row['status']}")
        self._check_level(session, live.script.name, live.script)
        live.kill(f"scripts kill by {session.user or session.peer}")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                result = await asyncio.shield(live.ended())
        except TimeoutError:
            raise CommandError(f"run {id} is still stopping after {CLOSE_TIMEOUT:g} s") from None
        return Shown(result, f"run {id}: {report.ending_lines(result)[0]}")

    @level("admin")  # it changes what can run
    async def cmd_reload(self):
        """Read the script directories again: what was added, removed, cannot be used"""
        if not self.dirs:
            raise CommandError(IDLE)
        before = set(self.scripts)
        await self._scan()
        added, removed = sorted(set(self.scripts) - before), sorted(before - set(self.scripts))
        lines = [f"{len(self.scripts)} scripts"] + [f"added: {name}" for name in added] \
            + [f"removed: {name}" for name in removed] \
            + [f"unusable: {name}: {why}" for name, why in sorted(self.problems.items())]
        return Shown({"scripts": list(self.scripts), "added": added, "removed": removed,
                      "unusable": self.problems}, "\n".join(lines))

    # -- helpers -----------------------------------------------------------------------------

    def _runs(self):
        if self.runs is None:
            raise CommandError(IDLE)
        return self.runs

    def _script(self, name):
        script = self.scripts.get(name)
        if script is None:
            raise CommandError(IDLE if not self.dirs
                               else report.no_such_script(name, self.scripts, self.problems))
        return script

    def _check_level(self, session, name, script=None):
        """A script's level is needed to run it, see its output or kill it (operate
        for a script no longer known)."""
        script = script or self.scripts.get(name)
        needed = script.level if script is not None else "operate"
        if LEVELS.index(session.level) < LEVELS.index(needed):
            raise CommandError(f"script {name} needs the {needed} level; "
                               f"{session.user or 'this connection'} has {session.level}")

    def _secret_words(self, words):
        """For the audit trail: the words of 'scripts run NAME ...' that may hold a
        secret: every KEY=VALUE but bg and the script's plain parameters (all of
        them for an unknown script: nothing says where its secrets are)."""
        if not words:
            return ()
        script = self.scripts.get(words[0])
        plain = {"bg"} | ({param.name for param in script.params if not script.is_secret(param.name)}
                          if script is not None else set())
        return [word for word in words[1:] if word.partition("=")[0] not in plain]


def _run_words(words):
    """'NAME KEY=VALUE... [bg=true]' -> (NAME, {KEY: VALUE}, bg)."""
    if not words:
        raise CommandError("which script? scripts run NAME [KEY=VALUE...] [bg=true]")
    given = {}
    for position, word in enumerate(words[1:], 2):
        key, equals, value = word.partition("=")
        if not equals or not key:  # not quoted back: it may be a secret given without its name
            raise CommandError(f"word {position} is not KEY=VALUE: a script's parameters are named")
        if key in given:
            raise CommandError(f"{key} given twice")
        given[key] = value
    background = given.pop("bg", "false")
    if background.lower() not in YES + NO:
        raise CommandError(f"bg must be true or false, not {background!r}")
    return words[0], given, background.lower() in YES


def _listed(text):
    return [item.strip() for item in text.split(",") if item.strip()]
