"""The restart policy, driven with a fake clock and a fixed rng: no processes, no sleeping."""

import re
import signal

import pytest

from smanager.supervise.policy import TRANSITIONS, Exit, Policy, State
from smanager.supervise.spec import Backoff, GiveUp

NO_JITTER = 0.5  # rng() = 0.5 makes the jitter factor exactly 1


class Run:
    """One policy and a fake monotonic clock, driven the way the supervisor drives it."""

    def __init__(self, rng=lambda: NO_JITTER, **settings):
        self.policy = Policy(rng=rng, **settings)
        self.now = 1000.0
        self.policy.start(self.now)

    def fail_start(self, after=0.5, **status):
        """The child starts and dies before it counts as started."""
        self.policy.spawned(self.now)
        self.now += after
        return self.policy.exited(self.now, self.now + 1e9, **(status or {"code": 1}))

    def run_and_die(self, up=5.0, **status):
        """The child starts, reaches RUNNING and dies `up` seconds after its spawn."""
        self.policy.spawned(self.now)
        self.policy.ready(self.now + min(1.0, up))
        self.now += up
        return self.policy.exited(self.now, self.now + 1e9, **(status or {"code": 1}))

    def wait_out(self):
        """Let the backoff delay pass; the policy starts the program again."""
        assert not self.policy.due(self.policy.next_start_at - 0.001)
        self.now = self.policy.next_start_at
        assert self.policy.due(self.now)
        assert self.policy.state is State.STARTING


def in_state(state):
    """A policy brought to STATE by the events that lead there."""
    if state is State.STOPPED:
        return Policy()
    run = Run(give_up=GiveUp(restarts=1, within=60.0))
    policy = run.policy
    if state in (State.RUNNING, State.STOPPING):
        policy.spawned(run.now)
        policy.ready(run.now + 1)
    if state is State.STOPPING:
        policy.stop()
    if state is State.BACKOFF:
        run.run_and_die()
    if state is State.EXITED:
        run.run_and_die(code=0)
    if state is State.FATAL:
        run.fail_start()
    assert policy.state is state
    return policy


def test_a_crash_loop_waits_1_2_4_8_then_gives_up_at_the_fifth_failed_start():
    run = Run()
    delays = []
    for _ in range(4):
        exit = run.fail_start()
        assert run.policy.state is State.BACKOFF
        assert run.policy.next_start_at == run.now + exit.delay
        delays.append(exit.delay)
        run.wait_out()
    assert delays == [1, 2, 4, 8]
    last = run.fail_start()
    assert run.policy.state is State.FATAL
    assert (last.outcome, last.delay) == ("gave up: 5 failed starts within 60 s", None)
    assert run.policy.next_start_at is None and not run.policy.due(run.now + 1e6)
    assert run.policy.row()["restarts"] == 4


def test_failed_starts_spread_beyond_the_window_never_give_up():
    # Each failed start comes 10 s after the one before: one exactly 10 s old is out of the window.
    run = Run(backoff=Backoff(initial=9.5, max=9.5, jitter=0.0), give_up=GiveUp(restarts=2, within=10.0))
    for _ in range(20):
        assert run.fail_start().outcome == "restarting in 9.5 s"
        run.wait_out()
        assert run.policy.row(run.now)["failed_starts"] == 1


def test_failed_starts_just_inside_the_window_give_up():
    run = Run(backoff=Backoff(initial=4.4, max=4.4, jitter=0.0), give_up=GiveUp(restarts=3, within=10.0))
    outcomes = []
    for _ in range(3):
        outcomes.append(run.fail_start(after=0.3).outcome)
        if run.policy.state is State.BACKOFF:
            run.wait_out()
    assert outcomes == ["restarting in 4.4 s"] * 2 + ["gave up: 3 failed starts within 10 s"]


def test_give_up_none_never_gives_up_and_counts_no_window():
    run = Run(give_up=None, backoff=Backoff(max=30.0))
    for _ in range(50):
        run.fail_start()
        assert run.policy.state is State.BACKOFF
        run.wait_out()
    assert run.fail_start().delay == 30.0
    assert run.policy.row()["failed_starts"] == 0


def test_a_running_program_that_dies_restarts_now_then_waits_longer_each_time():
    run = Run()
    outcomes = []
    for _ in range(5):
        exit = run.run_and_die(up=5.0)
        outcomes.append((exit.outcome, exit.delay))
        run.wait_out()
    assert outcomes == [("restarting now", 0), ("restarting in 1.0 s", 1), ("restarting in 2.0 s", 2),
                        ("restarting in 4.0 s", 4), ("restarting in 8.0 s", 8)]
    assert run.policy.state is State.STARTING
    assert run.policy.row(run.now) == {"state": "STARTING", "restarts": 5, "next_start_at": None,
                                      "failed_starts": 0, "last_exit": "exited with status 1 after 5.0 s"}


