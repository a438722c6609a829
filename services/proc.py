"""proc: keep the programs an admin runs alive, and show how they are doing.

The engine is smanager.supervise; this file is its command surface.  Programs
are configured under [service.proc.programs.NAME] (and one NAME.toml each in
programs_dir); see the README's "Supervising programs".
"""

import asyncio
import logging
import math
import os
import signal as signals

from smanager import CommandError, Shown, SService, StartRefused, level
from smanager.supervise import report, watcher
from smanager.supervise.config_read import read_current
from smanager.supervise.policy import State
from smanager.supervise.program import ProgramError
from smanager.supervise.spec import SpecError
from smanager.supervise.statedb import StateDirBusy
from smanager.supervise.supervisor import Supervisor

log = logging.getLogger("smanager.proc")
WAITABLE = {"running": State.RUNNING, "ready": State.RUNNING, "stopped": State.STOPPED,
            "exited": State.EXITED, "fatal": State.FATAL, "backoff": State.BACKOFF,
            "starting": State.STARTING, "stopping": State.STOPPING}


class Proc(SService):
    """Supervise programs: start, stop, restart, logs, why they died

    Programs are [service.proc.programs.NAME] tables in the config file, or
    NAME.toml files in programs_dir.  'all' names every program.
    """

    # Every command bounds its own waits (timeout=, stop_timeout); tail runs
    # until the client stops it.
    command_timeout = math.inf

    def __init__(self):
        self.supervisor = None
        self.problems = []

    @property
    def hook_timeout(self):
        """start() and stop() may take as long as stopping every program does
        (a restart stops the changed ones), sessions included, read each time."""
        supervisor = self.supervisor or self.kept.get("supervisor")
        return supervisor.stop_budget() if supervisor is not None else None

    async def start(self):
        watcher.install()  # a pidfd per child, not a thread per child (Python 3.11)
        handed = self.kept.get("supervisor")
        try:
            config = self._read_config()
        except SpecError as exc:
            if handed is None:
                raise CommandError(str(exc)) from None
            # A broken file must not cost the running programs: keep what runs.
            log.warning("proc: kept the previous configuration: %s", exc)
            config = handed.config
            config.problems = [f"kept the previous configuration: {exc}"]
        for problem in config.problems:
            log.warning("proc: %s", problem)
        try:
            self.supervisor, changes = await Supervisor.claim(config, handed)
        except StateDirBusy as exc:
            raise StartRefused(str(exc)) from None
        # Taken over only now: had anything above failed, the programs would
        # still be in kept for the next try (restart proc) to claim.
        self.kept.pop("supervisor", None)
        self.problems = config.problems
        for line in changes:
            log.info("proc: %s", line)

    async def stop(self):
        if self.supervisor is None:
            return
        if self.restarting:  # the next instance takes the programs over
            self.kept["supervisor"] = self.supervisor
            return
        await self.supervisor.close()

    def _read_config(self):
        return read_current(self.options, self.config_file)

    def _targets(self, name):
        if name == "all":
            return list(self.supervisor.programs)
        try:
            return [self.supervisor.get(name).name]
        except ProgramError as exc:
            raise CommandError(str(exc)) from None

    # -- looking -------------------------------------------------------------------------

    @level("read")
    async def cmd_list(self):
        """One row per program and session: state, pid, uptime, restarts, last exit, port"""
        rows = [report.row(program) for program in self.supervisor.programs.values()]
        return Shown(rows, report.table(rows, self.problems))

    @level("read")
    async def cmd_status(self, name):
        """A program in full: its row, command, pgid, next restart, ready check, logs"""
        program = self._program(name)
        details = report.details(program)
        return Shown(details, report.key_values(details))

    @level("read")
    async def cmd_why(self, name):
        """The last exits: when, uptime, status or signal, the delay chosen, giving up"""
        program = self._program(name)
        exits = [report.exit_fields(end) for end in program.policy.history]
        return Shown(exits, report.why_text(program, exits))

    @level("read")
    async def cmd_logs(self, name, n: int = 50, stream="both"):
        """The last N lines a program wrote (stream=out, err or both)"""
        program = self._program(name)
        if stream not in ("out", "err", "both"):
            raise CommandError(f"stream must be out, err or both, not {stream!r}")
        lines = program.output.last(min(max(n, 0), program.spec.log_lines), stream)
        return Shown([report.line_fields(line) for line in lines],
                     "\n".join(report.log_line(line) for line in lines))

    @level("read")
    async def cmd_tail(self, name, stream="both"):
        """Stream new lines as the program writes them, until Ctrl-C (it keeps running)"""
        program = self._program(name)
        if stream not in ("out", "err", "both"):
            raise CommandError(f"stream must be out, err or both, not {stream!r}")
        follower = program.output.follow()
        try:
            async for line in follower:
                batch = [line] + follower.ready_now()
                batch = [item for item in batch
                         if stream == "both" or item.stream in (stream, "sys")]
                if batch:
                    yield Shown([report.line_fields(item) for item in batch],
                                "\n".join(report.log_line(item) for item in batch))
        finally:
            follower.close()

    @level("read")
    async def cmd_wait(self, name, state="running", timeout: float = 30):
        """Wait until a program is in STATE (running, stopped, exited, fatal...): one line"""
        program = self._program(name)
        wanted = WAITABLE.get(state.lower())
        if wanted is None:
            raise CommandError(f"state must be one of {', '.join(WAITABLE)}, not {state!r}")
        settled = {State.FATAL, State.EXITED, State.STOPPED} - {wanted}
        try:
            got = await program.wait_for({wanted} | settled, timeout)
        except TimeoutError:
            raise CommandError(f"{program.name} is {program.state.value}, not {wanted.value}, "
                               f"after {timeout:g} s") from None
        if got is not wanted:
            raise CommandError(f"{program.name} is {got.value}: {program.why_not()}")
        return self._said([f"{program.name}: {got.value}"])

    @level("read")
    async def cmd_templates(self):
        """The templates 'proc run' can start, with the parameters each takes"""
        templates = self.supervisor.config.templates
        rows = [{"template": name, "params": [p.name for p in template.params]}
                for name, template in templates.items()]
        return Shown(rows, "\n".join(f"{row['template']}: {' '.join(row['params']) or '-'}"
                                     for row in rows) or "no templates configured")

    @level("read")
    async def cmd_load(self):
        """This host's load, for placing sessions: 1-minute load per CPU, programs running"""
        load1, cpus = os.getloadavg()[0], os.cpu_count() or 1
        running = sum(p.state is State.RUNNING for p in self.supervisor.programs.values())
        value = {"load1": load1, "cpus": cpus, "score": round(load1 / cpus, 3),
                 "running": running}
        return Shown(value, report.key_values(value))

    # -- acting --------------------------------------------------------------------------

    async def cmd_start(self, name, timeout: float = 60):
        """Start a program (or all) and wait until it runs, or say why it did not"""
        def start(program):
            self.supervisor.begin_dependencies(program)  # an admin's start: FATAL ones too
            return program.start(timeout)
        return await self._each(name, start)

    async def cmd_stop(self, name):
        """Stop a program (or all), programs that depend on it first"""
        try:
            targets = self._targets(name)
            return self._said(await self.supervisor.stop_names(targets))
        except ProgramError as exc:
            raise CommandError(str(exc)) from None

    async def cmd_restart(self, name, timeout: float = 60):
        """Stop a program (or all) and start it again; waits until it runs"""
        targets = self._targets(name)
        results, again = await self.supervisor.restart_names(targets, timeout)
        programs = [self.supervisor.get(target) for target in targets]
        shown = self._results(programs, results)
        if again:
            shown.text += f"\nstarted again: {' '.join(again)}"
        return shown

    async def cmd_signal(self, name, signal):
        """Send a signal (HUP, USR1, 15...) to a program's whole process group"""
        signum = report.parse_signal(signal)
        return await self._each(name, lambda program: self._send(program, signum))

    async def cmd_reload(self, name):
        """Send a program its reload_signal (HUP unless configured)"""
        return await self._each(name, lambda program: self._send(program,
                                                                 program.spec.reload_signal))

    @staticmethod
    async def _send(program, signum):
        program.signal(signum)
        return f"{program.name}: sent {signals.Signals(signum).name}"

    async def cmd_run(self, template, **params):
        """Start a new session from a template (key=value parameters): its id"""
        try:
            session_id = await self.supervisor.run_session(template, params, timeout=60)
        except ProgramError as exc:
            raise CommandError(str(exc)) from None
        program = self.supervisor.programs[session_id]
        value = {"id": session_id, "pid": program.run.pid if program.run else None,
                 "port": program.port}
        return Shown(value, session_id)

    async def cmd_rm(self, id):
        """Stop a session and remove it"""
        try:
            return self._said([await self.supervisor.remove_session(id)])
        except ProgramError as exc:
            raise CommandError(str(exc)) from None

    @level("admin")
    async def cmd_update(self):
        """Re-read the configuration; restart only what changed, add and remove the rest"""
        try:
            config = self._read_config()
        except SpecError as exc:
            raise CommandError(f"nothing changed: {exc}") from None
        held = self.supervisor.statedb and self.supervisor.statedb.state_dir
        if held and config.state_dir != held:
            config.problems.append(f"state_dir: still {held}: a new state directory "
                                   "takes a restart of the server")
            config.state_dir = held
        try:
            changes = await self.supervisor.apply(config)
        except StateDirBusy as exc:
            raise CommandError(f"nothing changed: {exc}") from None
        self.problems = config.problems
        text = "\n".join(changes + [f"problem: {line}" for line in self.problems]
                         or ["nothing changed"])
        return Shown({"changes": changes, "problems": self.problems}, text)

    # -- helpers ---------------------------------------------------------------------------

    def _program(self, name):
        try:
            return self.supervisor.get(name)
        except ProgramError as exc:
            raise CommandError(str(exc)) from None

    async def _each(self, name, action):
        """Act on every target at once (100 programs start in parallel)."""
        programs = [self.supervisor.get(target) for target in self._targets(name)]
        return self._results(programs, await asyncio.gather(
            *(_attempt(action, program) for program in programs), return_exceptions=True))

    def _results(self, programs, results):
        """Each program's line, or its ProgramError; all failed: one ERROR line."""
        lines, failed = [], []
        for program, result in zip(programs, results):
            if isinstance(result, ProgramError):
                failed.append((program.name, str(result)))
            elif isinstance(result, BaseException):
                raise result
            else:
                lines.append(result)
        if failed and not lines:
            raise CommandError("; ".join(error for _, error in failed))
        shown = self._said(lines)
        shown.value += [{**report.row(self.supervisor.programs[name]), "error": error}
                        for name, error in failed]
        shown.text += "".join(f"\nfailed: {error}" for _, error in failed)
        return shown

    def _said(self, lines):
        """Lines "NAME: what happened" as text; for JSON mode each NAME's row
        (as proc list has it) with the line as "said"."""
        rows = []
        for line in lines:
            name = line.split(":", 1)[0]
            program = self.supervisor.programs.get(name)
            rows.append({**(report.row(program) if program else {"name": name}), "said": line})
        return Shown(rows, "\n".join(lines))


async def _attempt(action, program):
    """ACTION(program), awaited; a ProgramError it raises at once becomes the result."""
    return await action(program)
