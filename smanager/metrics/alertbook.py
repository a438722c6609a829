"""Every alert of the monitor: numbered rules, their states, and who hears of them.

Rules:

1. Alerts are numbered from 1 in the order they come: the config file's
   ``alerts`` first, then those `monitor alert add` made (kept in
   monitor.json).  A config file's alert cannot be removed with `alert rm`:
   the file would bring it back at the next start.
2. ``feed(name, value, at)`` judges each sample against the alerts on metric
   NAME; ``check(now)`` lets time pass (STALE, reminders, the end of FLAPPING).
   Both hand every Notice, with its alert, to ``tell(alert, notice)``.
3. An alert's interval (for STALE: two missed) is its metric's collector's
   interval when the metric's first dotted part names a collector, else the
   time between the metric's last two samples (1 h until there are two): a
   metric pushed hourly by cron is stale after two missed hours.
4. Nothing here reads a clock or does I/O (alerts.py rule 1).
"""

from dataclasses import dataclass

from .alerts import AlertState, parse_rule

PUSHED_INTERVAL = 3600.0  # until a pushed metric has two samples
LEAST_INTERVAL = 1.0


@dataclass
class Alert:
    id: int
    rule_text: str  # as given, for monitor.json and `alert list`
    state: AlertState
    configured: bool  # from the config file (rule 1)
    last_change: float | None = None

    @property
    def rule(self):
        return self.state.rule

    def row(self):
        state = self.state
        return {"id": self.id, "rule": str(self.rule), "metric": self.rule.metric,
                "state": state.state, "value": state.value, "since": self.last_change,
                "configured": self.configured}


class AlertBook:
    def __init__(self, tell, interval_of):
        self.tell = tell  # (Alert, Notice) -> None
        self.interval_of = interval_of  # metric -> its collector's interval, or None
        self.alerts = {}  # id -> Alert
        self.by_metric = {}  # metric -> [Alert]
        self.pushed = {}  # metric -> (last stamp, interval seen) for rule 3
        self._next_id = 1

    def add(self, words_or_text, *, configured=False, now=None):
        """A new alert from its words (or text); ValueError, one line, if it is bad."""
        words = words_or_text.split() if isinstance(words_or_text, str) else list(words_or_text)
        rule = parse_rule(words)
        alert = Alert(self._next_id, " ".join(words), AlertState(rule, self._interval(rule.metric)),
                      configured)
        if now is not None:
            alert.state.check(now)  # staleness counts from now
        self._next_id += 1
        self.alerts[alert.id] = alert
        self.by_metric.setdefault(rule.metric, []).append(alert)
        return alert

    def remove(self, alert_id):
        """The alert removed; KeyError if there is none, ValueError for a configured one."""
        alert = self.alerts[alert_id]
        if alert.configured:
            raise ValueError(f"alert {alert_id} is in the config file's alerts; remove it there")
        del self.alerts[alert_id]
        watching = self.by_metric[alert.rule.metric]
        watching.remove(alert)
        if not watching:
            del self.by_metric[alert.rule.metric]
        return alert

    def added_texts(self):
        return [alert.rule_text for alert in self.alerts.values() if not alert.configured]

    def feed(self, name, value, at):
        watching = self.by_metric.get(name)
        if not watching:
            return
        if self.interval_of(name) is None:
            self._pushed_at(name, at)
        for alert in watching:
            alert.state.interval = self._interval(name)
            self._hand_on(alert, alert.state.feed(value, at))

    def check(self, now):
        for alert in list(self.alerts.values()):
            self._hand_on(alert, alert.state.check(now))

    def _hand_on(self, alert, notices):
        for notice in notices:
            if notice.kind == "change":
                alert.last_change = notice.at
            self.tell(alert, notice)

    def _pushed_at(self, name, at):
        last, seen = self.pushed.get(name, (None, None))
        if last is not None and at > last:
            seen = at - last
        self.pushed[name] = (at, seen)

    def _interval(self, metric):
        interval = self.interval_of(metric)
        if interval is None:
            interval = self.pushed.get(metric, (None, None))[1] or PUSHED_INTERVAL
        return max(interval, LEAST_INTERVAL)
