"""One run of a program: spawn it, feed its output on, see its end, signal its group.

Rules, each for a trap the supervisors before us fell into:

1. A program is spawned only by the event loop's ``subprocess_exec`` (what
   ``asyncio.create_subprocess_exec`` calls) with ``start_new_session=True``:
   no shell unless its spec asks, no ``preexec_fn`` (smanager has threads),
   stdin from /dev/null, and an environment built here, not smanager's own
   (which may hold secrets): PATH, LANG, HOME, the env file, the spec's env,
   and PORT.
2. Our protocol sees the leader's exit apart from its pipes: in Python 3.11
   ``Process.wait()`` also waits for the pipes, so a grandchild holding
   stdout would hide the exit.  The exit status the loop reports is the only
   truth about the leader; nothing here calls ``waitpid``.
3. A run ends when the leader has exited and both pipes have closed, or
   PIPE_GRACE seconds after the leader exited; then whatever is left of the
   group is killed, so leftovers hold neither the pipes nor the port.
4. Signals go to the whole process group, and only while the group can still
   be ours: before the leader is reaped its pid (the group's id) cannot be
   reused; after, a group with that id existing at all means our leftovers
   (the kernel reuses no id a group still has).
"""

import asyncio
import os
import pwd
import signal
import socket
import time
from pathlib import Path
from subprocess import SubprocessError

# Signals after which a CONT would undo what was asked (or is pointless).
NO_CONT_AFTER = frozenset({signal.SIGKILL, signal.SIGCONT, signal.SIGSTOP, signal.SIGTSTP,
                           signal.SIGTTIN, signal.SIGTTOU})
PIPE_GRACE = 2.0  # seconds a run waits for its pipes once the leader has exited
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}


class SpawnError(Exception):
    """The program could not be started; the message is one line."""


def free_port(host="127.0.0.1"):
    """A port nobody listens on now (bind port 0): the program's $PORT."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def read_env_file(path):
    """KEY=VALUE lines: '#' comments, blank lines, 'export ', quotes."""
    values = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SpawnError(f"cannot read env_file {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise SpawnError(f"env_file {path} line {number}: not KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def environment(spec, env):
    """The program's whole environment (rule 1)."""
    result = dict(BASE_ENV)
    try:
        entry = pwd.getpwnam(spec.user) if spec.user else pwd.getpwuid(os.getuid())
        result.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    except KeyError:
        pass  # an unknown user fails the spawn itself, with the OS's words
    if spec.env_file:
        result.update(read_env_file(spec.env_file))
    result.update(env)  # PORT is in it already (spec.expanded)
    result["SMANAGER_PROGRAM"] = spec.name
    return result


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, run):
        self.run = run

    def connection_made(self, transport):
        # Before subprocess_exec returns: a child that exits at once is
        # reported while spawn() still waits for its pipes to connect.
        self.run.transport = transport

    def pipe_data_received(self, fd, data):
        self.run.output.feed("out" if fd == 1 else "err", data)

    def pipe_connection_lost(self, fd, exc):
        if fd == 0:
            return  # stdin, written and closed by spawn()
        self.run.output.end("out" if fd == 1 else "err")
        self.run._pipes_open.discard(fd)
        if not self.run._pipes_open:
            self.run._pipes_closed.set()

    def process_exited(self):
        self.run._leader_exited()


class _Group:
    """A program's process group, led by ``pid``: signalled and stopped as one."""

    pid = pgid = returncode = None
    _done = None

    def __init__(self):
        self.started = time.time()
        self.exited = asyncio.Event()  # the leader is gone

    @property
    def alive(self):
        return not self.exited.is_set()

    def status(self):
        """(code, signal) of the leader once it has exited; (None, None) if unknown."""
        code = self.returncode
        return (None, -code) if code is not None and code < 0 else (code, None)

    async def ended(self):
        """Wait for the run's end (rule 3); (code, signal)."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_task(self._finish())
        return await asyncio.shield(self._done)

    async def _finish(self):
        await self.exited.wait()
        self.kill_leftovers()
        return self.status()

    def signal(self, signum):
        """Signal the group (rule 4); False when nothing of it is left."""
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        if signum not in NO_CONT_AFTER:
            try:  # a stopped program must wake up to act on it
                os.killpg(self.pgid, signal.SIGCONT)
            except OSError:
                pass
        return True

    def kill_leftovers(self):
        """After the leader: KILL whatever of the group is left (rule 3)."""
        self.signal(signal.SIGKILL)

    async def stop(self, signum, timeout):
        """Ask the group to stop, KILL it after ``timeout``; how it ended."""
        if not self.alive:
            await self.ended()
            return "had already exited"
        self.signal(signum)
        try:
            async with asyncio.timeout(timeout):
                await self.exited.wait()
            how = f"stopped by {signal.Signals(signum).name}"
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.exited.wait()
            how = f"killed: still running {timeout:g} s after {signal.Signals(signum).name}"
        await self.ended()
        return how


class Run(_Group):
    """One program this smanager spawned, with its output pipes."""

    def __init__(self, output):
        super().__init__()
        self.output = output
        self.transport = None
        self._pipes_open = {1, 2}
        self._pipes_closed = asyncio.Event()

    def _leader_exited(self):
        self.returncode = self.transport.get_returncode()
        self.exited.set()

    async def _finish(self):
        await self.exited.wait()
        if not self._pipes_closed.is_set():  # usually they are: no task to wait on them
            try:
                await asyncio.wait_for(self._pipes_closed.wait(), PIPE_GRACE)
            except TimeoutError:
                pass
        self.kill_leftovers()
        self.transport.close()
        return self.status()


class AdoptedRun(_Group):
    """A program a previous smanager started (it was killed with -9) and this one
    took over: no pipes, so no output, and no exit status; its end is seen
    through a pidfd, as it is not our child."""

    def __init__(self, record):
        super().__init__()
        self.pid, self.pgid = record.pid, record.pgid
        self.started = record.started_at
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(record.pid)
        except OSError:
            self._pidfd = None
            self.exited.set()
            return
        loop.add_reader(self._pidfd, self._leader_exited, loop)

    def _leader_exited(self, loop):
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.exited.set()


async def spawn(output, *, argv, env, cwd=None, user=None, group=None, umask=None,
                stdin=None):
    """Start one run: ``argv`` with exactly the environment ``env``, its output
    fed to ``output``.  ``stdin``: bytes written to it, then closed (else it
    reads /dev/null).  SpawnError with the OS's reason when it cannot start."""
    run = Run(output)
    loop = asyncio.get_running_loop()
    options = {key: value for key, value in
               (("user", user), ("group", group), ("umask", umask)) if value is not None}
    try:
        await loop.subprocess_exec(
            lambda: _Protocol(run), *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            # "/" without a cwd, as systemd does: never wherever smanager was started
            env=env, cwd=cwd or "/", start_new_session=True, **options)
    except (OSError, ValueError, KeyError, SubprocessError) as exc:
        raise SpawnError(describe_os_error(exc, argv[0], cwd)) from None
    run.pid = run.pgid = run.transport.get_pid()
    if stdin is not None:
        pipe = run.transport.get_pipe_transport(0)
        pipe.write(stdin)  # small (a few NAME=value lines): the pipe's buffer takes it
        pipe.close()
    return run


def describe_os_error(exc, program, cwd=None):
    """Why a spawn failed, in one line that names what was missing."""
    if isinstance(exc, FileNotFoundError):
        if cwd and exc.filename == cwd:
            return f"cwd {cwd}: {exc.strerror}"
        return f"{program}: command not found ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__

