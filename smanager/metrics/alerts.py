"""Alert rules and their state machine: `monitor alert add NAME > 90 [for=3] [clear=80] ...`.

Rules:

1. Nothing here reads a clock or does I/O: samples and time come in as
   arguments, and what to tell the user comes back as a list of `Notice`s.
2. A rule is METRIC OP THRESHOLD with OP one of > >= < <= == !=, then options:
   for=N      consecutive breaching samples before FIRING (default 1);
   clear=X    hysteresis: FIRING ends only on a value that would not breach
              with X as the threshold (default: the threshold itself); X may
              not be on the firing side, and only > >= < <= take it;
   repeat=D   remind every D while FIRING (90s, 30m, 1h, 2d or seconds;
              0 = never; default 1h);
   action=A   `log` (default) or `script:NAME`.
   A bad rule is a one-line ValueError naming the bad word.
3. States: OK, FIRING, STALE, FLAPPING.  `feed(value, at)` takes a sample,
   `check(now)` lets time pass; both return notices, kind "change" on a state
   change and "repeat" for a reminder.  A new alert is OK.
4. A value of None or NaN (the collector failed) neither fires, clears, nor
   breaks a run of breaching samples; it does not count as fresh either.
5. STALE: no real sample for more than 2 intervals.  The next sample sets the
   state from that sample alone: OK, or FIRING once `for` breaching samples
   have come since.
6. FLAPPING: more than 5 state changes within 30 minutes.  Entering it is one
   notice; then the samples keep being judged but nothing is told, reminders
   included, until 30 minutes pass with no change, which is one notice
   leaving FLAPPING for whatever the samples say.
"""

import math
import operator
import re
from collections import deque
from dataclasses import dataclass

OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
             "==": operator.eq, "!=": operator.ne}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_REPEAT = 3600
STALE_AFTER = 2        # intervals without a real sample
FLAP_CHANGES = 5       # more changes than this within FLAP_WINDOW is flapping
FLAP_WINDOW = 30 * 60  # seconds; also the quiet time that ends flapping


def duration(text):
    """Seconds in TEXT: 90s, 30m, 1h, 2d, or a plain number of seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?)([smhd]?)", text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r} (use 90s, 30m, 1h, 2d or seconds)")
    return float(match[1]) * UNITS.get(match[2], 1)


def format_duration(seconds):
    """The shortest exact spelling of SECONDS that `duration` reads back."""
    for unit in "dhm":
        if seconds and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def finite_number(word, text):
    """TEXT as a finite float; ValueError naming WORD."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{word} is not a number")
    return value


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float
    for_samples: int = 1
    clear: float = None      # None: the threshold
    repeat: float = DEFAULT_REPEAT
    action: str = "log"

    def breaches(self, value):
        return OPERATORS[self.op](value, self.threshold)

    def clears(self, value):
        limit = self.threshold if self.clear is None else self.clear
        return not OPERATORS[self.op](value, limit)

    def __str__(self):
        words = [self.metric, self.op, f"{self.threshold:g}", f"for={self.for_samples}"]
        if self.clear is not None:
            words.append(f"clear={self.clear:g}")
        words += [f"repeat={format_duration(self.repeat)}", f"action={self.action}"]
        return " ".join(words)


def parse_rule(words):
    """The Rule in WORDS, the words after `alert add`."""
    if len(words) < 3:
        raise ValueError("an alert is NAME OP THRESHOLD [for=N] [clear=X] [repeat=1h] "
                         "[action=log|script:NAME], e.g. cpu.user > 90")
    metric, op, threshold_word, *options = words
    if "=" in metric or metric in OPERATORS:
        raise ValueError(f"{metric!r} is not a metric name; an alert starts with one")
    if op not in OPERATORS:
        raise ValueError(f"{op!r} is not an operator (use {' '.join(OPERATORS)})")
    fields = {"threshold": finite_number(f"threshold {threshold_word!r}", threshold_word)}
    for word in options:
        key, equals, text = word.partition("=")
        if not equals or key not in ("for", "clear", "repeat", "action"):
            raise ValueError(f"{word!r} is not an option (for=N, clear=X, repeat=1h, action=...)")
        if key in fields or (key == "for" and "for_samples" in fields):
            raise ValueError(f"{key}= is given twice")
        if key == "for":
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{word} must be a whole number of samples, 1 or more")
            fields["for_samples"] = int(text)
        elif key == "clear":
            fields["clear"] = finite_number(word, text)
        elif key == "repeat":
            fields["repeat"] = duration(text)
        else:
            if text != "log" and not (text.startswith("script:") and text != "script:"):
                raise ValueError(f"{word} is not an action (use action=log or action=script:NAME)")
            fields["action"] = text
    rule = Rule(metric, op, **fields)
    if rule.clear is not None:
        if op in ("==", "!="):
            raise ValueError(f"clear={rule.clear:g} needs > >= < or <=, not {op}")
        if rule.breaches(rule.clear) and rule.clear != rule.threshold:
            raise ValueError(f"clear={rule.clear:g} is on the firing side of {op} {rule.threshold:g}")
    return rule


