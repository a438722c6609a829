"""The two supervisors bench/proc.py compares, the clients it talks to them with,
and what it reads from /proc.

Rules:
- Each manager is a subprocess in a session of its own (Ctrl-C reaches only
  the driver, which then stops it), on loopback only: smanager on 127.0.0.1
  port 0, supervisord on a Unix socket in the run's temporary directory.
- Both get the same programs: the same argv, start seconds and autostart;
  an exit from RUNNING restarted at once (supervisord always does; smanager
  gets backoff.reset_after so short that it never backs off after one); the
  output of each captured to two log files; and BENCH_PROC_TOKEN=<the run's
  token> in the environment, by which leftovers are found.
- ``stop()`` always ends the manager: SIGTERM, STOP_WAIT seconds, SIGKILL.
  ``leftovers(token)`` then names any program of the run still alive, and
  the driver kills and reports them.
- Every wait here is bounded in time.
"""

import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
MARK = b"\n" + b"-" * 50 + b"\n"  # ends every text-mode reply and the banner
STOP_WAIT = 30.0  # seconds a manager gets to stop its programs and exit


# -- /proc ------------------------------------------------------------------------------

def children(pid):
    """Pids of PID's children, from /proc/PID/task/PID/children: the manager's
    main thread, which is where both managers fork (an empty set once it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            return {int(item) for item in handle.read().split()}
    except OSError:
        return set()


def stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()


def cpu_seconds(pid):
    """utime + stime of the whole process (all its threads, not its children)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        return stat_fields(pid)[0] != b"Z"
    except OSError:
        return False


def memory(pid):
    """VmRSS and VmSize in kB, and the thread count, from /proc/PID/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmSize", "Threads"):
            found[key] = int(value.split()[0])
    return found


def pidfds(pid):
    """How many pidfds PID holds open: one per child under a pidfd watcher."""
    count = 0
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{entry}") == "anon_inode:[pidfd]"
        except OSError:
            pass
    return count


def leftovers(token):
    """Live processes whose environment holds this run's token."""
    needle = f"BENCH_PROC_TOKEN={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if needle in handle.read().split(b"\0") and alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


# -- clients --------------------------------------------------------------------------

class Wire:
    """One connection to smanager: the banner read, then one request at a time."""

    def __init__(self, port, timeout=60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.json = False
        self._read_until(lambda data: data.endswith(MARK))

    def _read_until(self, complete):
        data = b""
        while not complete(data):
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("smanager closed the connection")
            data += chunk
        return data

    def ask(self, line):
        """The reply: text up to its separator, or in JSON mode the decoded line."""
        self.sock.sendall(line.encode() + b"\n")
        if self.json:
            return json.loads(self._read_until(lambda data: data.endswith(b"\n")))
        return self._read_until(lambda data: data.endswith(MARK))[: -len(MARK)].decode()

    def json_mode(self):
        self.json = True
        self.ask("mode json")
        return self

    def close(self):
        self.sock.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's Unix socket; keeps its connection, as http.client does."""

    def __init__(self, path, timeout):
        super().__init__()
        self.path, self.timeout = path, timeout

    def make_connection(self, host):
        if self._connection[1] is None:
            self._connection = host, _UnixConnection(self.path, self.timeout)
        return self._connection[1]


def rpc(path, timeout=60.0):
    """supervisord's XML-RPC namespace root (``.supervisor.getState()``)."""
    return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                     transport=_UnixTransport(path, timeout))


# -- the managers --------------------------------------------------------------------

