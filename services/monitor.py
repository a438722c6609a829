"""monitor: metrics collected by plugins, kept in sqlite, queried, charted, alerted.

The engine is smanager.metrics (monitoring ties it together); this file is its
command surface.  Settings are [service.monitor]; see the README's "Monitoring".
"""

import asyncio
import fnmatch
import logging
import math
import time

from smanager import CommandError, Shown, SService, level
from smanager.metrics import report, words
from smanager.metrics.collecting import CollectError
from smanager.metrics.exporting import ExportError
from smanager.metrics.monitoring import PUSH_QUEUE, Monitoring
from smanager.metrics.settings import read_settings
from smanager.metrics.spark import summary_line
from smanager.supervise.checks import SpecError
from smanager.supervise.scriptruns import current_table

log = logging.getLogger("smanager.monitor")
LEVELS = ("none", "read", "operate", "admin")
STALE_INTERVALS = 2
WATCH_LEAST = 0.1


class Monitor(SService):
    """Metrics: collectors, the latest values, history, charts, alerts

    Collectors are [service.monitor.collectors.NAME] tables, or added with
    'monitor add'; cpu, mem, load, disk and net run with no configuration.
    """

    command_timeout = math.inf  # watch and subscribe stream until Ctrl-C; the rest are quick

    def __init__(self):
        self.monitoring = None

    async def start(self):
        table = current_table(self.options, self.config_file, "monitor")
        try:
            settings = read_settings(table)
        except SpecError as exc:
            raise CommandError(str(exc)) from None
        self.monitoring = Monitoring(settings, sibling=self.sibling)
        try:
            await self.monitoring.open()
        except BaseException as exc:
            await self.monitoring.close()
            if isinstance(exc, ExportError):  # the scrape port is taken, say
                raise CommandError(str(exc)) from None
            raise

    async def stop(self):
        if self.monitoring is not None:
            await self.monitoring.close()

    # -- looking ---------------------------------------------------------------------------

    @level("read")
    async def cmd_list(self):
        """Collectors: interval, last run, time taken, runs, skipped ticks, errors

        Then where the samples are kept, and how each export is doing.
        """
        monitoring = self.monitoring
        store = monitoring.store
        store_line = (f"store: {monitoring.where}; {store.written} samples written, "
                      f"{store.dropped} dropped")
        kinds = {name: type(entry.collector).name or type(entry.collector).__name__.lower()
                 for name, entry in monitoring.collecting.entries.items()}
        return report.collectors(monitoring.collecting.status(), kinds,
                                 monitoring.kind_problems + monitoring.problems, store_line,
                                 monitoring.exports.status(), monitoring.wall())

    @level("read")
    async def cmd_last(self, pattern="*"):
        """The latest value of each metric matching PATTERN (* and ?), and its age

        STALE marks a metric whose collector has missed two runs.
        """
        monitoring = self.monitoring
        latest = dict(monitoring.latest)
        # and what the store last had: metrics not seen since a restart
        for name, value, stamp in await asyncio.to_thread(monitoring.store.last, pattern):
            latest.setdefault(name, (value, stamp))
        now = monitoring.wall()
        rows = []
        for name in sorted(latest):
            if fnmatch.fnmatchcase(name, pattern):
                value, stamp = latest[name]
                interval = monitoring._interval_of(name)
                stale = interval is not None and now - stamp > STALE_INTERVALS * interval + 1
                rows.append((name, _finite(value), stamp, stale))
        return report.last(rows, now)

    @level("read")
    async def cmd_get(self, name, since="1h", until="now", step="1m", agg="avg"):
        """NAME's values over time: get NAME [since=1h] [until=now] [step=1m] [agg=avg]

        agg is avg, min, max, sum or count; since and until are ages (90m, 2d) or
        Unix seconds.  The values come from the finest tier that still holds them.
        """
        monitoring = self.monitoring
        now = monitoring.wall()
        start, end, seconds = words.when(since, now), words.when(until, now), words.step(step)
        try:
            rows = await asyncio.to_thread(monitoring.store.get, name, start, end, seconds, agg)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return report.series(name, rows, monitoring.store.tier(start, seconds, now), seconds, agg)

    @level("read")
    async def cmd_spark(self, name, since="1h", width: int = 60):
        """A one-line chart of NAME with its min, max and last: spark NAME [since=1h]"""
        if not 1 <= width <= 500:
            raise CommandError("width must be 1-500")
        monitoring = self.monitoring
        now = monitoring.wall()
        start = words.when(since, now)
        step = max(1, math.ceil((now - start) / width))
        rows = await asyncio.to_thread(monitoring.store.get, name, start, now, step, "avg")
        by_bucket = dict(rows)
        first = int(start // step * step)
        values = [by_bucket.get(bucket) for bucket in range(first, int(now) + 1, step)]
        line = summary_line(name, values, since, width)
        return Shown({"name": name, "since": start, "step": step, "points": rows}, line)

    @level("read")
    async def cmd_watch(self, name, *more, every="1"):
        """Print the latest values of NAME... (patterns too) every EVERY seconds until Ctrl-C"""
        names = (name, *more)
        seconds = words.seconds("every", every)
        if seconds < WATCH_LEAST:
            raise CommandError(f"every must be at least {WATCH_LEAST:g} s")
        monitoring = self.monitoring
        while True:
            now = monitoring.wall()
            shown = {name: value for name, (value, _) in sorted(monitoring.latest.items())
                     if any(fnmatch.fnmatchcase(name, pattern) for pattern in names)}
            text = "  ".join(f"{name} {report.value_text(_finite(value))}"
                             for name, value in shown.items()) or "no values yet"
            yield Shown({"at": now, "values": shown}, f"{_clock(now)}  {text}")
            await asyncio.sleep(seconds)

    @level("read")
    async def cmd_alerts(self):
        """Every alert's state now: OK, FIRING, STALE or FLAPPING, since when, last value"""
        return self._alert_table()

    @level("read")
    async def cmd_subscribe(self):
        """Stream alert changes (and reminders) into this session as they happen, until Ctrl-C"""
        monitoring = self.monitoring
        queue = monitoring.subscribe()
        try:
            yield Shown({"subscribed": True}, "subscribed to alert changes; Ctrl-C ends")
            while (event := await queue.get()) is not None:
                yield Shown(event, report.notice_text(event))
        finally:
            monitoring.unsubscribe(queue)

    # -- acting ------------------------------------------------------------------------------

    @level("operate")
    async def cmd_collect(self, name):
        """Run collector NAME now; shows the values it gave"""
        monitoring = self.monitoring
        if name not in monitoring.collecting.entries:
            raise CommandError(_no_collector(name, monitoring))
        try:
            given = await monitoring.collecting.collect_now(name)
        except CollectError as exc:
            raise CommandError(str(exc)) from None
        entry = monitoring.collecting.entries.get(name)
        if not given and entry is not None and entry.last_error is not None:
            raise CommandError(f"{name}: {entry.last_error[1]}")
        lines = [f"{metric} {report.value_text(_finite(value))}"
                 for metric, value in sorted(given.items())]
        return Shown(given, "\n".join(lines) or f"{name} gave no values")

    @level("operate")
    async def cmd_push(self, name, value, timestamp=None):
        """Add a sample: push NAME VALUE [TIMESTAMP] (seconds since 1970; default now)"""
        words.metric_name(name)
        number = words.number("VALUE", value)
        monitoring = self.monitoring
        now = monitoring.wall()
        stamp = now if timestamp is None else words.number("TIMESTAMP", timestamp)
        if not now - monitoring.settings.retention.raw < stamp <= now + 600:
            raise CommandError("TIMESTAMP must be within the raw retention and at most "
                               "10 min ahead")
        if monitoring.store.queued > PUSH_QUEUE and not await monitoring.room():
            raise CommandError("the sample store is behind; sample not taken, try again")
        if not monitoring.take(name, number, stamp):
            raise CommandError("the sample store's queue is full; sample not taken")
        return Shown({"name": name, "value": number, "at": stamp}, "OK")

    @level("read")  # list is read; add and rm need operate, checked below
    async def cmd_alert(self, *words, session):
        """Alerts: alert add NAME > 90 [options], alert list, alert rm ID

        Options: for=N breaching samples before FIRING, clear=X to end it
        (hysteresis), repeat=1h reminders, action=log or action=script:NAME.
        """
        monitoring = self.monitoring
        what, rest = (words[0], words[1:]) if words else ("list", ())
        if what == "list" and not rest:
            return self._alert_table()
        _need(session, "operate", f"alert {what}")
        if what == "add":
            try:
                alert = monitoring.add_alert(rest)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            return Shown(alert.row(), f"alert {alert.id}: {alert.rule}")
        if what == "rm" and len(rest) == 1 and rest[0].isdigit():
            try:
                alert = monitoring.remove_alert(int(rest[0]))
            except KeyError:
                raise CommandError(f"no alert {rest[0]}") from None
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            return Shown({"removed": alert.id}, f"alert {alert.id} removed")
        raise CommandError("alert add NAME OP THRESHOLD [options], alert list, or alert rm ID")

    @level("admin")  # an exec collector runs a program
    async def cmd_add(self, name, collector, *options):
        """Add a collector, kept across restarts: add NAME KIND [key=value...]

        For example: monitor add cache redis address=127.0.0.1:6379 interval=30
        """
        table = {"collector": collector}
        for word in options:
            key, equals, value = word.partition("=")
            if not equals or not key:
                raise CommandError(f"{word!r} is not key=value")
            table[key] = words.typed(key, value)
        try:
            made = self.monitoring.add_collector(name, table)
        except SpecError as exc:
            raise CommandError(str(exc)) from None
        return Shown({"name": name, "collector": collector, "interval": made.interval},
                     f"collector {name} ({collector}) added, every {made.interval:g} s")

    @level("admin")
    async def cmd_remove(self, name):
        """Stop collector NAME; one 'monitor add' made is forgotten

        A collector of the config file comes back at the next start.
        """
        monitoring = self.monitoring
        if name not in monitoring.collecting.entries:
            raise CommandError(_no_collector(name, monitoring))
        monitoring.remove_collector(name)
        return Shown({"removed": name}, f"collector {name} removed")

    def _alert_table(self):
        rows = [alert.row() for alert in self.monitoring.alerts.alerts.values()]
        return report.alerts(rows, self.monitoring.wall())


def _need(session, needed, what):
    if LEVELS.index(session.level) < LEVELS.index(needed):
        raise CommandError(f"{what} needs the {needed} level; "
                           f"{session.user or 'this connection'} has {session.level}")


def _no_collector(name, monitoring):
    known = ", ".join(sorted(monitoring.collecting.entries)) or "none"
    return f"no collector {name} (there are: {known})"


def _finite(value):
    return None if value is None or value != value else value


def _clock(wall):
    return time.strftime("%H:%M:%S", time.localtime(wall))
