"""Readers of Linux /proc for the bundled system collectors: cpu, memory, load, disks, processes.

The rules:

1. Each reader returns one reading, a plain dict ``{metric: number}``, from one
   pass over its files, and never sleeps: a rate is the store's work, from two
   consecutive readings.  Each reader's ``*_COUNTERS`` frozenset names its
   cumulative counters by field, the part of a metric's name after its last
   dot (``is_counter("eth0.rx_bytes", NETWORK_COUNTERS)``).
2. Each reader takes ``root="/proc"``, so tests can feed files from a fixture
   directory.  A file it needs that cannot be read (not Linux, /proc not
   mounted, a process that is gone) raises ``NotAvailable`` with a one-line
   message: ``cpu: /proc/stat not readable: No such file or directory``.
3. Names of things inside metric names (mounts, disks, interfaces) keep
   letters, digits, ``_`` and ``-``; anything else, dots included, becomes
   ``_``, so the field is always the last dotted part.
4. Bytes are bytes (meminfo's kB times 1024, diskstats' sectors times 512,
   whatever the device's sector size, as the kernel counts them); times are
   seconds, except diskstats' own milliseconds, kept as ``*_ms``.

What each reader reports, and where it follows a tool admins trust:

- ``cpu_times()``: cumulative seconds per state of the ``cpu`` line of
  /proc/stat (all CPUs summed).  States an old kernel does not have (iowait
  before 2.5.41, steal before 2.6.11) are absent, not zero.  Guest time is
  already inside user and nice, so it is not a state.  ``cpu_percent(before,
  after)`` turns two readings into percent per state, as top does.
- ``memory()``: as ``free -b`` of procps 4: used = total - available; cached =
  Cached + SReclaimable (free's "cache"); without MemAvailable (before 3.14)
  available is estimated as free + buffers + cached.
- ``load()``: /proc/loadavg; tasks_running and tasks_total count threads
  (the reader itself is one of the running).
- ``disk_space()``: per real mount, as df computes: total = f_blocks, used =
  f_blocks - f_bfree, avail = f_bavail (what non-root users can still write),
  times f_frsize; used_percent is df's Use%, used / (used + avail) rounded up
  to a whole percent, and inodes_used_percent df -i's IUse%.  Real means not a
  pseudo or memory filesystem (PSEUDO_FILESYSTEMS: tmpfs too, the memory
  reading covers it) and not a network one (REMOTE_FILESYSTEMS: statvfs
  blocks while the server is down); overlay counts only mounted on / (a
  container's root, as df shows it).  A device mounted twice is reported
  once, at its shortest mount point (df's rule).  Mount points are looked at
  as listed (they are relative to this process's root).  Names: / is
  ``root``, /var/log is ``var_log`` (``disk.var_log.used_percent``); of two
  mounts with one name (/ and /root) the first in sorted order is kept.
- ``disk_io()``: /proc/diskstats for whole disks (a partition is skipped
  when its disk is listed: sda1, nvme0n1p1, mmcblk0p2); loop, ram and zram
  devices only once they have done any I/O; device-mapper and md devices are
  kept (their I/O is also counted on the disks under them).  io_time_ms as a
  rate over ms per second, divided by 10, is iostat's %util.
- ``process_count()``: processes (numeric entries of /proc), threads
  (/proc/loadavg's task count) and the processes per state from each
  /proc/PID/stat (about 15 microseconds a process: 8 ms for 500).
- ``process_stats(pid)``: cpu_seconds (utime + stime), rss_bytes, threads.

Network interfaces and TCP states are in procfs_net.
"""

import os
import re

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SECTOR_SIZE = 512  # diskstats counts 512-byte sectors on every device

CPU_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
CPU_COUNTERS = frozenset(CPU_STATES)
MEMORY_COUNTERS = frozenset()
LOAD_COUNTERS = frozenset()
DISK_SPACE_COUNTERS = frozenset()
DISK_IO_COUNTERS = frozenset({"reads", "writes", "read_bytes", "write_bytes", "io_time_ms"})
PROCESS_COUNT_COUNTERS = frozenset()
PROCESS_STATS_COUNTERS = frozenset({"cpu_seconds"})

