"""The servers the benchmark compares: their service directories, start and stop.

Every server is a subprocess listening on 127.0.0.1 port 0; its stderr goes to
a file (a pipe nobody reads could fill and stall it), which is polled for the
``listening on 127.0.0.1:PORT`` line.  Waits are bounded; ``stop`` always ends
with kill if terminate was not enough.
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TICK = os.sysconf("SC_CLK_TCK")
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
MARK = b"\n" + b"-" * 50 + b"\n"  # a separator line, which always follows a newline

# The blocking-command scenario: a plain def runs in smanager's worker threads.
# Not `concurrent`, so it also goes through the service's one-at-a-time lock,
# as any service that does not opt out does.
BENCHSVC = '''from smanager import SService


class BenchSvc(SService):
    """One plain (blocking, thread-run) command, for the benchmark"""

    name = "benchsvc"

    def cmd_ping(self):
        """Returns pong"""
        return "pong"
'''

SMANAGER = ["-m", "smanager", "--host", "127.0.0.1", "--port", "0"]


def write_services(directory, modules=10, per_module=100):
    """Fill directory/benchsvc and directory/many (modules x per_module trivial services)."""
    (directory / "benchsvc").mkdir()
    (directory / "benchsvc" / "benchsvc.py").write_text(BENCHSVC)
    (directory / "many").mkdir()
    for m in range(modules):
        classes = [f'''

class Svc{m:02d}x{c:03d}(SService):
    """Trivial service {c} of module {m}, only there to be loaded"""

    async def cmd_status(self):
        """Returns ok"""
        return "ok"

    def cmd_info(self, key="x"):
        """Returns KEY"""
        return key
''' for c in range(per_module)]
        text = "from smanager import SService\n" + "".join(classes)
        (directory / "many" / f"many{m:02d}.py").write_text(text)


def server_commands(directory):
    """name -> argv (after the Python interpreter) of every server the scenarios use."""
    return {
        "smanager": SMANAGER,
        "smanager+benchsvc": SMANAGER + ["--services", str(directory / "benchsvc")],
        "smanager+1000svc": SMANAGER + ["--services", str(directory / "many")],
        "reference": [str(BENCH / "reference_server.py"), "--port", "0"],
    }


def machine_busy_seconds():
    """CPU seconds all CPUs spent on processes or stolen by the host, from /proc/stat.

    Interrupt and softirq time are left out: on loopback that is mostly our own traffic.
    """
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + steal) / TICK


class Server:
    """A running server subprocess: its name, process, port and start-up time."""

    def __init__(self, name, argv, logdir, cpu=None, deadline=60.0):
        self.name, self.cpu = name, cpu
        self.log_path = logdir / f"{name}.log"
        self.log = open(self.log_path, "w")
        began = time.monotonic()
        # Pinned before exec, so every thread the server later starts inherits the CPU.
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=pin)
        self.port = None
        try:
            while time.monotonic() - began < deadline and self.proc.poll() is None:
                found = LISTENING.search(self.log_path.read_text())
                if found:
                    self.port = int(found.group(1))
                    break
                time.sleep(0.02)
            if self.port is None:
                raise RuntimeError(f"{name} did not start:\n{self.log_path.read_text()[-2000:]}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def cpu_seconds(self):
        """CPU used so far by the process, all threads, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    def banner(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            data = b""
            while not data.endswith(MARK) and len(data) < 1 << 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def source_version():
    """What was measured: the commit, and any uncommitted change to the server's code."""
    def git(*words):
        try:
            return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--porcelain", "smanager", "services")}