def test_deaths_after_running_are_not_failed_starts_and_never_give_up():
    run = Run(give_up=GiveUp(restarts=2, within=60.0))
    run.fail_start()
    run.wait_out()
    run.policy.configure(restart="on-failure", ok_exit_codes={0}, backoff=Backoff(),
                         give_up=GiveUp(restarts=1, within=60.0))  # the window is already full
    for _ in range(3):
        assert run.run_and_die(up=2.0).outcome.startswith("restarting")
        run.wait_out()
    assert run.policy.row(run.now)["failed_starts"] == 1
    assert run.fail_start().outcome == "gave up: 2 failed starts within 60 s"


@pytest.mark.parametrize("up, delay", [
    (59.9, 8.0),  # still the streak: 1, 2, 4, then 8
    (60.0, 0.0),  # up reset_after: a new streak, and it had reached RUNNING
])
def test_the_streak_ends_once_the_program_stays_up_reset_after(up, delay):
    run = Run(give_up=None)
    for _ in range(3):
        run.fail_start()
        run.wait_out()
    assert run.run_and_die(up=up).delay == delay


def test_a_failed_start_after_reset_after_waits_the_initial_delay():
    run = Run(give_up=None, backoff=Backoff(reset_after=20.0))
    for _ in range(3):
        run.fail_start()
        run.wait_out()
    # A readiness check that gave up after 30 s: a new streak, but not an immediate restart.
    assert run.fail_start(after=30.0, error="not ready after 30 s: tcp 127.0.0.1:8080").delay == 1.0


def test_the_delay_is_capped_at_max():
    run = Run(backoff=Backoff(initial=1.0, factor=3.0, max=20.0), give_up=None)
    delays = []
    for _ in range(5):
        delays.append(run.fail_start().delay)
        run.wait_out()
    assert delays == [1, 3, 9, 20, 20]


def test_a_crash_loop_of_thousands_of_restarts_stays_at_max():
    run = Run(give_up=None)
    for _ in range(1100):  # past the point where 2.0 ** k leaves a float's range
        exit = run.fail_start()
        run.wait_out()
    assert exit.delay == 60.0


@pytest.mark.parametrize("rng, factor, max_, expected", [
    (0.0, 2.0, 60.0, [0.9, 1.8, 3.6]),
    (1.0, 2.0, 60.0, [1.1, 2.2, 4.4]),
    (1.0, 2.0, 1.5, [1.1, 1.65, 1.65]),  # jitter applies to the capped delay
    (0.25, 1.0, 60.0, [0.95, 0.95, 0.95]),
])
def test_jitter_scales_the_delay_within_its_bounds(rng, factor, max_, expected):
    run = Run(rng=lambda: rng, backoff=Backoff(factor=factor, max=max_, jitter=0.1), give_up=None)
    exits = []
    for _ in range(3):
        exits.append(run.fail_start())
        run.wait_out()
    assert [exit.delay for exit in exits] == pytest.approx(expected)
    assert exits[0].outcome == f"restarting in {expected[0]:.1f} s"


@pytest.mark.parametrize("restart, ok_codes, status, restarted", [
    ("on-failure", {0}, {"code": 0}, False),
    ("on-failure", {0}, {"code": 1}, True),
    ("on-failure", {0, 2}, {"code": 2}, False),
    ("on-failure", {0}, {"signal": signal.SIGTERM}, True),
    ("on-failure", {0}, {"code": 0, "signal": signal.SIGTERM}, True),  # a signal is never a success
    ("on-failure", {0}, {"code": 0, "error": "not ready after 30 s: tcp 127.0.0.1:80"}, True),
    ("on-failure", {0}, {"code": None}, True),  # the status could not be read: not a success
    ("always", {0}, {"code": 0}, True),
    ("always", {0}, {"signal": signal.SIGKILL}, True),
    ("never", {0}, {"code": 1}, False),
    ("never", {0}, {"signal": signal.SIGSEGV}, False),
])
def test_which_exits_restart(restart, ok_codes, status, restarted):
    run = Run(restart=restart, ok_exit_codes=ok_codes)
    exit = run.run_and_die(**status)
    if restarted:
        assert run.policy.state is State.BACKOFF and exit.outcome == "restarting now"
    else:
        assert run.policy.state is State.EXITED and exit.delay is None
        assert exit.outcome == f"not restarted (restart = {restart})"


def test_a_failed_start_that_is_not_restarted_is_exited_not_fatal():
    run = Run(restart="never", give_up=GiveUp(restarts=1, within=60.0))
    assert run.fail_start().outcome == "not restarted (restart = never)"
    assert run.policy.state is State.EXITED