PSEUDO_FILESYSTEMS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore",
    "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs",
    "tracefs", "iso9660", "erofs", "fuse.lxcfs", "fuse.portal", "fuse.gvfsd-fuse"})
REMOTE_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs",
    "fuse.glusterfs", "fuse.sshfs", "9p", "lustre"})
UNUSED_UNLESS_BUSY = ("loop", "ram", "zram")  # virtual disks, skipped while idle
PROCESS_STATES = {"R": "running", "S": "sleeping", "I": "sleeping", "D": "blocked",
                  "Z": "zombies", "T": "stopped", "t": "stopped"}


class NotAvailable(Exception):
    """A reading this system cannot give (not Linux, /proc missing, process gone)."""


def is_counter(metric, counters):
    """Whether METRIC (``"eth0.rx_bytes"``) is one of COUNTERS, by its last dotted part."""
    return metric.rpartition(".")[2] in counters


def read_text(what, root, *names):
    """The text of ROOT/NAMES..., or NotAvailable naming WHAT could not be read."""
    path = os.path.join(root, *names)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            return file.read()
    except OSError as error:
        raise NotAvailable(f"{what}: {path} not readable: {error.strerror or error}") from None


def name_part(name):
    """NAME made safe as one dotted part of a metric's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def cpu_times(root="/proc"):
    for line in read_text("cpu", root, "stat").splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return {state: int(jiffies) / CLOCK_TICKS
                    for state, jiffies in zip(CPU_STATES, fields[1:])}
    raise NotAvailable(f"cpu: {os.path.join(root, 'stat')} has no cpu line")


def cpu_percent(before, after):
    """Percent of the time between two cpu_times() readings spent in each state.

    A state whose counter went back (iowait can, on some kernels) counts as 0;
    no time between the readings gives 0 for every state."""
    deltas = {state: max(after[state] - before[state], 0.0)
              for state in after if state in before}
    elapsed = sum(deltas.values())
    return {state: (delta * 100.0 / elapsed if elapsed else 0.0)
            for state, delta in deltas.items()}


def memory(root="/proc"):
    kilobytes = {}
    for line in read_text("memory", root, "meminfo").splitlines():
        key, _, value = line.partition(":")
        if value:
            kilobytes[key] = int(value.split()[0])
    field = {key: kilobytes.get(key, 0) * 1024 for key in (
        "MemTotal", "MemFree", "Buffers", "Cached", "SReclaimable", "Shmem",
        "SwapTotal", "SwapFree")}
    total, free, buffers = field["MemTotal"], field["MemFree"], field["Buffers"]
    cached = field["Cached"] + field["SReclaimable"]
    available = (kilobytes["MemAvailable"] * 1024 if "MemAvailable" in kilobytes
                 else free + buffers + cached)
    used = total - available
    return {"total": total, "free": free, "available": available, "used": used,
            "used_percent": used * 100.0 / total if total else 0.0,
            "buffers": buffers, "cached": cached, "shared": field["Shmem"],
            "swap_total": field["SwapTotal"], "swap_free": field["SwapFree"],
            "swap_used": field["SwapTotal"] - field["SwapFree"]}


def load(root="/proc"):
    load1, load5, load15, tasks = read_text("load", root, "loadavg").split()[:4]
    running, total = tasks.split("/")
    return {"load1": float(load1), "load5": float(load5), "load15": float(load15),
            "tasks_running": int(running), "tasks_total": int(total)}


def real_mounts(mounts_text, skip_types=PSEUDO_FILESYSTEMS | REMOTE_FILESYSTEMS):
    """[(mount point, fstype)] of the real mounts in a /proc/self/mounts text, by point."""
    by_point, devices = {}, {}
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = (unescape_octal(field) for field in fields[:3])
        if fstype in skip_types or (fstype == "overlay" and point != "/"):
            continue
        by_point[point] = (device, fstype)  # a later mount on the same point hides the earlier
    for point, (device, fstype) in sorted(by_point.items(), key=lambda item: len(item[0])):
        devices.setdefault(device, (point, fstype))
    by_name = {}
    for point, fstype in sorted(devices.values()):
        by_name.setdefault(mount_name(point), (point, fstype))
    return list(by_name.values())


def unescape_octal(field):
    """A mounts field with the kernel's \\040-style escapes (space, tab, newline, \\) undone."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


