import asyncio
import datetime
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from smanager import CommandError, SService, level

MIN_INTERVAL, MAX_INTERVAL = 1.0, 86400.0


def _snapshot():
    """A small picture of the host's state, as a dict."""
    load = os.getloadavg()
    disk = shutil.disk_usage("/")
    meminfo = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    meminfo[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "load": [round(value, 2) for value in load],
        "memory": {"total": meminfo.get("MemTotal"), "available": meminfo.get("MemAvailable")},
        "disk_root": {"total": disk.total, "used": disk.used, "free": disk.free},
    }


class ScrapMan(SService):
    """Captures snapshots of the host's status to files, periodically

    Options ([service.scrapman] in the config file): capture_dir, max_captures
    (oldest files are removed beyond it, default 100), interval (seconds,
    default 60) and autostart (default false).
    """

    def __init__(self):
        super().__init__()
        self.interval = 60.0
        self.capture_dir = Path(tempfile.gettempdir()) / f"smanager-scrapman-{os.getuid()}"
        self.max_captures = 100
        self.last_capture = None
        self.count = 0
        self._loop = None
        self._interval_changed = None

    async def start(self):
        self.capture_dir = Path(self.options.get("capture_dir", self.capture_dir))
        self.max_captures = max(1, int(self.options.get("max_captures", self.max_captures)))
        self.interval = self._checked(float(self.options.get("interval", self.interval)))
        self._interval_changed = asyncio.Event()
        if self.options.get("autostart"):
            self._start_loop()

    @property
    def capturing(self):
        return self._loop is not None and not self._loop.done()

    # -- commands ------------------------------------------------------------------

    async def toplevel_cmd_captest(self):
        """Takes one capture now and returns the file it wrote"""
        return f"captured {await self._capture()}"

    async def toplevel_cmd_capture_at(self, seconds: float):
        """Captures every SECONDS seconds (1 to 86400)"""
        self.interval = self._checked(seconds)
        self._interval_changed.set()
        return self._describe_freq()

    async def toplevel_cmd_scrapfreq(self, per_minute: float):
        """Captures PER_MINUTE times a minute (e.g. 0.5 is every two minutes)"""
        if per_minute <= 0:
            raise CommandError("scrapfreq: PER_MINUTE must be more than 0")
        return await self.toplevel_cmd_capture_at(60.0 / per_minute)

    async def toplevel_cmd_startcap(self):
        """Starts capturing periodically"""
        if self.capturing:
            return f"already capturing; {self._describe_freq()}"
        self._start_loop()
        return f"started; {self._describe_freq()}; files in {self.capture_dir}"

    async def toplevel_cmd_stopcap(self):
        """Stops capturing"""
        if not self.capturing:
            return "not capturing"
        self._loop.cancel()
        await asyncio.gather(self._loop, return_exceptions=True)
        return f"stopped after {self.count} captures"

    @level("read")
    async def cmd_get_heartbeat(self):
        """Returns whether capturing runs, and when the last capture was taken"""
        state = "capturing" if self.capturing else "not capturing"
        if self.last_capture is None:
            return f"{state}; no capture yet"
        stamp = datetime.datetime.fromtimestamp(self.last_capture).isoformat(timespec="seconds")
        return (f"{state}; last capture {stamp} ({time.time() - self.last_capture:.1f} s ago); "
                f"{self.count} captures")

    @level("read")
    async def cmd_get_freq(self):
        """Returns how often captures are taken"""
        return self._describe_freq()

    # -- the work ------------------------------------------------------------------

    def _checked(self, seconds):
        if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
            raise CommandError(f"interval must be {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds")
        return seconds

    def _describe_freq(self):
        return f"every {self.interval:g} s ({60.0 / self.interval:g} per minute)"

    def _start_loop(self):
        self._loop = self.run_in_background(self._capture_loop(), name="scrapman-captures")

    async def _capture_loop(self):
        while True:
            await self._capture()
            self._interval_changed.clear()
            try:
                await asyncio.wait_for(self._interval_changed.wait(), self.interval)
            except TimeoutError:
                pass

    async def _capture(self):
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, self._write_capture)
        self.last_capture = time.time()
        self.count += 1
        return path

    def _write_capture(self):
        self.capture_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.capture_dir / f"capture-{stamp}.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(_snapshot(), indent=2) + "\n")
        partial.replace(path)  # readers never see half a file
        for old in sorted(self.capture_dir.glob("capture-*.json"))[:-self.max_captures]:
            old.unlink(missing_ok=True)
        return path
