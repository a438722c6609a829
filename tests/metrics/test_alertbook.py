"""The alert book with a fake clock: numbering, config alerts kept, intervals for STALE."""

import pytest

from smanager.metrics.alertbook import PUSHED_INTERVAL, AlertBook


def book(intervals=None):
    told = []
    alerts = AlertBook(lambda alert, notice: told.append((alert.id, notice.state)),
                       lambda metric: (intervals or {}).get(metric.partition(".")[0]))
    return alerts, told


def test_alerts_are_numbered_in_order_and_config_ones_cannot_be_removed():
    alerts, _ = book()
    first = alerts.add("a.b > 1", configured=True)
    second = alerts.add(["c.d", "<", "2", "for=3"])
    assert (first.id, second.id) == (1, 2)
    with pytest.raises(ValueError, match="alert 1 is in the config file"):
        alerts.remove(1)
    assert alerts.remove(2) is second and alerts.added_texts() == []
    with pytest.raises(KeyError):
        alerts.remove(2)


def test_a_bad_rule_is_refused_and_takes_no_number():
    alerts, _ = book()
    with pytest.raises(ValueError, match="is not an operator"):
        alerts.add("a.b => 1")
    assert alerts.add("a.b >= 1").id == 1


def test_samples_reach_only_the_alerts_on_their_metric():
    alerts, told = book({"a": 10})
    alerts.add("a.b > 1", now=0)
    alerts.add("a.c > 1", now=0)
    alerts.feed("a.b", 5, 10)
    alerts.feed("x.y", 5, 10)
    assert told == [(1, "FIRING")]


def test_a_collected_metric_is_stale_after_two_of_its_collectors_intervals():
    alerts, told = book({"a": 10})
    alerts.add("a.b > 1", now=0)
    alerts.feed("a.b", 0, 0)
    alerts.check(20)
    assert told == []
    alerts.check(21)
    assert told == [(1, "STALE")]


def test_a_pushed_metric_is_stale_after_two_of_its_own_gaps():
    alerts, told = book()
    alerts.add("backup.age > 90000", now=0)
    alerts.feed("backup.age", 0, 0)
    alerts.check(2 * PUSHED_INTERVAL)
    assert told == []  # one push: an hour is assumed
    alerts.feed("backup.age", 0, 86400)  # daily pushes
    alerts.check(86400 + 2 * 86400 - 1)
    assert told == []
    alerts.check(86400 + 2 * 86400 + 1)
    assert told == [(1, "STALE")]
