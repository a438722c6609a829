"""All the programs of one state directory: start order, changes, sessions, hand-over.

Rules:

1. ``restart proc`` leaves the Supervisor running (in the service's
   ``kept``); the new instance claims it and applies its configuration, so
   only the programs whose configuration changed restart.  The state
   directory stays the one it opened: changing it takes a server restart.
2. The state directory is locked while a Supervisor holds it, so a second
   smanager cannot take our programs for orphans; on opening, the programs a
   killed smanager left are killed (or adopted) before anything starts, so
   no program ever runs twice.
3. Programs start together; each one's driver first waits for what it
   ``depends_on`` to be RUNNING (starting those that are merely stopped).
   Stopping goes the other way: dependents first, level by level.
   A program stopped only because what it depends on was restarted is
   started again after it.
4. Sessions (instances of templates) are programs too, but configuration
   changes never touch them; they end with ``proc rm`` or the server.
5. Changes to the set of programs (update, run, rm) happen one at a time
   (``self.changing``), so two of them never interleave around their waits.
6. A program whose new table is broken keeps running as it was configured.
"""

import asyncio
import difflib
import logging

from .child import PIPE_GRACE
from .config_read import dependency_levels
from .orphans import sweep
from .policy import State
from .program import Program, ProgramError
from .spec import SpecError
from .statedb import StateDB

log = logging.getLogger("smanager.proc")
DOWN = {State.STOPPED, State.EXITED, State.FATAL}


