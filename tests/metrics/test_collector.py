"""The author's side of a collector: its name, time limit and options."""

import pytest

from smanager import Collector


class Queue(Collector):
    """Jobs waiting"""
    interval = 30
    counters = {"done"}

    def collect(self):
        return {"waiting": 3, "done": 10}


class Named(Collector):
    name = "jobs"
    interval = 2


def test_a_collector_is_named_by_its_config_then_its_class_attribute_then_its_class():
    assert Queue().name == "queue"
    assert Named().name == "jobs"
    assert Queue(name="backlog").name == "backlog"


def test_the_time_limit_is_the_smaller_of_interval_and_five_seconds_unless_set():
    assert Queue().time_limit == 5.0
    assert Named().time_limit == 2.0

    class Slow(Queue):
        timeout = 20

    assert Slow().time_limit == 20.0


def test_options_are_the_collectors_own_copy():
    table = {"address": "127.0.0.1:6379"}
    collector = Queue(table)
    collector.options["address"] = "elsewhere"
    assert table == {"address": "127.0.0.1:6379"}


def test_a_collector_without_collect_says_so():
    with pytest.raises(NotImplementedError, match="Named must define collect"):
        Named().collect()
