"""One script run: its parameters checked, its environment built, run within its timeout, recorded.

Rules:

1. ``check_params(script, given)`` runs before anything is started or recorded.
   Only declared names (exact case) are taken; a value holding NUL or a line
   break, failing its pattern (``re.fullmatch``), or a required one missing is
   refused: ParamError, one line that names the parameter and never quotes a
   value.  Defaults are filled in; an optional one not given is "" (Pyjojo
   passed every declared parameter).
2. ``environment(script, values, run_id)``: the whole environment, built, never
   smanager's own: PATH, LANG, HOME (smanager's user's), SMANAGER_PROGRAM=
   scripts:NAME, SMANAGER_RUN=ID, and each declared parameter as NAME.upper()
   = the value exactly as given (never shell-quoted).  A parameter with the
   ``secret`` attribute is not in it: the script reads it on stdin, as
   ``NAME=value`` lines (so it is not in /proc/PID/environ); one named in
   ``filtered_params`` is (old scripts read it there), though masked in writing.
   A parameter whose NAME.upper() is one of RESERVED would replace what
   smanager sets: ``reserved_problem`` names it, and such a script is unusable.
3. ``masked(script, values)``: what is written down (history, log): each secret
   or filtered value is FILTERED.
4. A ScriptRun is queued (waiting in Admission: its caller entered it there at
   once, see scriptruns.Entry), then running, then ended.  ``drive()`` (its own
   task) waits for its turn, spawns the script in its own directory, waits at
   most the script's ``timeout``, then stops the whole group (TERM, STOP_GRACE
   seconds, KILL) and says so in a sys line.  ``kill(why)`` stops it the same
   way; a queued run is taken out of the queue and never started.  Spawning is
   never interrupted: a kill during it acts as soon as the process exists.
5. At its end the result is Pyjojo's shape (retcode, stdout, [stderr],
   return_values, [truncated]) plus ``run``, and ``timed_out_after`` (seconds)
   or ``error`` (it never ran: could not start, stopped while queued) when so.
   retcode is -N for a signal, as Pyjojo's subprocess gave it.  It is recorded
   (history.finish), then the output's followers end, then ``ended()`` returns.
"""

import asyncio
import functools
import logging
import os
import pwd
import signal

from .child import BASE_ENV, SpawnError, spawn

log = logging.getLogger("smanager.scripts")

FILTERED = "FILTERED"
STOP_GRACE = 5.0  # seconds between TERM and KILL
NOT_STARTED = 127  # the retcode of a script that could not be started, as a shell says it
SIGTERM = int(signal.SIGTERM)  # as the history stores it
RESERVED = ("PATH", "LANG", "HOME", "SMANAGER_PROGRAM", "SMANAGER_RUN", "BG")


class ParamError(ValueError):
    """A request's parameters refused (rule 1); one line, no value quoted."""


def reserved_problem(script):
    """Why the script cannot be used because of a parameter's name (rule 2), or None."""
    for param in script.params:
        if param.name.upper() == "BG":
            return f"parameter {param.name!r} is taken: 'scripts run NAME bg=true' runs in the background"
        if param.name.upper() in RESERVED:
            return f"parameter {param.name!r} would replace ${param.name.upper()}, which smanager sets"
    return None


def check_params(script, given):
    """The values the script runs with (rule 1); ParamError if they cannot be used."""
    declared = {param.name: param for param in script.params}
    for name in given:
        if name not in declared:
            takes = ", ".join(declared) or "no parameters"
            raise ParamError(f"script {script.name} takes: {takes} (not {name})")
    values = {}
    for name, param in declared.items():
        value = given.get(name)
        if value is None:
            if param.required:
                raise ParamError(f"script {script.name} needs {name}")
            value = param.default if param.default is not None else ""
        elif "\0" in value or "\n" in value or "\r" in value:
            raise ParamError(f"script {script.name}: {name} must not hold a line break or NUL")
        elif param.pattern is not None and not param.pattern.fullmatch(value):
            raise ParamError(f"script {script.name}: {name} must match {param.pattern.pattern}")
        values[name] = value
    return values


def on_stdin_only(script, name):
    """A secret parameter the environment must not hold (rule 2)."""
    return script.is_secret(name) and name not in script.filtered_params


def environment(script, values, run_id):
    """(the environment, the bytes for stdin or None) of one run (rule 2)."""
    env = dict(BASE_ENV, HOME=_home(), SMANAGER_PROGRAM=f"scripts:{script.name}",
               SMANAGER_RUN=str(run_id))
    secrets = []
    for name, value in values.items():
        if on_stdin_only(script, name):
            secrets.append(f"{name.upper()}={value}\n")
        else:
            env[name.upper()] = value
    return env, "".join(secrets).encode() if secrets else None


