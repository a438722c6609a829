"""The /proc readers: this machine's values against free, df and /proc/loadavg, and
fixture files (written under tmp_path) for every format, the odd ones included."""

import os
import resource
import socket
import subprocess
import time

import pytest

from smanager.metrics import procfs, procfs_net
from smanager.metrics.procfs import NotAvailable

linux_only = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
MIB = 1024 * 1024


def fixture_root(tmp_path, files):
    """A fake /proc under tmp_path holding FILES ({relative path: text})."""
    root = tmp_path / "proc"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return str(root)


def free_b():
    """``free -b -w`` as {"Mem:": {"total": n, "used": n, ...}, "Swap:": {...}}."""
    header, *rows = subprocess.run(["free", "-b", "-w"], capture_output=True, text=True,
                                   check=True).stdout.splitlines()
    return {row.split()[0]: dict(zip(header.split(), map(int, row.split()[1:]))) for row in rows}


def df_b(path):
    """``df -B1 PATH``'s row as (size, used, avail, Use% as a number)."""
    output = subprocess.run(["df", "-B1", "--output=size,used,avail,pcent", path],
                            capture_output=True, text=True, check=True).stdout
    size, used, avail, percent = output.splitlines()[1].split()
    return int(size), int(used), int(avail), int(percent.rstrip("%"))


# -- this machine, against the tools admins trust ---------------------------------------

