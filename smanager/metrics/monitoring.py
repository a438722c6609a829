"""The monitor's engine: collectors, the store, the latest values, alerts, exports.

Rules:

1. Every sample, collected or pushed, goes one way (``take``): to the store,
   to the latest values (``latest``: name -> (value, stamp), what `monitor
   last` and Prometheus show), to the alerts on its metric, and to the exports.
2. The store is STATE_DIR/metrics.db, held with an flock on metrics.lock.  When
   another smanager holds it, or the directory cannot be made, the samples go to
   a private temporary directory removed at close: the server still monitors,
   nothing is shared or half-written, and ``where`` says so (`monitor list`).
3. The collectors are the bundled defaults (unless ``defaults = false``), then
   the config file's tables, then those `monitor add` made (monitor.json), a
   later one of a name replacing an earlier.  A collector that cannot be made is
   a problem listed by `monitor list`, never a reason not to start.
4. Alert notices go to the log, to every subscriber (a bounded queue each: a
   subscriber that does not read loses notices, counted, never memory), and to
   the alert's script (``action=script:NAME``), which is given, among the
   parameters it declares, alert, metric, state, previous, value and message.
5. Housekeeping: the alerts' clocks once a second while there are alerts (once a
   minute without); every hour, pruning (in a thread: it writes through the
   store's writer).
6. A push is answered OK only once its sample is queued for the store, and
   only while the writer keeps up: past PUSH_QUEUE waiting samples a push
   waits for room (so a flood is slowed to what the disk takes, and an OK
   sample is committed within about a flush interval, kill -9 or not); a
   sample the store still cannot take is an error, never a silent OK.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time

from smanager.supervise.checks import SpecError
from smanager.supervise.statedb import StateDirBusy, take_lock

from . import kinds as collector_kinds
from .alertbook import AlertBook
from .collecting import Collecting
from .exporting import Exports
from .settings import Added, check_collector_table
from .store import SampleStore
from .system import DEFAULTS

log = logging.getLogger("smanager.monitor")
PRUNE_EVERY = 3600.0
PUSH_QUEUE = 20_000  # samples waiting for the writer past which a push waits its turn
ROOM_WAIT, ROOM_POLL = 10.0, 0.005
SUBSCRIBER_QUEUE = 1000
ALERT_PARAMS = ("alert", "metric", "state", "previous", "value", "message")


class Monitoring:
    def __init__(self, settings, *, sibling, wall=time.time):
        self.settings = settings
        self.sibling = sibling  # SService.sibling: proc and scripts
        self.wall = wall
        self.latest = {}  # name -> (value, stamp)
        self.problems = []  # one line each: collectors that could not be made
        self.subscribers = {}  # queue -> notices dropped
        self.where = None
        self.store = self.collecting = self.exports = None
        self._lock_fd = self._temporary = None
        self._housekeeping = None
        self._alert_added = asyncio.Event()  # wakes the housekeeping: alerts need it each second
        self.kinds, self.kind_problems = collector_kinds.load_kinds(settings.collectors_dir)
        self.alerts = AlertBook(self._tell, self._interval_of)

    # -- opening and closing ---------------------------------------------------------------

    async def open(self):
        self.exports = Exports(self.settings.export, self._latest_now)
        directory = await asyncio.to_thread(self._claim_directory)
        self.added = Added(os.path.join(directory, "monitor.json"))
        self.store = await asyncio.to_thread(
            SampleStore, os.path.join(directory, "metrics.db"), retention=self.settings.retention,
            flush_every=self.settings.flush_every)
        self.collecting = Collecting(self.take, wall=self.wall)
        for name, table in self.wanted().items():
            self._start_collector(name, table)
        now = self.wall()
        for text in self.settings.alerts:
            self.alerts.add(text, configured=True, now=now)  # checked by read_settings' caller
        for text in self.added.alerts:
            try:
                self.alerts.add(text, now=now)
            except ValueError as exc:
                self.problems.append(f"alert {text!r} in monitor.json: {exc}")
        await self.exports.start()
        self._housekeeping = asyncio.get_running_loop().create_task(self._keep_house())

    def _claim_directory(self):
        wanted = self.settings.state_dir
        try:
            os.makedirs(wanted, mode=0o700, exist_ok=True)
            self._lock_fd = take_lock(wanted, "metrics.lock")
            self.where = os.path.join(wanted, "metrics.db")
            return wanted
        except (StateDirBusy, OSError) as exc:
            why = str(exc) if isinstance(exc, StateDirBusy) else f"{wanted}: {exc.strerror}"
        self._temporary = tempfile.mkdtemp(prefix="smanager-metrics-")
        self.where = f"memory of this run only ({why})"
        log.warning("monitor: samples are kept until the server stops only: %s", why)
        return self._temporary

    async def close(self):
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self.collecting is not None:
            await self.collecting.close()
        if self.exports is not None:
            await self.exports.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        for queue in self.subscribers:
            queue.put_nowait(None)  # room is kept for it: ends the stream
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)

    # -- samples ----------------------------------------------------------------------------

    def take(self, name, value, stamp):
        """One sample, collected or pushed (rule 1); False if the store dropped it."""
        stored = self.store.add(name, value, stamp)
        previous = self.latest.get(name)
        if previous is None or stamp >= previous[1]:
            self.latest[name] = (value, stamp)
        self.alerts.feed(name, value, stamp)
        self.exports.offer(name, value, stamp)
        return stored

    async def room(self):
        """Return once the store's writer has caught up enough to take more pushed
        samples (rule 6); False if it has not within ROOM_WAIT seconds."""
        deadline = time.monotonic() + ROOM_WAIT
        while self.store.queued > PUSH_QUEUE:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(ROOM_POLL)  # the writer is a thread: nothing to await but time
        return True

    def _latest_now(self):
        return self.latest

    # -- collectors --------------------------------------------------------------------------

    def wanted(self):
        """NAME -> table of every collector that should run (rule 3)."""
        tables = {name: {"collector": name} for name in DEFAULTS} if self.settings.defaults else {}
        tables.update(self.settings.collectors)
        tables.update(self.added.collectors)
        return tables

    def _start_collector(self, name, table):
        try:
            collector = collector_kinds.make(self.kinds, name, table, self._program_groups)
        except SpecError as exc:
            self.problems.append(str(exc))
            log.error("monitor: %s", exc)
            return
        self.collecting.add(collector)

    def add_collector(self, name, table):
        """Make, start and keep collector NAME (monitor add); SpecError, one line."""
        check_collector_table(name, table)
        if name in self.collecting.entries:
            raise SpecError(f"a collector named {name} is running already (monitor remove {name})")
        collector = collector_kinds.make(self.kinds, name, table, self._program_groups)
        self.collecting.add(collector)
        self.added.collectors[name] = dict(table)
        self.added.save()
        return collector

    def remove_collector(self, name):
        """Stop collector NAME and forget it; one the config file names comes back at the
        next start unless it was added at run time (the README says so)."""
        self.collecting.remove(name)
        if self.added.collectors.pop(name, None) is not None:
            self.added.save()

    def _program_groups(self):
        proc = self.sibling("proc")
        supervisor = getattr(proc, "supervisor", None)
        if supervisor is None:
            return {}
        return {name: program.run.pgid for name, program in supervisor.programs.items()
                if program.run is not None and getattr(program.run, "pgid", None)}

    def _interval_of(self, metric):
        entry = self.collecting.entries.get(metric.partition(".")[0]) if self.collecting else None
        return entry.schedule.interval if entry is not None else None

    # -- alerts ------------------------------------------------------------------------------

    def add_alert(self, words):
        alert = self.alerts.add(words, now=self.wall())
        self._save_alerts()
        self._alert_added.set()
        return alert

    def remove_alert(self, alert_id):
        alert = self.alerts.remove(alert_id)
        self._save_alerts()
        return alert

    def _save_alerts(self):
        self.added.alerts = self.alerts.added_texts()
        self.added.save()

    def subscribe(self):
        queue = asyncio.Queue(SUBSCRIBER_QUEUE + 1)  # one more: the end, always fits
        self.subscribers[queue] = 0
        return queue

    def unsubscribe(self, queue):
        self.subscribers.pop(queue, None)

    def _tell(self, alert, notice):
        """Rule 4."""
        line = f"alert {alert.id}: {notice.message}"
        (log.warning if notice.state in ("FIRING", "STALE", "FLAPPING") else log.info)(line)
        event = {"alert": alert.id, "kind": notice.kind, "metric": alert.rule.metric,
                 "state": notice.state, "previous": notice.previous, "value": notice.value,
                 "at": notice.at, "message": notice.message}
        for queue in self.subscribers:
            if queue.qsize() < SUBSCRIBER_QUEUE:
                queue.put_nowait(event)
            else:
                self.subscribers[queue] += 1
        if alert.rule.action.startswith("script:"):
            self._run_script(alert.rule.action.removeprefix("script:"), event)

    def _run_script(self, name, event):
        scripts = self.sibling("scripts")
        script = getattr(scripts, "scripts", {}).get(name)
        if script is None or scripts.runs is None:
            log.error("alert %s: its action script %s is not available", event["alert"], name)
            return
        declared = {param.name for param in script.params}
        given = {key: "" if event[key] is None else str(event[key])
                 for key in ALERT_PARAMS if key in declared}
        try:
            run = scripts.runs.start(script, given, user="monitor")
        except Exception as exc:  # noqa: BLE001 - Refused, or a script that cannot run: logged
            log.error("alert %s: script %s not run: %s", event["alert"], name, exc)
            return
        log.info("alert %s: script %s started as run %s", event["alert"], name, run.id)

    # -- housekeeping -----------------------------------------------------------------------

    async def _keep_house(self):
        pruned_at = time.monotonic()
        while True:
            # Alerts need a look every second (STALE, reminders); without any, the
            # hourly pruning needs one a minute: an idle monitor stays asleep.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0 if self.alerts.alerts else 60.0):
                    await self._alert_added.wait()
            self._alert_added.clear()
            self.alerts.check(self.wall())
            if time.monotonic() - pruned_at >= PRUNE_EVERY:
                pruned_at = time.monotonic()
                try:
                    await asyncio.to_thread(self.store.prune)
                except Exception as exc:  # noqa: BLE001 - logged; the next hour tries again
                    log.error("monitor: pruning failed", exc_info=exc)