def masked(script, values):
    return {name: FILTERED if script.is_secret(name) else value for name, value in values.items()}


@functools.cache
def _home():
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


class ScriptRun:
    """One accepted run of a script (rules 4 and 5)."""

    def __init__(self, script, *, user, output, since):
        self.script = script
        self.id = None  # set once it is recorded
        self.user = user
        self.output = output
        self.since = since  # HH:MM:SS it was accepted, for "busy: run 41 since ..."
        self.state = "queued"
        self.result = None
        self.process = None  # child.Run, once spawned
        self._task = None
        self._stop_why = None  # why it is being stopped; None while nobody asked
        self._spawning = False
        self._done = asyncio.Event()

    def __str__(self):
        return str(self.id)  # Admission names the run holding a lock by it

    def kill(self, why):
        """Stop the run (rule 4); False if it has ended or is stopping already."""
        if self.state == "ended" or self._stop_why is not None:
            return False
        self._stop_why = why
        if self._task is not None and not self._spawning:
            self._task.cancel()
        return True

    async def ended(self):
        """Its result, once it has ended and been recorded."""
        await self._done.wait()
        return self.result

    async def drive(self, entry, history, env, stdin):
        """The run from its place in Admission (``entry``: an Entry its caller took)
        to its record (rules 4 and 5); its task's body."""
        self._task = asyncio.current_task()
        try:
            try:
                if self._stop_why is not None:  # killed before its task began
                    raise asyncio.CancelledError
                await entry.wait()
            except asyncio.CancelledError:  # kill() while it waited its turn
                if asyncio.current_task().cancelling():
                    asyncio.current_task().uncancel()
                ending = _Ending(signum=SIGTERM, error="stopped before it started: "
                                                       f"{self._stop_why or 'cancelled'}")
            else:
                ending = await self._run(env, stdin)
        except Exception as exc:
            log.exception("run %s of %s failed", self.id, self.script.name)
            if self.process is not None:
                self.process.kill_leftovers()
            ending = _Ending(error=f"smanager failed to run it: {type(exc).__name__}")
        finally:
            entry.leave()
        self._record(history, ending)

    async def _run(self, env, stdin):
        self.state = "running"
        if self._stop_why is not None:
            return _Ending(signum=SIGTERM, error=f"stopped before it started: {self._stop_why}")
        self._spawning = True
        try:
            self.process = await spawn(self.output, argv=[self.script.path], env=env,
                                       cwd=os.path.dirname(self.script.path), stdin=stdin)
        except SpawnError as exc:
            self.output.note(f"[could not start: {exc}]")
            return _Ending(code=NOT_STARTED, error=f"could not start: {exc}")
        finally:
            self._spawning = False
        timed_out = False
        try:
            if self._stop_why is not None:  # asked during the spawn
                raise asyncio.CancelledError
            async with asyncio.timeout(self.script.timeout):
                code, signum = await self.process.ended()
            return _Ending(code=code, signum=signum)
        except TimeoutError:
            timed_out = True
            self._stop_why = f"timed out after {self.script.timeout:g} s"
        except asyncio.CancelledError:  # kill(), or the loop is closing
            if asyncio.current_task().cancelling():
                asyncio.current_task().uncancel()
            self._stop_why = self._stop_why or "cancelled"
        how = await self.process.stop(signal.SIGTERM, STOP_GRACE)
        self.output.note(f"[{self._stop_why}; {how}]")
        code, signum = await self.process.ended()
        return _Ending(code=code, signum=signum, timed_out=timed_out)

    def _record(self, history, ending):
        result = self.output.result(ending.code if ending.signum is None else -ending.signum)
        result["run"] = self.id
        if ending.timed_out:
            result["timed_out_after"] = self.script.timeout
        if ending.error:
            result["error"] = ending.error
        try:
            history.finish(self.id, retcode=ending.code, signal=ending.signum,
                           timed_out=ending.timed_out, truncated=self.output.truncated,
                           result=result)
        except Exception:
            log.exception("run %d of %s: cannot record its end", self.id, self.script.name)
        self.result = result
        self.state = "ended"
        self.output.close()
        self._done.set()


class _Ending:
    """How a run ended: its exit code or signal, a timeout, or why it never ran."""

    __slots__ = ("code", "error", "signum", "timed_out")

    def __init__(self, code=None, signum=None, timed_out=False, error=None):
        self.code, self.signum, self.timed_out, self.error = code, signum, timed_out, error