def test_start_clears_fatal_the_failed_start_count_the_streak_and_the_restarts():
    run = Run(give_up=GiveUp(restarts=3, within=60.0))
    for _ in range(2):
        run.fail_start()
        run.wait_out()
    run.fail_start()
    assert run.policy.state is State.FATAL
    run.policy.start(run.now)
    assert run.policy.state is State.STARTING
    assert run.policy.row(run.now) == {"state": "STARTING", "restarts": 0, "next_start_at": None,
                                      "failed_starts": 0, "last_exit": "exited with status 1 after 0.5 s"}
    assert run.fail_start().delay == 1.0  # a new streak, and two more failures before giving up
    run.wait_out()
    assert run.fail_start().delay == 2.0
    run.wait_out()
    assert run.fail_start().outcome == "gave up: 3 failed starts within 60 s"


def test_start_during_backoff_starts_at_once_and_forgets_the_streak():
    run = Run()
    run.fail_start()
    run.wait_out()
    run.fail_start()
    run.policy.start(run.now)
    assert run.policy.next_start_at is None and not run.policy.due(run.now + 100)
    assert run.fail_start().delay == 1.0


@pytest.mark.parametrize("state, must_stop_child, after", [
    (State.STOPPED, False, State.STOPPED),
    (State.STARTING, True, State.STOPPING),
    (State.RUNNING, True, State.STOPPING),
    (State.BACKOFF, False, State.STOPPED),
    (State.STOPPING, False, State.STOPPING),
    (State.EXITED, False, State.EXITED),
    (State.FATAL, False, State.FATAL),
])
def test_stop_from_each_state(state, must_stop_child, after):
    policy = in_state(state)
    assert policy.stop() is must_stop_child
    assert policy.state is after
    if state is State.BACKOFF:
        assert policy.next_start_at is None and not policy.due(1e9)


@pytest.mark.parametrize("restart", ["always", "on-failure"])
@pytest.mark.parametrize("status", [{"code": 1}, {"signal": signal.SIGKILL}, {"code": 0}])
def test_an_exit_while_stopping_is_a_stop_whatever_the_status(restart, status):
    run = Run(restart=restart, give_up=GiveUp(restarts=1, within=60.0))
    run.policy.spawned(run.now)
    assert run.policy.stop()
    exit = run.policy.exited(run.now + 2, 0.0, **status)
    assert (exit.during, exit.outcome, exit.delay) == ("STOPPING", "stopped", None)
    assert run.policy.state is State.STOPPED
    assert run.policy.row()["failed_starts"] == 0


def test_a_stop_while_the_child_is_being_spawned_still_records_the_spawn():
    run = Run()
    assert run.policy.stop()
    run.policy.spawned(run.now)  # the spawn finished after the stop: the caller stops that child
    exit = run.policy.exited(run.now + 0.2, 0.0, signal=signal.SIGTERM)
    assert exit.describe() == "killed by SIGTERM after 0.2 s" and exit.outcome == "stopped"


def test_history_keeps_the_newest_exits_only():
    run = Run(history=3, give_up=None)
    exits = []
    for code in range(1, 6):
        exits.append(run.fail_start(code=code))
        run.wait_out()
    assert list(run.policy.history) == exits[-3:]
    assert [e.code for e in run.policy.history] == [3, 4, 5]


@pytest.mark.parametrize("fields, text", [
    ({"uptime": 0.2, "code": 1}, "exited with status 1 after 0.2 s"),
    ({"uptime": 3.0, "signal": 9}, "killed by SIGKILL after 3.0 s"),
    ({"uptime": 3.0, "signal": 99}, "killed by signal 99 after 3.0 s"),
    ({"uptime": 12.345}, "exited (status unknown) after 12.3 s"),
    ({"uptime": 0, "error": "[Errno 2] No such file or directory: 'nosuch'"},
     "could not start: [Errno 2] No such file or directory: 'nosuch'"),
    ({"uptime": 30.1, "error": "not ready after 30 s: tcp 127.0.0.1:8080: connection refused"},
     "not ready after 30 s: tcp 127.0.0.1:8080: connection refused"),
    ({"uptime": 30.1, "signal": 9, "error": "not ready after 30 s: cmd check: status 1"},
     "not ready after 30 s: cmd check: status 1"),
])
def test_describe_says_how_it_ended_in_one_line(fields, text):
    base = {"wall": 0.0, "code": None, "signal": None, "error": None, "during": "RUNNING",
            "outcome": "stopped", "delay": None, "last_line": None}
    assert Exit(**{**base, **fields}).describe() == text