class Manager:
    """A running manager with PROGRAMS: (name, argv, start_secs, autostart) each."""

    name = ""

    def __init__(self, directory, programs, token):
        self.dir = Path(directory) / self.name
        self.dir.mkdir()
        self.programs, self.token = programs, token
        self.log = open(self.dir / "manager.log", "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        try:
            self._until_ready(time.monotonic() + 60)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_WAIT; the seconds it took to exit."""
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return time.monotonic() - began

    def last_words(self):
        """The last line the manager logged, for a one-line error."""
        lines = (self.dir / "manager.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(it logged nothing)"

    def _dead(self, what):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited while {what}: {self.last_words()}")


class SManager(Manager):
    name = "smanager"

    def argv(self):
        lines = ["[service.proc]", f"state_dir = {json.dumps(str(self.dir / 'state'))}", ""]
        for name, argv, start_secs, autostart in self.programs:
            lines += [f"[service.proc.programs.{name}]", f"command = {json.dumps(list(argv))}",
                      f"start_secs = {start_secs}", f"autostart = {json.dumps(autostart)}",
                      'restart = "always"', "backoff = {reset_after = 0.001}",
                      f"env = {{BENCH_PROC_TOKEN = {json.dumps(self.token)}}}", ""]
        (self.dir / "smanager.toml").write_text("\n".join(lines))
        return [sys.executable, "-m", "smanager", "--host", "127.0.0.1", "--port", "0",
                "--config", str(self.dir / "smanager.toml")]

    def _until_ready(self, deadline):
        while time.monotonic() < deadline:
            self._dead("starting")
            text = (self.dir / "manager.log").read_text(errors="replace")
            if "listening on 127.0.0.1:" in text:
                self.port = int(text.split("listening on 127.0.0.1:", 1)[1].split()[0])
                return
            time.sleep(0.02)
        raise RuntimeError(f"smanager did not start in 60 s: {self.last_words()}")

    def connect(self):
        return Wire(self.port).json_mode()

    def start_all(self, client):
        client.ask("proc start all")

    def states(self, client):
        """name -> (state, pid) of every program."""
        reply = client.ask("proc list")
        return {row["name"]: (row["state"], row["pid"]) for row in reply["result"]}

    def state(self, client, name):
        row = client.ask(f"proc status {name}")["result"]
        return row["state"], row["pid"]


class Supervisord(Manager):
    name = "supervisord"
    binary = None  # the supervisord program; supervisorctl is beside it

    def argv(self):
        self.socket = str(self.dir / "supervisor.sock")
        lines = ["[unix_http_server]", f"file = {self.socket}", "chmod = 0700", "",
                 "[supervisord]", "nodaemon = true", f"logfile = {self.dir / 'supervisord.log'}",
                 f"pidfile = {self.dir / 'supervisord.pid'}",
                 f"childlogdir = {self.dir / 'childlogs'}", "",
                 "[rpcinterface:supervisor]",
                 "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                 "", "[supervisorctl]", f"serverurl = unix://{self.socket}", ""]
        for name, argv, start_secs, autostart in self.programs:
            lines += [f"[program:{name}]", f"command = {shlex.join(argv)}",
                      f"startsecs = {start_secs}", f"autostart = {str(autostart).lower()}",
                      "autorestart = true", f'environment = BENCH_PROC_TOKEN="{self.token}"', ""]
        (self.dir / "childlogs").mkdir()
        self.conf = str(self.dir / "supervisord.conf")
        Path(self.conf).write_text("\n".join(lines))
        return [self.binary, "-c", self.conf]

    def _until_ready(self, deadline):
        while time.monotonic() < deadline:
            self._dead("starting")
            if os.path.exists(self.socket):
                try:
                    if rpc(self.socket, 5).supervisor.getState()["statename"] == "RUNNING":
                        return
                except (OSError, xmlrpc.client.Error, http.client.HTTPException):
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"supervisord did not start in 60 s: {self.last_words()}")

    def connect(self):
        return rpc(self.socket)

    def start_all(self, client):
        client.supervisor.startAllProcesses(True)  # replies once all are RUNNING

    def states(self, client):
        return {info["name"]: (info["statename"], info["pid"] or None)
                for info in client.supervisor.getAllProcessInfo()}

    def state(self, client, name):
        info = client.supervisor.getProcessInfo(name)
        return info["statename"], info["pid"] or None

    def ctl(self):
        """argv of `supervisorctl status` for this supervisord."""
        return [str(Path(self.binary).with_name("supervisorctl")), "-c", self.conf, "status"]


# -- the child watchers of Python 3.11, alone ----------------------------------------

async def _probe(kind, count, kills):
    """COUNT `sleep` children under watcher KIND: spawn time, memory, threads, and how
    long the loop takes to see a SIGKILLed child's exit (median of KILLS)."""
    import asyncio
    import statistics
    import warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    watcher = asyncio.PidfdChildWatcher() if kind == "pidfd" else asyncio.ThreadedChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    began, procs = time.perf_counter(), []
    try:
        for _ in range(count):
            procs.append(await asyncio.create_subprocess_exec(
                "sleep", "3600", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        spawned = time.perf_counter() - began
        await asyncio.sleep(0.5)  # let every watcher thread reach its waitpid
        result = {**memory(os.getpid()), "spawn": spawned, "pidfds": pidfds(os.getpid())}
        seen = []
        for proc in procs[:kills]:
            began = time.perf_counter()
            proc.kill()
            await proc.wait()
            seen.append(time.perf_counter() - began)
        return {**result, "exit_seen": statistics.median(seen)}
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*(proc.wait() for proc in procs))


def probe_watcher(kind, count, kills, token, timeout=120):
    """Run _probe in a fresh interpreter (its own session, the run's token in its
    children's environment); its figures, as a dict."""
    code = ("import asyncio, json, sys; sys.path.insert(0, sys.argv[1]); import proc_peers; "
            "print(json.dumps(asyncio.run(proc_peers._probe(*sys.argv[2:3], "
            "*map(int, sys.argv[3:5])))))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), kind,
                           str(count), str(kills)], check=False, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True,
                          env={**os.environ, "BENCH_PROC_TOKEN": token})
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} watcher probe failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)
