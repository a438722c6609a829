import os
import shutil
import socket
import subprocess
import time

from smanager import CommandError, SService, level


def _human(size):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size:.1f} PiB"


_POWERS = "KMGTPEZYRQ"


def _df_size(size):
    """SIZE bytes as ``df -h`` prints it (gnulib's human_readable with
    human_ceiling): powers of 1024, always rounded up, one decimal below 10
    (4.0K, 9.9G, 10G, 252G), a bare number below 1024."""
    if size < 1024:
        return str(size)
    exponent, scale = 1, 1024
    while size >= scale * 1024 and exponent < len(_POWERS):
        exponent, scale = exponent + 1, scale * 1024
    if size // scale < 10:
        tenths = -(-size * 10 // scale)
        if tenths < 100:
            return f"{tenths // 10}.{tenths % 10}{_POWERS[exponent - 1]}"
        return f"10{_POWERS[exponent - 1]}"  # 9.95K rounds up to 10K, no decimal
    whole = -(-size // scale)
    if whole == 1024 and exponent < len(_POWERS):
        return f"1.0{_POWERS[exponent]}"  # 1023.5K is 1.0M
    return f"{whole}{_POWERS[exponent - 1]}"


def _python_uptime():
    """uptime(1)'s line, for hosts without procps."""
    with open("/proc/uptime") as handle:
        seconds = int(float(handle.read().split()[0]))
    days, rest = divmod(seconds, 86400)
    hours, minutes = divmod(rest // 60, 60)
    span = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    span += f"{hours:2d}:{minutes:02d}" if hours else f"{minutes} min"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f" {time.strftime('%H:%M:%S')} up {span},  load average: {load}"


class SystemStatus(SService):
    """Simple example SService implementation"""

    concurrent = True  # every command only reads the system's state

    @level("read")
    def cmd_uptime(self):
        """Returns uptime of system"""
        try:
            return subprocess.run(["uptime"], capture_output=True, text=True,
                                  timeout=5, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return _python_uptime()

    @level("read")
    def toplevel_cmd_hostname(self):
        """Returns hostname of system"""
        return socket.gethostname()

    async def cmd_echo(self, *text):
        """Returns its arguments: a cheap check that the server answers

        Quote to keep spaces: echo 'two  spaces'.
        """
        return " ".join(text)

    @level("read")
    def cmd_load(self):
        """Returns the load averages over 1, 5 and 15 minutes"""
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"

    @level("read")
    def cmd_memory(self):
        """Returns memory in use and available (from /proc/meminfo)"""
        info = {}
        try:
            with open("/proc/meminfo") as handle:
                for line in handle:
                    key, _, value = line.partition(":")
                    info[key] = int(value.split()[0]) * 1024
        except OSError as exc:
            raise CommandError(f"memory: cannot read /proc/meminfo: {exc.strerror}") from None
        total, available = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0))
        used = total - available
        return (f"memory: {_human(used)} used of {_human(total)} ({used * 100 // total}%), "
                f"{_human(available)} available")

    @level("read")
    def cmd_disk(self, path="/"):
        """Returns disk usage of the filesystem holding PATH (default /)"""
        try:
            usage = shutil.disk_usage(path)
        except OSError as exc:
            raise CommandError(f"disk: {path}: {exc.strerror}") from None
        # The figures and percentage of df -h: space reserved for root is in
        # the size but neither used nor available, so the percentage is
        # used / (used + available), rounded up, and "-" with no blocks at all.
        used, available = usage.used, usage.free  # free: what a user may still write
        percent = f"{-(-used * 100 // (used + available))}%" if used + available else "-"
        return (f"{path}: {_df_size(used)} used of {_df_size(usage.total)} ({percent}), "
                f"{_df_size(available)} available")
