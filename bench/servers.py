"""The servers the benchmark compares: their service directories, start and stop.

Every server is a subprocess listening on 127.0.0.1 port 0; its stderr goes to
a file (a pipe nobody reads could fill and stall it), which is polled for the
``listening on 127.0.0.1:PORT`` line.  Waits are bounded; ``stop`` always ends
with kill if terminate was not enough.  ``pinned(cpu)`` is the ``taskset``
prefix that keeps a process on one CPU (as ../shared/perf/compare.sh pins),
for servers and load generators alike; a server started with it is pinned
before Python starts, so every thread it makes inherits the CPU.
"""

import os
import re
import shutil
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

# The blocking-command scenarios: a plain def runs in smanager's worker threads.
# benchsvc is not `concurrent`, so its ping also goes through the service's
# one-at-a-time lock, as any service that does not opt out does; benchnap is, so
# ten clients' naps block ten threads at once (crowds.py).
BENCHSVC = '''import time

from smanager import SService


class BenchSvc(SService):
    """One plain (blocking, thread-run) command, for the benchmark"""

    name = "benchsvc"

    def cmd_ping(self):
        """Returns pong"""
        return "pong"


class BenchNap(SService):
    """A plain command that blocks its thread a while; many may run at once"""

    name = "benchnap"
    concurrent = True

    def cmd_nap(self, seconds="1"):
        """Blocks for SECONDS, then returns awake"""
        time.sleep(float(seconds))
        return "awake"
'''

SMANAGER = ["-m", "smanager", "--host", "127.0.0.1", "--port", "0"]
# Room for the crowds (10,000 idle connections) and bursts (500 at once), all from
# 127.0.0.1: the defaults (1,000 in all, 100 per address) would refuse most of them.
WIDE = ["--max-connections", "12000", "--max-connections-per-address", "12000"]


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
    """name -> argv (after the Python interpreter) of every server the scenarios use
    (smanager+tls only where openssl can make its certificate)."""
    commands = {
        "smanager": SMANAGER,
        "smanager+benchsvc": SMANAGER + ["--services", str(directory / "benchsvc")],
        "smanager+1000svc": SMANAGER + ["--services", str(directory / "many")],
        "smanager+wide": SMANAGER + WIDE,
        "smanager+wide+backlog100": SMANAGER + WIDE + ["--backlog", "100"],
        "reference": [str(BENCH / "reference_server.py"), "--port", "0"],
    }
    if shutil.which("openssl"):
        cert, key = self_signed_certificate(directory)
        commands["smanager+tls"] = SMANAGER + ["--tls-cert", str(cert), "--tls-key", str(key)]
    return commands


def self_signed_certificate(directory):
    """(certificate, key) for 127.0.0.1, made by openssl in directory, valid a day."""
    cert, key = directory / "tls-cert.pem", directory / "tls-key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
    return cert, key


def pinned(cpu):
    """The argv prefix that runs a command on CPU `cpu` only ([] for None)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def cpus_to_pin():
    """(server CPU, generator CPU): the first two this process may use, with taskset and
    2 or more CPUs, as compare.sh does; else (None, None)."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(usable) < 2 or shutil.which("taskset") is None:
        return None, None
    return usable[0], usable[1]


def machine_busy_seconds():
    """CPU seconds all CPUs spent on processes or stolen by the host, from /proc/stat.

    Interrupt and softirq time are left out: on loopback that is mostly our own traffic.
    """
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + steal) / TICK


# The reference reads into a fresh 256 KiB bytes object each time (asyncio.Protocol),
# and glibc serves that from the heap or with an mmap, mremap and munmap per read,
# by a threshold it moves as the process runs: the same reference then ran at 33k
# or 98k req/s at 50x1 on one machine, by the luck of its start.  Pinned, it runs
# at its best in every round: the ceiling, not a coin toss.  (smanager reads into
# one buffer it keeps, so the setting would not touch it; it runs as shipped.)
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_TRIM_THRESHOLD_": str(16 << 20)}


class Server:
    """A running server subprocess: its name, process, port and start-up time."""

    def __init__(self, name, argv, logdir, cpu=None, deadline=60.0):
        self.name, self.cpu = name, cpu
        self.log_path = logdir / f"{name}.log"
        self.log = open(self.log_path, "w")
        # The load generator trusts this certificate when the server speaks TLS.
        self.tls_ca = argv[argv.index("--tls-cert") + 1] if "--tls-cert" in argv else None
        began = time.monotonic()
        env = {**os.environ, **STEADY_MALLOC} if name == "reference" else None
        self.proc = subprocess.Popen([*pinned(cpu), sys.executable, *argv], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
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

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def cpu_seconds(self):
        """CPU used so far by the process, all threads, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    def status(self, field):
        """A number from /proc/PID/status, e.g. "VmRSS" (in kB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return None

    def open_files(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

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
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--porcelain", "smanager", "services")}
