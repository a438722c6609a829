"""What the peer benchmarks (proc, scripts, monitor) share: the figures they print
(medians, ratios, numbers) and the frame of their measuring part (SIGTERM and
Ctrl-C end it alike).

None stands for "not measured" throughout: a median of nothing, a ratio with a
missing side, a number printed as "-".
"""

import contextlib
import signal
import statistics


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def end_on_sigterm():
    """SIGTERM ends a run as Ctrl-C does, so `measuring` stops the peers first."""
    signal.signal(signal.SIGTERM, _as_ctrl_c)


def _as_ctrl_c(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def measuring(run, stopping, checked_by):
    """A benchmark's measuring part: Ctrl-C or an error ends it with a line, not a
    traceback (a measurement reports and exits 0), and whatever happens RUN's peers are
    swept and what was left behind is printed (CHECKED_BY: how the run finds its own)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"interrupted; stopping the {stopping}")
    except Exception as exc:  # noqa: BLE001 - a measurement reports and exits 0
        print(f"stopped early: {type(exc).__name__}: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # clean-up short (it is bounded)
        left = run.sweep()
        print(f"left behind: {left or 'nothing'} ({checked_by})")