def test_a_spawn_error_is_a_failed_start_with_no_uptime():
    run = Run()
    run.run_and_die(up=30.0)
    run.wait_out()  # the uptime of a failed spawn is not measured from the spawn before
    error = "[Errno 2] No such file or directory: 'nosuch'"
    exit = run.policy.exited(run.now, 1700000000.0, error=error, last_line=None)
    assert exit == Exit(wall=1700000000.0, uptime=0.0, code=None, signal=None, error=error,
                        during="STARTING", outcome="restarting in 1.0 s", delay=1.0, last_line=None)
    assert run.policy.row()["last_exit"] == f"could not start: {error}"


def test_a_spawn_error_after_an_admin_start_has_no_uptime_either():
    run = Run()
    run.run_and_die(up=30.0, code=0)
    run.policy.start(run.now)
    exit = run.policy.exited(run.now, 0.0, error="[Errno 13] Permission denied: './app'")
    assert exit.uptime == 0.0 and exit.describe() == "could not start: [Errno 13] Permission denied: './app'"


def test_exited_keeps_the_last_stderr_line_and_the_wall_time():
    run = Run()
    run.policy.spawned(run.now)
    exit = run.policy.exited(run.now + 1, 1700000001.5, code=3, last_line="panic: no config")
    assert (exit.wall, exit.uptime, exit.last_line, exit.during) == (
        1700000001.5, 1.0, "panic: no config", "STARTING")


def test_row_shows_what_status_needs():
    policy = Policy()
    assert policy.row() == {"state": "STOPPED", "restarts": 0, "last_exit": None,
                            "next_start_at": None, "failed_starts": 0}
    run = Run()
    run.fail_start()
    run.wait_out()
    run.fail_start(after=0.2, signal=signal.SIGSEGV)
    assert run.policy.row() == {"state": "BACKOFF", "restarts": 1, "next_start_at": run.now + 2.0,
                                "last_exit": "killed by SIGSEGV after 0.2 s", "failed_starts": 2}
    assert run.policy.row(run.now + 59)["failed_starts"] == 1  # the first has left the 60 s window
    assert run.policy.row(run.now + 100)["failed_starts"] == 0


def test_configure_changes_the_rules_and_keeps_the_state_and_history():
    run = Run()
    first = run.run_and_die(code=0)
    assert run.policy.state is State.EXITED
    run.policy.configure(restart="always", ok_exit_codes={0}, backoff=Backoff(initial=7.0), give_up=None)
    assert run.policy.state is State.EXITED and list(run.policy.history) == [first]
    run.policy.start(run.now)
    assert run.fail_start(code=0).delay == 7.0


def test_giving_up_configured_away_forgets_the_failed_starts():
    run = Run(give_up=GiveUp(restarts=2, within=60.0))
    run.fail_start()
    run.policy.configure(restart="on-failure", ok_exit_codes={0}, backoff=Backoff(), give_up=None)
    assert run.policy.row()["failed_starts"] == 0 and run.policy.row(run.now)["failed_starts"] == 0
    run.wait_out()
    assert run.fail_start().delay == 2.0 and run.policy.state is State.BACKOFF


def test_an_unknown_restart_setting_is_refused():
    with pytest.raises(ValueError, match="restart must be one of always, on-failure, never, not 'sometimes'"):
        Policy(restart="sometimes")


@pytest.mark.parametrize("state, event, message", [
    (State.STOPPED, lambda p: p.ready(0), "STOPPED -> RUNNING is not a transition"),
    (State.RUNNING, lambda p: p.start(0), "RUNNING -> STARTING is not a transition"),
    (State.STOPPING, lambda p: p.start(0), "STOPPING -> STARTING is not a transition"),
    (State.STOPPING, lambda p: p.ready(0), "STOPPING -> RUNNING is not a transition"),
    (State.RUNNING, lambda p: p.spawned(0), "spawned() while RUNNING; it needs STARTING or STOPPING"),
    (State.STOPPED, lambda p: p.exited(0, 0, code=1),
     "exited() while STOPPED; it needs STARTING or RUNNING or STOPPING"),
    (State.BACKOFF, lambda p: p.exited(0, 0, code=1),
     "exited() while BACKOFF; it needs STARTING or RUNNING or STOPPING"),
])
def test_an_event_that_does_not_fit_the_state_is_the_callers_bug(state, event, message):
    policy = in_state(state)
    history = list(policy.history)
    with pytest.raises(RuntimeError, match=re.escape(message)):
        event(policy)
    assert policy.state is state and list(policy.history) == history


def test_due_is_false_outside_backoff():
    for state in (State.STOPPED, State.RUNNING, State.EXITED, State.FATAL):
        policy = in_state(state)
        assert not policy.due(1e9) and policy.state is state


def test_every_state_can_be_left_and_reached():
    assert set(TRANSITIONS) == set(State)
    reached = set().union(*TRANSITIONS.values())
    assert reached == set(State) and all(TRANSITIONS.values())
    assert all(state.value == state.name for state in State)
