"""One-line charts: bars scaled from the lowest to the highest value, gaps as spaces."""

import math

import pytest

from smanager.metrics.spark import spark, summary_line


def test_the_lowest_value_is_the_lowest_bar_and_the_highest_the_full_bar():
    assert spark([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert spark([10, 80, 45]) == "▁█▅"  # the middle opens the upper half
    assert spark([-5, 5]) == "▁█"


def test_missing_values_are_spaces():
    assert spark([1, None, 2, math.nan, 3, math.inf, -math.inf]) == "▁ ▅ █  "
    assert spark([None, math.nan]) == "  "
    assert spark([]) == ""


def test_a_flat_series_is_all_the_lowest_bar():
    assert spark([4.2, 4.2, None, 4.2]) == "▁▁ ▁"


def test_more_values_than_width_are_averaged_into_width_buckets():
    assert spark([0, 0, 7, 7, 0, 2], width=3) == "▁█▂"
    assert spark(range(10), width=4) == "▁▃▆█"  # buckets [0,1] [2,3,4] [5,6] [7,8,9]
    assert spark([1, None, None, None, 3, 3], width=3) == "▁ █"
    assert spark([1, 2], width=5) == "▁█"
    assert len(spark(range(1000), width=60)) == 60


def test_a_width_below_one_is_refused():
    with pytest.raises(ValueError, match="width must be at least 1"):
        spark([1, 2], width=0)


def test_the_summary_line_shows_min_max_and_last_from_the_values_themselves():
    loads = [0.12, 0.4, 0.7, 1.2, 1.96, 1.2, 0.8, None]
    assert summary_line("load.load1", loads, "1h") == (
        "load.load1 ▁▂▃▅█▅▃  min 0.12 max 1.96 last 0.80 (1h)")
    # the chart's second bucket averages to 33.33; max still says 100
    assert summary_line("x", [0, 0, 0, 100, 0, 0], "5m", width=2) == (
        "x ▁█ min 0.00 max 100.00 last 0.00 (5m)")


def test_the_summary_line_keeps_big_and_tiny_numbers_short_and_says_when_there_is_no_data():
    assert summary_line("net.rx", [1.5e9, 3e9], "1d") == (
        "net.rx ▁█ min 1.5e+09 max 3e+09 last 3e+09 (1d)")
    assert summary_line("err", [0.0004, 0], "1h") == "err █▁ min 0.00 max 0.0004 last 0.00 (1h)"
    assert summary_line("gone", [None, math.nan], "1h") == "gone no data (1h)"
