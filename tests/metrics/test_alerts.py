"""Alert rules and states, driven with sample values and a fake clock (seconds)."""

import math

import pytest

from smanager.metrics.alerts import AlertState, duration, parse_rule

INTERVAL = 10


def alert(text, interval=INTERVAL):
    return AlertState(parse_rule(text.split()), interval)


def states(notices):
    return [(notice.kind, notice.state) for notice in notices]


def test_a_rule_reads_every_option():
    rule = parse_rule("cpu.user > 90 for=3 clear=80 repeat=30m action=script:notify".split())
    assert (rule.metric, rule.op, rule.threshold, rule.for_samples, rule.clear, rule.repeat,
            rule.action) == ("cpu.user", ">", 90, 3, 80, 1800, "script:notify")
    assert str(rule) == "cpu.user > 90 for=3 clear=80 repeat=30m action=script:notify"


def test_a_rule_defaults_to_one_sample_clear_at_threshold_hourly_repeat_and_the_log():
    rule = parse_rule(["disk.free", "<=", "5.5"])
    assert (rule.for_samples, rule.clear, rule.repeat, rule.action) == (1, None, 3600, "log")
    assert str(rule) == "disk.free <= 5.5 for=1 repeat=1h action=log"


@pytest.mark.parametrize("text, message", [
    ("cpu.user >", "an alert is NAME OP THRESHOLD"),
    ("cpu.user => 90", "'=>' is not an operator"),
    ("cpu.user > ninety", "threshold 'ninety' is not a number"),
    ("cpu.user > nan", "threshold 'nan' is not a number"),
    ("> 90 cpu", "'>' is not a metric name"),
    ("cpu.user > 90 clear=95", "clear=95 is on the firing side of > 90"),
    ("free < 10 clear=5", "clear=5 is on the firing side of < 10"),
    ("up == 0 clear=1", "clear=1 needs > >= < or <=, not =="),
    ("cpu.user > 90 clear=high", "clear=high is not a number"),
    ("cpu.user > 90 for=0", "for=0 must be a whole number"),
    ("cpu.user > 90 for=2.5", "for=2.5 must be a whole number"),
    ("cpu.user > 90 repeat=1w", "bad duration '1w'"),
    ("cpu.user > 90 action=mail", "action=mail is not an action"),
    ("cpu.user > 90 action=script:", "action=script: is not an action"),
    ("cpu.user > 90 every=5", "'every=5' is not an option"),
    ("cpu.user > 90 for", "'for' is not an option"),
    ("cpu.user > 90 for=2 for=3", "for= is given twice"),
    ("cpu.user > 90 clear=80 clear=70", "clear= is given twice"),
])
def test_a_bad_rule_is_refused_in_one_line_naming_the_bad_word(text, message):
    with pytest.raises(ValueError) as refused:
        parse_rule(text.split())
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("45", 45), ("1.5h", 5400), ("0", 0),
])
def test_durations_read_units_and_plain_seconds(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5s", "5 min", "1h30m"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(ValueError, match="bad duration"):
        duration(text)


def test_hysteresis_fires_at_91_stays_firing_at_85_and_clears_at_79():
    state = alert("cpu.user > 90 clear=80")
    assert state.feed(50, 0) == []
    fired = state.feed(91, 10)
    assert states(fired) == [("change", "FIRING")]
    assert (fired[0].previous, fired[0].value, fired[0].at) == ("OK", 91, 10)
    assert "cpu.user > 90" in fired[0].message and "91" in fired[0].message
    assert state.feed(85, 20) == [] and state.state == "FIRING"
    assert state.feed(80.5, 30) == [] and state.state == "FIRING"
    cleared = state.feed(79, 40)
    assert states(cleared) == [("change", "OK")] and cleared[0].previous == "FIRING"
    assert state.feed(85, 50) == [] and state.state == "OK"  # below the threshold: no new firing


def test_without_clear_a_value_back_at_the_threshold_clears():
    state = alert("cpu.user > 90")
    state.feed(95, 0)
    assert states(state.feed(90, 10)) == [("change", "OK")]


def test_for_3_needs_three_breaching_samples_in_a_row():
    state = alert("load.load1 >= 4 for=3")
    assert state.feed(5, 0) == [] and state.feed(6, 10) == []
    assert state.feed(1, 20) == []  # the run is broken: counting starts again
    assert state.feed(5, 30) == [] and state.feed(5, 40) == []
    assert states(state.feed(4, 50)) == [("change", "FIRING")]


def test_a_failed_collection_neither_fires_nor_clears_nor_breaks_the_run():
    state = alert("cpu.user > 90 for=2")
    assert state.feed(95, 0) == []
    assert state.feed(None, 10) == [] and state.feed(math.nan, 20) == []
    assert states(state.feed(95, 30)) == [("change", "FIRING")]
    assert state.feed(math.nan, 40) == [] and state.state == "FIRING"
    assert state.value == 95


def test_reminders_come_every_hour_while_firing_and_stop_when_cleared():
    state = alert("cpu.user > 90 repeat=1h")
    state.feed(95, 0)
    reminders = []
    for now in range(10, 3 * 3600 + 11, 10):
        notices = state.feed(95, now)
        reminders += [(notice.kind, notice.at) for notice in notices]
    assert reminders == [("repeat", 3600), ("repeat", 7200), ("repeat", 10800)]
    assert states(state.feed(50, 10810)) == [("change", "OK")]
    assert state.feed(50, 4 * 3600) == []


def test_one_reminder_after_a_long_silence_then_back_on_the_hour():
    state = alert("cpu.user > 90 repeat=1h", interval=3600)
    state.feed(95, 0)
    assert states(state.check(3 * 3600 + 60)) == [("change", "STALE")]
    state = alert("cpu.user > 90 repeat=1h", interval=7200)
    state.feed(95, 0)
    assert states(state.check(2.5 * 3600)) == [("repeat", "FIRING")]
    assert state.check(2.9 * 3600) == []
    assert states(state.check(3 * 3600)) == [("repeat", "FIRING")]


def test_repeat_0_never_reminds():
    state = alert("cpu.user > 90 repeat=0")
    state.feed(95, 0)
    assert all(state.feed(95, now) == [] for now in range(10, 5 * 3600, 10))


def test_no_sample_for_two_intervals_is_stale_and_a_sample_brings_it_back():
    state = alert("cpu.user > 90")
    state.feed(50, 0)
    assert state.check(20) == []
    stale = state.check(20.5)
    assert states(stale) == [("change", "STALE")] and stale[0].previous == "OK"
    assert state.check(100) == []
    back = state.feed(40, 110)
    assert states(back) == [("change", "OK")] and back[0].previous == "STALE"


def test_a_new_alert_with_no_samples_goes_stale():
    state = alert("cpu.user > 90")
    assert state.check(1000) == []
    assert states(state.check(1021)) == [("change", "STALE")]


def test_a_failing_collector_makes_its_alert_stale():
    state = alert("redis.connected_clients > 100")
    state.feed(5, 0)
    assert state.feed(None, 10) == [] and state.feed(None, 20) == []
    assert states(state.feed(None, 30)) == [("change", "STALE")]


def test_after_stale_firing_needs_its_own_for_count_again():
    state = alert("cpu.user > 90 for=2 clear=80")
    state.feed(95, 0)
    state.feed(95, 10)
    assert state.state == "FIRING"
    assert states(state.check(31)) == [("change", "STALE")]
    assert states(state.feed(95, 40)) == [("change", "OK")]  # one breaching sample is not two
    assert states(state.feed(95, 50)) == [("change", "FIRING")]


def test_after_stale_a_value_between_clear_and_threshold_is_ok():
    state = alert("cpu.user > 90 clear=80")
    state.feed(95, 0)
    assert states(state.check(21)) == [("change", "STALE")]
    assert states(state.feed(85, 30)) == [("change", "OK")]  # judged afresh, not by clear=80


def test_flapping_starts_at_the_sixth_change_holds_notices_and_ends_after_30_quiet_minutes():
    state = alert("cpu.user > 90 repeat=1m", interval=60)
    told = []
    for minute, value in enumerate([95, 50, 95, 50, 95, 50, 95, 50, 95]):
        told += state.feed(value, minute * 60)
        told += state.check(minute * 60 + 30)
    assert [notice.state for notice in told] == ["FIRING", "OK", "FIRING", "OK", "FIRING", "FLAPPING"]
    assert told[-1].previous == "FIRING" and told[-1].at == 300
    assert state.state == "FLAPPING" and state.judged == "FIRING"
    last_change = 8 * 60
    quiet = [state.feed(95, now) for now in range(last_change + 10, last_change + 1800, 10)]
    assert quiet == [[]] * len(quiet) and state.state == "FLAPPING"
    left = state.feed(95, last_change + 1800)
    assert states(left) == [("change", "FIRING")] and left[0].previous == "FLAPPING"
    assert states(state.feed(95, last_change + 1860)) == [("repeat", "FIRING")]
    assert states(state.feed(50, last_change + 1870)) == [("change", "OK")]


def test_flapping_is_left_by_time_passing_alone():
    state = alert("cpu.user > 90", interval=3600)
    for minute, value in enumerate([95, 50, 95, 50, 95, 50]):
        state.feed(value, minute * 60)
    assert state.state == "FLAPPING"
    assert state.check(300 + 1799) == []
    left = state.check(300 + 1800)
    assert states(left) == [("change", "OK")] and left[0].previous == "FLAPPING"
