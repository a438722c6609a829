"""monitor's command words read with a given clock: times, steps, numbers, names, options."""

import pytest

from smanager.metrics import words
from smanager.wire.errors import CommandError

NOW = 1_700_000_000.0


@pytest.mark.parametrize("text, expected", [
    ("now", NOW), ("1h", NOW - 3600), ("90", NOW - 90), ("2d", NOW - 172800),
    ("1690000000", 1_690_000_000.0)])
def test_since_and_until_are_now_an_age_or_wall_clock_seconds(text, expected):
    assert words.when(text, NOW) == expected


@pytest.mark.parametrize("text, error", [
    ("soon", "since and until must be a duration like 90s"), ("-1h", "must be a duration")])
def test_a_bad_time_is_one_line(text, error):
    with pytest.raises(CommandError, match=error):
        words.when(text, NOW)


def test_steps_are_whole_seconds_of_at_least_one():
    assert (words.step("1m"), words.step("10"), words.step("1h")) == (60, 10, 3600)
    for bad in ("0", "0.5", "1.5s"):
        with pytest.raises(CommandError, match="step must be whole seconds"):
            words.step(bad)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "x", ""])
def test_values_must_be_finite_numbers(text):
    with pytest.raises(CommandError, match="VALUE must be a number"):
        words.number("VALUE", text)


@pytest.mark.parametrize("name, ok", [
    ("backup.age", True), ("a:b-c_d.e", True), ("x" * 200, True), ("x" * 201, False),
    (".hidden", False), ("a b", False), ("a{b}", False), ("", False)])
def test_metric_names_are_letters_digits_and_few_marks(name, ok):
    if ok:
        assert words.metric_name(name) == name
    else:
        with pytest.raises(CommandError, match="bad metric name"):
            words.metric_name(name)


def test_only_numeric_options_become_numbers_so_a_password_of_digits_stays_text():
    assert words.typed("interval", "30") == 30 and words.typed("timeout", "2.5") == 2.5
    assert words.typed("password", "0123") == "0123" and words.typed("expect", "x") == "x"