@linux_only
def test_memory_agrees_with_free_on_total_and_on_used_as_total_minus_available():
    free = free_b()
    reading = procfs.memory()
    mem, swap = free["Mem:"], free["Swap:"]
    assert reading["total"] == mem["total"]
    assert reading["swap_total"] == swap["total"]
    tolerance = max(64 * MIB, reading["total"] // 50)  # memory moves between the two reads
    for ours, theirs in [("available", "available"), ("used", "used"), ("free", "free"),
                         ("cached", "cache"), ("buffers", "buffers"), ("shared", "shared")]:
        assert abs(reading[ours] - mem[theirs]) <= tolerance, (ours, reading[ours], mem[theirs])
    assert reading["used"] == reading["total"] - reading["available"]
    assert abs(reading["swap_used"] - swap["used"]) <= tolerance


@linux_only
def test_disk_space_of_root_agrees_with_df():
    size, used, avail, df_percent = df_b("/")
    reading = procfs.disk_space()
    assert reading["root.total"] == size
    assert abs(reading["root.used"] - used) <= 64 * MIB  # other tests write files meanwhile
    assert abs(reading["root.avail"] - avail) <= 64 * MIB
    # df's own columns through our formula give df's Use%, and ours is within a file's write of it
    assert procfs.percent_rounded_up(used, used + avail) == df_percent
    assert abs(reading["root.used_percent"] - df_percent) <= 1


@linux_only
def test_load_is_what_proc_loadavg_says():
    def parsed(text):
        fields = text.split()
        return tuple(float(field) for field in fields[:3]), int(fields[3].split("/")[1])

    before = parsed(open("/proc/loadavg").read())
    reading = procfs.load()
    system_call = os.getloadavg()
    after = parsed(open("/proc/loadavg").read())  # the kernel updates the averages every 5 s
    assert (reading["load1"], reading["load5"], reading["load15"]) in (before[0], after[0])
    assert any(all(abs(ours - text) <= 0.006 for ours, text in zip(system_call, averages))
               for averages in (before[0], after[0]))
    assert 1 <= reading["tasks_running"] <= reading["tasks_total"]
    assert min(before[1], after[1]) - 200 <= reading["tasks_total"] <= max(before[1], after[1]) + 200


@linux_only
def test_cpu_times_add_up_to_uptime_times_the_cpus():
    uptime = float(open("/proc/uptime").read().split()[0])
    reading = procfs.cpu_times()
    assert set(reading) == set(procfs.CPU_STATES)
    total = sum(reading.values())
    assert total == pytest.approx(uptime * os.cpu_count(), rel=0.05)


@linux_only
@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_listening_socket_adds_one_listen_and_closing_it_takes_it_away(family, host):
    def listen():
        return procfs_net.tcp_states()["listen"]

    for _ in range(5):  # other programs on this machine may open or close listeners meanwhile
        before = listen()
        with socket.socket(family) as listener:
            try:
                listener.bind((host, 0))
            except OSError:
                pytest.skip(f"cannot bind {host}")
            listener.listen()
            during = listen()
        after = listen()
        if (during - before, after - during) == (1, -1):
            break
    assert (during - before, after - during) == (1, -1)


@linux_only
def test_an_open_connection_counts_as_two_established_sockets():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        before = procfs_net.tcp_states()["established"]
        with socket.create_connection(listener.getsockname()) as client:
            server, _ = listener.accept()
            with server:
                assert procfs_net.tcp_states()["established"] - before >= 2


@linux_only
def test_bytes_sent_over_loopback_show_in_lo_rx_bytes():
    before = procfs_net.network()["lo.rx_bytes"]
    payload = b"x" * 100_000
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as client:
            server, _ = listener.accept()
            with server:
                client.sendall(payload)
                received = 0
                while received < len(payload):  # bounded: sendall put every byte on the wire
                    received += len(server.recv(65536))
    assert procfs_net.network()["lo.rx_bytes"] - before >= len(payload)


@linux_only
def test_this_process_stats_agree_with_statm_times_and_status():
    reading = procfs.process_stats(os.getpid())
    resident_pages = int(open("/proc/self/statm").read().split()[1])
    assert abs(reading["rss_bytes"] - resident_pages * os.sysconf("SC_PAGE_SIZE")) <= 4 * MIB
    assert reading["rss_bytes"] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = os.times()
    assert reading["cpu_seconds"] == pytest.approx(times.user + times.system, abs=0.1)
    status_threads = next(int(line.split()[1]) for line in open("/proc/self/status")
                          if line.startswith("Threads:"))
    assert reading["threads"] == status_threads


@linux_only
def test_a_process_that_is_gone_is_not_available():
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(NotAvailable, match=rf"^process {child.pid}: /proc/{child.pid}/stat not readable"):
        procfs.process_stats(child.pid)


@linux_only
def test_an_exited_child_not_yet_waited_for_counts_as_a_zombie():
    before = procfs.process_count()
    child = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie
        reading = procfs.process_count()
    finally:
        child.wait()
    assert reading["zombies"] >= 1
    assert reading["processes"] == pytest.approx(
        len([name for name in os.listdir("/proc") if name.isdigit()]), abs=50)
    assert reading["threads"] >= reading["processes"] - 50
    assert before["running"] >= 1  # the reader itself


@linux_only
def test_disk_io_reports_the_whole_disk_under_root():
    reading = procfs.disk_io()
    disks = {metric.rpartition(".")[0] for metric in reading}
    assert disks, "no disk in /proc/diskstats"
    assert not any(disk.startswith("loop") and reading[f"{disk}.reads"] == 0 for disk in disks)
    assert sum(reading[f"{disk}.read_bytes"] for disk in disks) > 0


READERS = {
    "cpu": procfs.cpu_times, "memory": procfs.memory, "load": procfs.load,
    "disk": procfs.disk_space, "diskio": procfs.disk_io, "processes": procfs.process_count,
    "net": procfs_net.network, "tcp": procfs_net.tcp_states,
}
COUNTERS = {
    "cpu": procfs.CPU_COUNTERS, "memory": procfs.MEMORY_COUNTERS, "load": procfs.LOAD_COUNTERS,
    "disk": procfs.DISK_SPACE_COUNTERS, "diskio": procfs.DISK_IO_COUNTERS,
    "processes": procfs.PROCESS_COUNT_COUNTERS, "net": procfs_net.NETWORK_COUNTERS,
    "tcp": procfs_net.TCP_STATES_COUNTERS,
}


@linux_only
@pytest.mark.parametrize("name", READERS)
def test_each_reader_takes_well_under_a_collectors_budget(name):
    started = time.perf_counter()
    reading = READERS[name]()
    elapsed = time.perf_counter() - started
    assert reading and all(isinstance(value, (int, float)) for value in reading.values())
    assert elapsed < 0.2, f"{name} took {elapsed * 1000:.1f} ms (about 1 ms expected, 20 ms at most)"


@linux_only
@pytest.mark.parametrize("name", READERS)
def test_every_declared_counter_is_a_field_of_its_readers_metrics(name):
    fields = {metric.rpartition(".")[2] for metric in READERS[name]()}
    assert COUNTERS[name] <= fields
    assert all(procfs.is_counter(metric, COUNTERS[name]) == (metric.rpartition(".")[2] in COUNTERS[name])
               for metric in READERS[name]())


@pytest.mark.parametrize("name", READERS)
def test_a_root_without_proc_files_is_not_available_in_one_line(name, tmp_path):
    with pytest.raises(NotAvailable) as raised:
        READERS[name](root=str(tmp_path))
    message = str(raised.value)
    assert message.startswith(f"{name}: {tmp_path}/") and " not readable: " in message
    assert "\n" not in message


def test_a_root_without_proc_files_has_no_process_either(tmp_path):
    with pytest.raises(NotAvailable, match=rf"^process 1: {tmp_path}/1/stat not readable: No such file"):
        procfs.process_stats(1, root=str(tmp_path))


# -- fixture files: every format, the odd ones included ----------------------------------

def test_cpu_percent_from_two_readings_is_each_states_share_of_the_time_between(tmp_path):
    before = procfs.cpu_times(fixture_root(tmp_path / "a", {"stat": (
        "cpu  100 20 30 1000 50 0 10 5 7 0\ncpu0 50 10 15 500 25 0 5 2 3 0\nintr 12345\n")}))
    after = procfs.cpu_times(fixture_root(tmp_path / "b", {"stat": (
        "cpu  160 20 50 1110 50 0 20 5 9 0\ncpu0 80 10 25 555 25 0 10 2 4 0\nintr 12399\n")}))
    assert before["user"] == 100 / procfs.CLOCK_TICKS
    assert procfs.cpu_percent(before, after) == pytest.approx(
        {"user": 30.0, "nice": 0.0, "system": 10.0, "idle": 55.0, "iowait": 0.0, "irq": 0.0,
         "softirq": 5.0, "steal": 0.0}, abs=1e-9)
    assert procfs.cpu_percent(after, after) == dict.fromkeys(procfs.CPU_STATES, 0.0)


def test_an_iowait_counter_that_goes_back_counts_as_no_time():
    before = {"user": 1.0, "idle": 1.0, "iowait": 5.0}
    after = {"user": 2.0, "idle": 4.0, "iowait": 4.0}
    assert procfs.cpu_percent(before, after) == {"user": 25.0, "idle": 75.0, "iowait": 0.0}


def test_an_old_kernels_cpu_line_without_iowait_gives_only_the_states_it_has(tmp_path):
    before = procfs.cpu_times(fixture_root(tmp_path / "a", {"stat": "cpu  100 0 50 850\n"}))
    after = procfs.cpu_times(fixture_root(tmp_path / "b", {"stat": "cpu  150 0 100 950\n"}))
    assert set(before) == {"user", "nice", "system", "idle"}
    assert procfs.cpu_percent(before, after) == pytest.approx(
        {"user": 25.0, "nice": 0.0, "system": 25.0, "idle": 50.0}, abs=1e-9)


MEMINFO = """MemTotal:        1000000 kB
MemFree:          100000 kB
MemAvailable:     600000 kB
Buffers:           50000 kB
Cached:           300000 kB
SwapCached:            0 kB
Shmem:             10000 kB
SReclaimable:      40000 kB
SwapTotal:        200000 kB
SwapFree:         150000 kB
HugePages_Total:       0
"""


def test_memory_is_in_bytes_with_used_as_total_minus_available_and_cache_as_free_shows_it(tmp_path):
    reading = procfs.memory(fixture_root(tmp_path, {"meminfo": MEMINFO}))
    assert reading == {
        "total": 1_024_000_000, "free": 102_400_000, "available": 614_400_000,
        "used": 409_600_000, "used_percent": 40.0, "buffers": 51_200_000,
        "cached": 348_160_000, "shared": 10_240_000, "swap_total": 204_800_000,
        "swap_free": 153_600_000, "swap_used": 51_200_000}


def test_memory_without_mem_available_estimates_it_as_free_buffers_and_cache(tmp_path):
    old = "".join(line + "\n" for line in MEMINFO.splitlines()
                  if not line.startswith(("MemAvailable", "SReclaimable")))
    reading = procfs.memory(fixture_root(tmp_path, {"meminfo": old}))
    assert reading["available"] == (100_000 + 50_000 + 300_000) * 1024
    assert reading["used"] == (1_000_000 - 450_000) * 1024


def test_load_parses_the_averages_and_the_task_counts(tmp_path):
    reading = procfs.load(fixture_root(tmp_path, {"loadavg": "0.50 1.25 12.00 3/456 7890\n"}))
    assert reading == {"load1": 0.5, "load5": 1.25, "load15": 12.0,
                       "tasks_running": 3, "tasks_total": 456}


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:1234 5 1 2 0 0 0 0 678 9 3 4 0 0 0 0
eth0.100: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0
 odd:name: 11 12 13 14 0 0 0 0 15 16 17 18 0 0 0 0
"""


def test_network_reads_each_interface_even_glued_to_its_numbers_or_holding_colons(tmp_path):
    reading = procfs_net.network(fixture_root(tmp_path, {"net/dev": NET_DEV}))
    assert {metric.rpartition(".")[0] for metric in reading} == {"lo", "eth0", "eth0_100", "odd_name"}
    assert {field: reading[f"eth0.{field}"] for field in procfs_net.NETWORK_FIELDS} == {
        "rx_bytes": 1234, "rx_packets": 5, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 678, "tx_packets": 9, "tx_errors": 3, "tx_dropped": 4}
    assert reading["odd_name.tx_dropped"] == 18 and reading["lo.rx_bytes"] == 1000


TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode\n")


def tcp_line(number, state):
    return (f"   {number}: 0100007F:1F90 00000000:0000 {state} 00000000:00000000 00:00000000"
            f" 00000000  1000        0 {number}00 1 0000000000000000 100 0 0 10 0\n")


def test_tcp_states_count_both_tables_and_name_every_state(tmp_path):
    root = fixture_root(tmp_path, {
        "net/tcp": TCP_HEADER + tcp_line(0, "0A") + tcp_line(1, "01") + tcp_line(2, "06")
        + tcp_line(3, "06") + tcp_line(4, "0C"),
        "net/tcp6": TCP_HEADER + tcp_line(0, "0A") + tcp_line(1, "08")})
    reading = procfs_net.tcp_states(root)
    assert reading == {"established": 1, "syn_sent": 0, "syn_recv": 0, "fin_wait1": 0,
                       "fin_wait2": 0, "time_wait": 2, "close": 0, "close_wait": 1,
                       "last_ack": 0, "listen": 2, "closing": 0, "new_syn_recv": 1}


def test_tcp_states_without_ipv6_count_ipv4_alone(tmp_path):
    root = fixture_root(tmp_path, {"net/tcp": TCP_HEADER + tcp_line(0, "0A")})
    assert procfs_net.tcp_states(root)["listen"] == 1


DISKSTATS = """   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 10 0 80 5 0 0 0 0 0 5 5
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sda 100 5 2000 50 200 10 4000 70 0 120 130
   8       1 sda1 90 5 1800 40 190 10 3900 60 0 100 110
   8      16 sdb1 4 10 4 10
 259       0 nvme0n1 7 0 70 1 8 0 80 1 0 9 2 0 0 0 0 0 0
 259       1 nvme0n1p1 6 0 60 1 7 0 70 1 0 8 2 0 0 0 0 0 0
 179       0 mmcblk0 1 0 8 1 1 0 8 1 0 1 2
 179       2 mmcblk0p2 1 0 8 1 1 0 8 1 0 1 2
 202       1 xvda1 3 0 24 1 4 0 32 1 0 5 2
 253       0 dm-0 5 0 40 1 6 0 48 1 0 7 2
   9       0 md0 2 0 16 1 2 0 16 1 0 3 2
"""


def test_disk_io_counts_whole_disks_and_virtual_ones_only_once_used(tmp_path):
    reading = procfs.disk_io(fixture_root(tmp_path, {"diskstats": DISKSTATS}))
    assert {metric.rpartition(".")[0] for metric in reading} == {
        "loop1", "sda", "nvme0n1", "mmcblk0", "xvda1", "dm-0", "md0"}
    assert {metric: value for metric, value in reading.items() if metric.startswith("sda.")} == {
        "sda.reads": 100, "sda.writes": 200, "sda.read_bytes": 2000 * 512,
        "sda.write_bytes": 4000 * 512, "sda.io_time_ms": 120}


def test_real_mounts_leave_out_pseudo_memory_and_network_filesystems():
    mounts = """proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw 0 0
tmpfs /run tmpfs rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
overlay / overlay rw,lowerdir=/a 0 0
overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0
/dev/sda2 /home ext4 rw 0 0
/dev/sda3 /mnt/my\\040disk xfs rw 0 0
server:/export /mnt/nfs nfs4 rw 0 0
/dev/sda2 /srv/bound ext4 rw 0 0
/dev/sdb1 /data ext4 rw 0 0
/dev/sdc1 /data btrfs rw 0 0
/dev/sdd1 /root ext4 rw 0 0
"""
    assert procfs.real_mounts(mounts) == [  # /root's name would be /'s: the first keeps it
        ("/", "overlay"), ("/data", "btrfs"), ("/home", "ext4"), ("/mnt/my disk", "xfs")]


def test_mount_points_are_named_readably():
    assert [procfs.mount_name(point) for point in ("/", "/var/log", "/mnt/my disk", "/srv/a.b")] == [
        "root", "var_log", "mnt_my_disk", "srv_a_b"]


def test_disk_space_of_listed_mounts_is_computed_as_df_does(tmp_path):
    spaced = tmp_path / "with space"
    spaced.mkdir()
    escaped = str(spaced).replace(" ", "\\040")
    root = fixture_root(tmp_path, {"self/mounts": (
        f"/dev/a / ext4 rw 0 0\n/dev/b {escaped} ext4 rw 0 0\n/dev/c /no/such/point ext4 rw 0 0\n"
        "/dev/d /proc ext4 rw 0 0\n")})  # /proc has no blocks: left out, as df does
    reading = procfs.disk_space(root)
    name = procfs.mount_name(str(spaced))
    assert name.endswith("with_space")
    assert {metric.rpartition(".")[0] for metric in reading} == {"root", name}
    stats = os.statvfs(spaced)
    assert reading[f"{name}.total"] == stats.f_blocks * stats.f_frsize
    assert abs(reading[f"{name}.avail"] - stats.f_bavail * stats.f_frsize) <= 64 * MIB


def test_df_use_percent_rounds_up():
    assert [procfs.percent_rounded_up(used, 1000) for used in (0, 1, 10, 991, 999, 1000)] == [
        0, 1, 1, 100, 100, 100]
    assert procfs.percent_rounded_up(0, 0) == 0


def stat_line(pid, state, name="worker"):
    return (f"{pid} ({name}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 250 150 9 9 20 0 7 0"
            f" 12345 1000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")


def test_process_count_counts_each_state_and_takes_threads_from_loadavg(tmp_path):
    states = "RSSSIDZZTt"
    files = {f"{pid}/stat": stat_line(pid, state) for pid, state in enumerate(states * 50, start=1)}
    files[f"{len(states) * 50 + 1}/stat"] = stat_line(999, "S", name="a) Z) R")  # a name to mislead
    files["self/stat"] = stat_line(1, "R")  # not a number: not counted
    files["loadavg"] = "0.00 0.00 0.00 2/777 99\n"
    root = fixture_root(tmp_path, files)
    started = time.perf_counter()
    reading = procfs.process_count(root)
    elapsed = time.perf_counter() - started
    assert reading == {"processes": 501, "threads": 777, "running": 50, "sleeping": 201,
                       "blocked": 50, "zombies": 100, "stopped": 100}
    assert elapsed < 0.2, f"501 processes took {elapsed * 1000:.1f} ms (20 ms at most expected)"


def test_process_stats_read_past_a_name_holding_parentheses_and_spaces(tmp_path):
    root = fixture_root(tmp_path, {"42/stat": stat_line(42, "S", name="my (odd) ) prog")})
    assert procfs.process_stats(42, root) == {
        "cpu_seconds": (250 + 150) / procfs.CLOCK_TICKS,
        "rss_bytes": 300 * procfs.PAGE_SIZE, "threads": 7}


FILES_ROOT = "/proc/"  # the real /proc, by another name: read through the files, not netlink


def test_tcp_states_by_netlink_agree_with_the_proc_files():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        for _ in range(5):  # sockets come and go meanwhile: agree on one of a few looks
            by_files = procfs_net.tcp_states(root=FILES_ROOT)
            by_netlink = procfs_net.tcp_states()
            if by_files == by_netlink:
                break
        assert by_netlink == by_files and by_netlink["listen"] >= 1


def test_tcp_states_fall_back_to_the_files_where_netlink_is_refused(monkeypatch):
    def refused():
        raise PermissionError(1, "netlink is not allowed here")
    monkeypatch.setattr("smanager.metrics.sockdiag.tcp_state_counts", refused)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert procfs_net.tcp_states()["listen"] >= 1