def mount_name(point):
    return "root" if point == "/" else name_part(point.strip("/"))


def disk_space(root="/proc", skip_types=PSEUDO_FILESYSTEMS | REMOTE_FILESYSTEMS):
    reading = {}
    for point, _ in real_mounts(read_text("disk", root, "self", "mounts"), skip_types):
        try:
            stats = os.statvfs(point)
        except OSError:
            continue  # unmounted since, or not ours to look into
        if stats.f_blocks == 0:
            continue  # df leaves out filesystems with no size too
        used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        avail = stats.f_bavail * stats.f_frsize
        name = mount_name(point)
        reading[f"{name}.total"] = stats.f_blocks * stats.f_frsize
        reading[f"{name}.used"] = used
        reading[f"{name}.avail"] = avail
        reading[f"{name}.used_percent"] = percent_rounded_up(used, used + avail)
        if stats.f_files:  # btrfs and some others have no inode count
            reading[f"{name}.inodes_used_percent"] = percent_rounded_up(
                stats.f_files - stats.f_ffree, stats.f_files)
    return reading


def percent_rounded_up(part, whole):
    """df's Use%: a whole percent, rounded up so that any use above 99 % shows 100."""
    return -(-part * 100 // whole) if whole else 0


def disk_io(root="/proc"):
    rows = {}
    for line in read_text("diskio", root, "diskstats").splitlines():
        fields = line.split()
        if len(fields) >= 14:
            rows[fields[2]] = [int(field) for field in fields[3:14]]
    reading = {}
    for name, numbers in rows.items():
        reads, sectors_read, writes, sectors_written, io_time_ms = (
            numbers[0], numbers[2], numbers[4], numbers[6], numbers[9])
        if is_partition(name, rows) or (name.startswith(UNUSED_UNLESS_BUSY) and not reads + writes):
            continue
        disk = name_part(name)
        reading.update({f"{disk}.reads": reads, f"{disk}.writes": writes,
                        f"{disk}.read_bytes": sectors_read * SECTOR_SIZE,
                        f"{disk}.write_bytes": sectors_written * SECTOR_SIZE,
                        f"{disk}.io_time_ms": io_time_ms})
    return reading


def is_partition(name, names):
    """Whether NAME is a partition of a disk in NAMES: sda1 of sda, nvme0n1p2 of nvme0n1."""
    stem = name.rstrip("0123456789")
    if stem == name:
        return False
    return stem in names or (stem.endswith("p") and stem[:-1][-1:].isdigit() and stem[:-1] in names)


def process_count(root="/proc"):
    threads = int(read_text("processes", root, "loadavg").split()[3].split("/")[1])
    try:
        pids = [entry.name for entry in os.scandir(root) if entry.name.isdigit()]
    except OSError as error:
        raise NotAvailable(f"processes: {root} not readable: {error.strerror}") from None
    reading = {"processes": len(pids), "threads": threads}
    reading.update(dict.fromkeys(sorted(set(PROCESS_STATES.values())), 0))
    for pid in pids:
        try:  # os.open/os.read: half the cost of open() on many small files
            descriptor = os.open(os.path.join(root, pid, "stat"), os.O_RDONLY)
            try:
                stat = os.read(descriptor, 1024)
            finally:
                os.close(descriptor)
        except OSError:
            continue  # exited since the listing
        state = PROCESS_STATES.get(stat[stat.rfind(b")") + 2:][:1].decode("ascii", "replace"))
        if state:
            reading[state] += 1
    return reading


def process_stats(pid, root="/proc"):
    stat = read_text(f"process {pid}", root, str(pid), "stat")
    # The command name, in parentheses, may hold spaces and ')': fields follow the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    # fields[0] is stat's field 3 (state): utime is 14, stime 15, num_threads 20, rss 24.
    return {"cpu_seconds": (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            "rss_bytes": int(fields[21]) * PAGE_SIZE, "threads": int(fields[17])}
