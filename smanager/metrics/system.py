"""The bundled system collectors: the host itself, read from /proc, never sleeping.

Rules:

1. One Collector class per reading of procfs.py and procfs_net.py, named as
   ``monitor last`` shows it: cpu, mem, load, disk, diskio, net, tcp, procs.
   DEFAULTS are the ones that run with no configuration at all (cpu, mem,
   load, disk, net); a configured collector of the same name replaces one.
2. cpu is percent per state since its previous run (top's figures): it keeps
   the previous reading, so its first run gives nothing, and no run sleeps.
   diskio's and net's cumulative fields are counters (the monitor stores
   rates per second): its first run gives only their gauges.
3. Where /proc cannot be read (not Linux), a run fails with procfs's one-line
   NotAvailable ("cpu: /proc/stat not readable: ..."), shown by
   ``monitor list``; nothing else stops.
4. ``options``: ``root`` (default /proc), for reading another tree (tests, a
   container's host /proc mounted elsewhere).
"""

from ..collector import Collector
from . import procfs, procfs_net


class _Reading(Collector):
    """A collector that hands on one procfs reading as it is."""

    read = None  # the procfs reader, taking root=

    def collect(self):
        return type(self).read(root=self.options.get("root", "/proc"))


class Cpu(Collector):
    """CPU time per state, in percent (user, system, iowait, steal...)"""

    name = "cpu"

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        self._previous = None

    def collect(self):
        now = procfs.cpu_times(root=self.options.get("root", "/proc"))
        before, self._previous = self._previous, now
        if before is None:
            return {}
        shares = procfs.cpu_percent(before, now)
        shares["busy"] = 100.0 - shares.get("idle", 0.0) - shares.get("iowait", 0.0)
        return shares


class Mem(_Reading):
    """Memory in bytes, as free -b shows it (used = total - available)"""

    name = "mem"
    read = staticmethod(procfs.memory)


class Load(_Reading):
    """Load averages over 1, 5 and 15 minutes, and tasks"""

    name = "load"
    read = staticmethod(procfs.load)


class Disk(_Reading):
    """Space per real mount, as df computes it (used_percent is df's Use%)"""

    name = "disk"
    read = staticmethod(procfs.disk_space)


class DiskIO(_Reading):
    """Reads, writes and bytes per whole disk, per second"""

    name = "diskio"
    read = staticmethod(procfs.disk_io)
    counters = procfs.DISK_IO_COUNTERS


class Net(_Reading):
    """Bytes, packets, errors and drops per interface, per second"""

    name = "net"
    read = staticmethod(procfs_net.network)
    counters = procfs_net.NETWORK_COUNTERS


class Tcp(_Reading):
    """TCP connections per state (established, listen, time_wait...)"""

    name = "tcp"
    read = staticmethod(procfs_net.tcp_states)


class Procs(_Reading):
    """Processes and threads, and processes per state"""

    name = "procs"
    read = staticmethod(procfs.process_count)


BUNDLED = {kind.name: kind for kind in (Cpu, Mem, Load, Disk, DiskIO, Net, Tcp, Procs)}
DEFAULTS = ("cpu", "mem", "load", "disk", "net")
