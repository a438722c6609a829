"""One supervised program: its spec, its policy, its runs, its output, and the
task that drives them.

Rules:

1. The policy (policy.py) decides; this module only does what it decides.
   While the program should be up, one driver task loops: wait for the
   programs it depends on, spawn, become ready, wait for the end, back off.
2. Stopping cancels the driver once; the driver itself stops its run on the
   way out, so a stop that lands mid-spawn or mid-check leaves no child
   behind.  Every stop asked meanwhile waits for that same wind-down.
   A closed program (removed, or replaced by a new configuration) never
   starts again.
3. Every change of state wakes whoever waits for one (``proc start``,
   ``proc wait``), so no command polls.
4. Times for delays come from the loop's monotonic clock; wall time is only
   for what people read.
"""

import asyncio
import logging
import signal
import time

from .child import AdoptedRun, SpawnError, environment, free_port, spawn
from .orphans import process_start_time
from .output import Output
from .policy import Policy, State
from .ready import wait_ready
from .statedb import Record, boot_id

log = logging.getLogger("smanager.proc")
SETTLED = {State.RUNNING, State.BACKOFF, State.EXITED, State.FATAL, State.STOPPED}


class ProgramError(Exception):
    """A start or stop that did not reach its state; the message is one line."""


class Program:
    def __init__(self, spec, *, statedb=None, dependencies=None):
        self.spec = spec
        self.statedb = statedb
        self.dependencies = dependencies  # async callable(spec) that returns once they run
        self.policy = Policy(restart=spec.restart, ok_exit_codes=spec.ok_exit_codes,
                             backoff=spec.backoff, give_up=spec.give_up)
        self.output = Output(spec.name, spec.log_dir, max_bytes=spec.log_max_bytes,
                             backups=spec.log_backups, lines=spec.log_lines)
        self.run = None
        self.port = None
        self.waiting_for = ""  # what a STARTING program waits on, for status
        self.driver = None
        self.closed = False
        self.stopped_how = ""
        self._stopping = None  # the task stopping the driver, while it runs
        self._not_ready = None
        self._run_as = {}  # how this run's program (and its cmd: check) runs
        self._change = asyncio.Event()

    @property
    def name(self):
        return self.spec.name

    @property
    def state(self):
        return self.policy.state

    def _changed(self):
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for(self, states, timeout=None):
        """Return the state once it is one of ``states``; TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while self.state not in states:
                await self._change.wait()
        return self.state

    # -- what admins ask for -----------------------------------------------------

    def begin(self):
        """Start supervising (autostart, start): STARTING at once, driver running."""
        if self.closed:
            raise ProgramError(f"{self.name} was removed or replaced; see proc list")
        if self.state in (State.STARTING, State.RUNNING, State.STOPPING):
            return
        if self.driver is not None and not self.driver.done():
            self.driver.cancel()  # a BACKOFF sleep: start now instead
        self.policy.start(_now())
        self.driver = asyncio.get_running_loop().create_task(self._drive(),
                                                             name=f"proc {self.name}")
        self._changed()

    def adopt(self, record):
        """Take over a run a killed smanager left (orphans = "adopt")."""
        now = _now()
        self.policy.start(now)
        self.policy.spawned(now)
        self.policy.ready(now)
        self.run, self.port = AdoptedRun(record), record.port
        self.output.note(f"adopted pid {record.pid} left by a previous smanager; "
                         "its output is not captured")
        self.driver = asyncio.get_running_loop().create_task(self._drive(adopted=self.run),
                                                             name=f"proc {self.name}")
        self._changed()

    async def start(self, timeout=None):
        """Start it and wait until it runs; ProgramError with why it did not."""
        try:
            if self.state is State.STOPPING:
                await self.wait_for({State.STOPPED, State.EXITED, State.FATAL}, timeout)
            before = len(self.policy.history)
            self.begin()
            # STOPPING or STOPPED from here on: someone stopped it meanwhile
            state = await self.wait_for(SETTLED | {State.STOPPING}, timeout)
        except TimeoutError:
            raise ProgramError(f"{self.name} is still {self.state.value} after {timeout:g} s"
                               f"{self._waiting()}") from None
        if state in (State.STOPPING, State.STOPPED):
            raise ProgramError(f"{self.name} was stopped while it started")
        if state is not State.RUNNING:
            raise ProgramError(f"{self.name} {self.why_not(before)}")
        return f"{self.name}: RUNNING{self._pid_port()}"

    async def stop(self):
        """Stop it (the group, within stop_timeout, then KILL); how it ended."""
        if self._stopping is None:
            if self.state in (State.STOPPED, State.EXITED, State.FATAL) and self.run is None:
                return f"{self.name}: already {self.state.value}"
            self.policy.stop()
            self.stopped_how = ""
            self._changed()
            self._stopping = asyncio.get_running_loop().create_task(self._stop_driver())
        await asyncio.shield(self._stopping)  # a second stop waits for the first (rule 2)
        return f"{self.name}: STOPPED" + (f" ({self.stopped_how})" if self.stopped_how else "")

    async def _stop_driver(self):
        try:
            if self.driver is not None and not self.driver.done():
                self.driver.cancel()
                await asyncio.gather(self.driver, return_exceptions=True)
        finally:
            self._stopping = None

    def kill_now(self):
        """SIGKILL the group at once, without waiting: the last resort when the
        server's time to stop has run out."""
        if self.run is not None and self.run.alive:
            self.run.signal(signal.SIGKILL)

    def signal(self, signum):
        if self.run is None or not self.run.alive:
            raise ProgramError(f"{self.name} is {self.state.value}: there is no process to signal")
        if not self.run.signal(signum):
            raise ProgramError(f"{self.name}: its process group is gone")

    def why_not(self, since=0):
        """Why the latest start did not reach RUNNING, one line."""
        exits = list(self.policy.history)[since:] or list(self.policy.history)[-1:]
        if not exits:
            return "has not run yet"
        last = exits[-1]
        text = last.describe()
        if last.last_line:
            text += f": {last.last_line}"
        return f"{text}; {last.outcome}"

    # -- the driver ----------------------------------------------------------------

    async def _drive(self, adopted=None):
        try:
            if adopted is not None:
                await adopted.ended()
                self._record_end(adopted)
                await self._back_off()
            while self.state is State.STARTING:
                if self.dependencies is not None and self.spec.depends_on:
                    self.waiting_for = "waiting for " + ", ".join(self.spec.depends_on)
                    self._changed()
                    await self.dependencies(self.spec)
                    self.waiting_for = ""
                await self._one_run()
                await self._back_off()
        except asyncio.CancelledError:
            if self.driver is asyncio.current_task():  # else a start replaced it in BACKOFF
                await asyncio.shield(self._wind_down())
        except Exception:
            log.exception("%s: supervising failed", self.name)
            await asyncio.shield(self._wind_down())

    async def _back_off(self):
        if self.state is State.BACKOFF:
            await asyncio.sleep(max(0.0, self.policy.next_start_at - _now()))
            self.policy.due(_now())
            self._changed()

    async def _wind_down(self):
        """The driver is leaving: stop the run (rule 2), record how it ended."""
        self.waiting_for = ""
        if self.state in (State.STARTING, State.RUNNING):
            self.policy.stop()
        run = self.run
        if run is not None:
            self.stopped_how = await run.stop(self.spec.stop_signal, self.spec.stop_timeout)
            self._record_end(run)
        elif self.state is State.STOPPING:
            self.policy.exited(_now(), time.time(), error="stopped before it started")
        self._changed()

    async def _one_run(self):
        spec = self.spec
        port = free_port() if spec.port == "auto" else spec.port
        argv, env, ready = spec.expanded(port)
        try:
            # the program and its cmd: readiness check run alike (same user, env, cwd)
            self._run_as = {"env": environment(spec, env), "cwd": spec.cwd or "/",
                            **{key: value for key, value in (("user", spec.user),
                                                             ("group", spec.group))
                               if value is not None}}
            run = await spawn(self.output, argv=argv, umask=spec.umask, **self._run_as)
        except SpawnError as exc:
            self._ended(error=str(exc))
            return
        self.run, self.port, self._not_ready = run, port, None
        self.policy.spawned(_now())
        if self.statedb is not None:  # so a start after kill -9 finds it (statedb.sweep)
            self.statedb.record(Record(spec.name, run.pid, run.pgid,
                                       process_start_time(run.pid) or 0,
                                       argv[0], port, run.started, boot_id()))
        self._changed()
        becoming_ready = asyncio.get_running_loop().create_task(self._become_ready(run, ready))
        try:
            await run.ended()
        finally:
            becoming_ready.cancel()
        self._record_end(run)

    async def _become_ready(self, run, ready):
        if ready.kind == "start_secs":
            try:
                async with asyncio.timeout(self.spec.start_secs):
                    await run.exited.wait()
                return  # it died within start_secs: a failed start
            except TimeoutError:
                pass
        else:
            reason = await wait_ready(ready.kind, ready.target, interval=ready.interval,
                                      timeout=ready.timeout, alive=lambda: run.alive,
                                      run_as=self._run_as)
            if not run.alive:
                return
            if reason is not None:
                self._not_ready = reason
                self.output.note(f"{reason}; stopping it")
                await run.stop(self.spec.stop_signal, self.spec.stop_timeout)
                return
        if self.state is State.STARTING:
            self.policy.ready(_now())
            self._changed()

    def _record_end(self, run):
        if self.run is not run:
            return
        self.run = None
        if self.statedb is not None:
            self.statedb.forget(self.name)
        code, signum = run.status()
        self._ended(code=code, signal=signum, error=self._not_ready)

    def _ended(self, **how):
        last = self.output.last_text("err")
        end = self.policy.exited(_now(), time.time(), last_line=last, **how)
        self.output.note(f"{end.describe()}; {end.outcome}")
        if self.state is State.FATAL:
            log.warning("%s: %s", self.name, end.outcome)
        self._changed()

    # -- what status shows -------------------------------------------------------------

    def _pid_port(self):
        run = self.run
        parts = [f"pid {run.pid}"] if run is not None else []
        if self.port is not None and run is not None:
            parts.append(f"port {self.port}")
        return f" ({', '.join(parts)})" if parts else ""

    def _waiting(self):
        return f" ({self.waiting_for})" if self.waiting_for else ""

    def close(self):
        self.closed = True
        self.output.close()


def _now():
    return asyncio.get_running_loop().time()