class Supervisor:
    def __init__(self, config):
        self.config = config
        self.programs = {}  # name -> Program: configured ones, then sessions
        self.sessions = set()
        self.statedb = None
        self.adopted = {}  # name -> Record of a run left by a killed smanager
        self.changing = asyncio.Lock()  # rule 5
        self._session_number = 0

    @classmethod
    async def claim(cls, config, handed=None):
        """A Supervisor with ``config`` applied: the one ``handed`` over by
        the previous instance (rule 1), or a new one; and the report."""
        if handed is not None and handed.statedb is None and not handed.programs:
            handed = None  # it was idle: it holds nothing to hand over
        supervisor = handed or cls(config)
        if handed is None:
            await supervisor._open()
        elif handed.statedb is not None and config.state_dir != handed.config.state_dir:
            config.problems.append(f"state_dir: still {handed.config.state_dir}: a new "
                                   "state directory takes a restart of the server")
            config.state_dir = handed.config.state_dir
        report = await supervisor.apply(config)
        return supervisor, report

    async def _open(self, state_dir=None):
        state_dir = state_dir or self.config.state_dir
        if state_dir is None:
            return  # idle: nothing configured, nothing on disk
        self.statedb = StateDB(state_dir)  # StateDirBusy: rule 2
        left = self.statedb.records()
        lines, adopted = await sweep(left, self.config.orphans)
        for line in lines:
            log.warning("%s", line)
        self.adopted = {record.name: record for record in adopted}
        for record in left:
            if record.name not in self.adopted:
                self.statedb.forget(record.name)

    async def apply(self, config):
        """Make the configured programs match ``config``: add, remove, restart
        what changed, leave the rest alone.  One line per change."""
        async with self.changing:
            return await self._apply(config)

    async def _apply(self, config):
        if self.statedb is None and config.state_dir is not None:
            await self._open(config.state_dir)  # idle until now: lock it before anything runs
        old = {name: program for name, program in self.programs.items()
               if name not in self.sessions}
        new = dict(config.programs)
        kept = [name for name in old if name not in new and name in config.broken]
        for name in kept:  # rule 6
            new[name] = old[name].spec
            config.problems.append(f"program {name}: kept running as it was configured")
        removed = [name for name in old if name not in new]
        changed = [name for name in old if name in new and old[name].spec != new[name]]
        added = [name for name in new if name not in old]
        was_up = {name for name in changed if old[name].state not in DOWN}
        bystanders = self._up(self.dependents(changed) - set(removed) - set(changed))
        await self.stop_names(removed + changed)
        replaced = {name: self.programs.pop(name) for name in removed + changed}
        for program in replaced.values():
            program.close()
        self.config = config
        fresh = [name for name in new if name in added or name in changed]
        for name in fresh:
            self.programs[name] = self._program(new[name])
            if name in replaced:  # `proc why` keeps the exits from before the change
                self.programs[name].policy.history.extend(replaced[name].policy.history)
        # keep config order, sessions last
        self.programs = {**{name: self.programs[name] for name in new},
                         **{name: self.programs[name] for name in self.sessions}}
        for name in fresh:
            record = self.adopted.pop(name, None)
            if record is not None:
                self.programs[name].adopt(record)
            elif new[name].autostart or name in was_up:
                self.programs[name].begin()
        for name, record in self.adopted.items():  # no longer configured: do not keep it
            log.warning("%s: adopted pid %d is not configured any more; stopping it",
                        name, record.pid)
        await self._stop_unclaimed()
        self._begin_again(bystanders)
        return ([f"{name}: added" for name in added] + [f"{name}: removed" for name in removed]
                + [f"{name}: changed, restarted" if name in was_up or new[name].autostart
                   else f"{name}: changed" for name in changed]
                + [f"{name}: restarted after {', '.join(self.programs[name].spec.depends_on)}"
                   for name in sorted(bystanders)])

    def _up(self, names):
        return {name for name in names
                if name in self.programs and self.programs[name].state not in DOWN}

    def _begin_again(self, names):
        """Start again the programs stopped only for what they depend on (rule 3)."""
        for name in names:
            program = self.programs.get(name)
            if program is not None and not program.closed:
                program.begin()

    async def _stop_unclaimed(self):
        leftovers, self.adopted = self.adopted, {}
        for name, record in leftovers.items():
            await sweep([record], "kill")
            if self.statedb is not None:
                self.statedb.forget(name)

    def _program(self, spec):
        return Program(spec, statedb=self.statedb, dependencies=self._dependencies)

    async def _dependencies(self, spec):
        """Rule 3: return once every program ``spec`` depends on is RUNNING."""
        for name in spec.depends_on:
            program = self.programs.get(name)
            if program is None:
                continue  # configuration checked it; a removed one no longer binds
            if program.state in (State.STOPPED, State.EXITED):
                program.begin()
            await program.wait_for({State.RUNNING})

    def begin_dependencies(self, program, seen=None):
        """An admin's start: start what it depends on that is down, FATAL too
        (the admin asks for it), so the start does not wait on nothing."""
        seen = set() if seen is None else seen
        for name in program.spec.depends_on:
            other = self.programs.get(name)
            if other is None or name in seen:
                continue
            seen.add(name)
            self.begin_dependencies(other, seen)
            if other.state in DOWN:
                other.begin()

    # -- commands ----------------------------------------------------------------------

    def get(self, name):
        program = self.programs.get(name)
        if program is None:
            raise ProgramError(no_such_program(name, self.programs))
        return program

    def dependents(self, names):
        """Every program that depends, directly or not, on one of ``names``."""
        found, todo = set(), set(names)
        while todo:
            name = todo.pop()
            for other in self.programs.values():
                if name in other.spec.depends_on and other.name not in found:
                    found.add(other.name)
                    todo.add(other.name)
        return found - set(names)

    async def restart_names(self, names, timeout):
        """Stop these (and their dependents), start these, and start again the
        dependents that were up; a line per program, ProgramErrors as values."""
        bystanders = self._up(self.dependents(names))
        await self.stop_names(names)
        results = await asyncio.gather(*(self.programs[name].start(timeout) for name in names),
                                       return_exceptions=True)
        self._begin_again(bystanders)
        return results, sorted(bystanders)

    async def stop_names(self, names):
        """Stop these programs and their dependents, dependents first (rule 3)."""
        targets = set(names) | self.dependents(names)
        specs = {name: self.programs[name].spec for name in targets if name in self.programs}
        lines = []
        for level in reversed(dependency_levels(specs)):
            lines += await asyncio.gather(*(self.programs[name].stop() for name in level))
        return lines

    def stop_budget(self, margin=5.0, floor=10.0):
        """Seconds stopping everything may take: per dependency level, its
        longest stop_timeout and the wait for pipes; never less than ``floor``
        (the server's default), sessions included."""
        specs = {name: program.spec for name, program in self.programs.items()}
        levels = dependency_levels(specs)
        return max(floor, margin + sum(max(specs[name].stop_timeout for name in level)
                                       + PIPE_GRACE for level in levels))

    async def stop_all(self):
        return await self.stop_names(list(self.programs))

    async def run_session(self, template_name, values, timeout):
        """A new program from a template (PyCloud's create); its id.  One that
        does not start is removed again: the error says why."""
        async with self.changing:
            session_id = self._new_session(template_name, values)
        program = self.programs[session_id]
        try:
            await program.start(timeout)
        except ProgramError as exc:
            await self.remove_session(session_id)
            raise ProgramError(f"session {session_id} did not start and is removed: "
                               f"{str(exc).removeprefix(session_id + ' ')}") from None
        return session_id

    def _new_session(self, template_name, values):
        template = self.config.templates.get(template_name)
        if template is None:
            raise ProgramError(no_such_program(template_name, self.config.templates, "template"))
        if len(self.sessions) >= self.config.max_sessions:
            raise ProgramError(f"{len(self.sessions)} sessions run already "
                               f"(max_sessions = {self.config.max_sessions}); proc rm one")
        number = self._session_number + 1
        while f"{template_name}-{number}" in self.programs:
            number += 1
        session_id = f"{template_name}-{number}"
        try:
            spec = template.instantiate(session_id, values)
        except SpecError as exc:
            raise ProgramError(str(exc)) from None
        self._session_number = number  # ids count only the sessions that were made
        self.programs[session_id] = self._program(spec)
        self.sessions.add(session_id)
        return session_id

    async def remove_session(self, session_id):
        """Stop a session, forget it, and delete its log files."""
        async with self.changing:
            if session_id not in self.sessions:
                raise ProgramError(no_such_program(session_id, self.sessions, "session"))
            program = self.programs[session_id]
            line = await program.stop()
            self.programs.pop(session_id, None)
            self.sessions.discard(session_id)
            program.close()
            program.output.delete_files()
            return line.replace("STOPPED", "removed", 1)

    async def close(self):
        """The server is stopping: every program stops, then the state directory
        is free.  If the time to stop runs out, every group left is KILLed."""
        try:
            await self.stop_all()
        except asyncio.CancelledError:
            for program in self.programs.values():
                program.kill_now()
            raise
        finally:
            for program in self.programs.values():
                program.close()
            if self.statedb is not None:
                self.statedb.close()
        self.programs.clear()


def no_such_program(name, known, kind="program"):
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    listing = "; try 'proc list'" if kind != "template" else ""
    return f"no {kind} named {name!r}{hint}{listing if not close else ''}"
