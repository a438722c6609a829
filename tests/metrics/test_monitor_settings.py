"""[service.monitor] read and checked, and monitor.json kept whole."""

import json
import os

import pytest

from smanager.metrics.settings import Added, read_settings
from smanager.metrics.store import DAY
from smanager.supervise.checks import SpecError


def test_nothing_configured_means_the_defaults(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/state")
    settings = read_settings({})
    assert (settings.state_dir, settings.defaults, settings.flush_every) == ("/srv/state", True, 5.0)
    assert (settings.retention.raw, settings.retention.minute, settings.retention.hour) == (
        14 * DAY, 90 * DAY, 730 * DAY)


def test_retention_takes_durations_and_seconds():
    retention = read_settings({"retention": {"raw": "2d", "minute": 864000, "hour": "400d"}}).retention
    assert (retention.raw, retention.minute, retention.hour) == (2 * DAY, 10 * DAY, 400 * DAY)


@pytest.mark.parametrize("table, error", [
    ({"colectors": {}}, 'unknown key "colectors" (did you mean "collectors"?)'),
    ({"defaults": "yes"}, "defaults must be true or false"),
    ({"flush_every": 0}, "flush_every must be more than 0"),
    ({"state_dir": "relative"}, "state_dir must be an absolute path"),
    ({"retention": {"raw": "soon"}}, "retention.raw must be a duration like 14d"),
    ({"retention": {"raw": "30d", "minute": "7d"}}, "retention must be raw <= minute <= hour"),
    ({"retention": {"raws": "1d"}}, 'unknown key "retention.raws"'),
    ({"collectors": {"a b": {}}}, "not a valid name"),
    ({"collectors": {"q": "redis"}}, "[service.monitor.collectors.q] must be a table"),
    ({"collectors": {"q": {"interval": "10s"}}}, "interval must be a number"),
    ({"collectors": {"q": {"interval": 0}}}, "interval must be at least 0.1"),
    ({"alerts": "cpu.user > 90"}, "alerts must be a list of rules"),
    ({"alerts": ["cpu.user >> 90"]}, "'>>' is not an operator"),
])
def test_each_mistake_is_one_line_naming_the_key(table, error):
    with pytest.raises(SpecError) as caught:
        read_settings(table)
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_added_collectors_and_alerts_are_saved_whole_and_read_back(tmp_path):
    added = Added(str(tmp_path / "monitor.json"))
    assert (added.collectors, added.alerts) == ({}, [])
    added.collectors["q"] = {"collector": "redis", "interval": 30}
    added.alerts.append("q.connected_clients > 100")
    added.save()
    again = Added(str(tmp_path / "monitor.json"))
    assert (again.collectors, again.alerts) == (added.collectors, added.alerts)
    assert os.listdir(tmp_path) == ["monitor.json"]  # no temporary file left


def test_an_unreadable_monitor_json_is_moved_aside_not_fatal(tmp_path, caplog):
    (tmp_path / "monitor.json").write_text('{"collectors": [1, 2')
    added = Added(str(tmp_path / "monitor.json"))
    assert (added.collectors, added.alerts) == ({}, [])
    assert sorted(os.listdir(tmp_path)) == ["monitor.json.bad"]
    assert "cannot be read" in caplog.text
    (tmp_path / "monitor.json").write_text(json.dumps({"collectors": {"q": "not a table"}}))
    assert Added(str(tmp_path / "monitor.json")).collectors == {}