@dataclass(frozen=True)
class Notice:
    kind: str       # "change" or "repeat"
    state: str
    previous: str
    value: float    # the latest real value, None before the first
    at: float
    message: str


class AlertState:
    """One rule's state, moved by samples and by time (see the rules above)."""

    def __init__(self, rule, interval):
        self.rule = rule
        self.interval = interval
        self.state = "OK"          # what users see
        self.judged = "OK"         # what the samples say, even while FLAPPING hides it
        self.value = None          # the latest real value
        self.fresh_at = None       # time of the latest real sample (or of the first look)
        self.breaching = 0         # consecutive breaching samples so far
        self.next_reminder = None  # while FIRING with a repeat
        self.changes = deque()     # times of the judged state's changes, within FLAP_WINDOW

    def feed(self, value, at):
        if value is None or math.isnan(value):
            return self.check(at)
        self.value, self.fresh_at = value, at
        if self.judged == "FIRING" and not self.rule.clears(value):
            verdict = "FIRING"
        elif self.judged == "FIRING":
            verdict, self.breaching = "OK", 0
        else:
            self.breaching = self.breaching + 1 if self.rule.breaches(value) else 0
            verdict = "FIRING" if self.breaching >= self.rule.for_samples else "OK"
        return self._judge(verdict, at) + self.check(at)

    def check(self, now):
        if self.fresh_at is None:
            self.fresh_at = now  # staleness counts from the first look
        notices = []
        if self.judged != "STALE" and now - self.fresh_at > STALE_AFTER * self.interval:
            self.breaching = 0
            notices += self._judge("STALE", now)
        if self.state == "FLAPPING" and now - self.changes[-1] >= FLAP_WINDOW:
            if self.judged == "FIRING" and self.rule.repeat:
                self.next_reminder = now + self.rule.repeat
            notices.append(self._show(self.judged, now))
        if self.state == "FIRING" and self.next_reminder is not None and now >= self.next_reminder:
            # one reminder however long nobody looked, then back on the repeat's beat
            missed = (now - self.next_reminder) // self.rule.repeat
            self.next_reminder += (missed + 1) * self.rule.repeat
            notices.append(self._notice("repeat", "FIRING", "FIRING", now))
        return notices

    def _judge(self, verdict, at):
        if verdict == self.judged:
            return []
        self.judged = verdict
        self.next_reminder = at + self.rule.repeat if verdict == "FIRING" and self.rule.repeat else None
        self.changes.append(at)
        while self.changes[0] < at - FLAP_WINDOW:
            self.changes.popleft()
        if self.state == "FLAPPING":
            return []
        return [self._show("FLAPPING" if len(self.changes) > FLAP_CHANGES else verdict, at)]

    def _show(self, state, at):
        previous, self.state = self.state, state
        return self._notice("change", state, previous, at)

    def _notice(self, kind, state, previous, at):
        if state == "STALE":
            what = f"no sample for {format_duration(at - self.fresh_at)}"
        elif state == "FLAPPING":
            what = f"{len(self.changes)} changes in {format_duration(FLAP_WINDOW)}, notices held"
        else:
            what = "no value yet" if self.value is None else f"value {self.value:g}"
        still = "still " if kind == "repeat" else ""
        message = f"{self.rule.metric} {self.rule.op} {self.rule.threshold:g}: {still}{state}, {what}"
        if kind == "change":
            message += f" (was {previous})"
        return Notice(kind, state, previous, self.value, at, message)
