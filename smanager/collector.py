"""What a metrics collector is: the author's side of the monitor service.

    from smanager import Collector

    class Queue(Collector):
        '''Jobs waiting in the work queue'''
        interval = 30
        counters = {"done"}             # stored as a rate per second

        def collect(self):
            return {"waiting": count_waiting(), "done": total_done()}

Rules (Pybix's plugin contract, made safe to leave running):

1. ``collect()`` returns ``{metric: number}``; the monitor stores each as
   ``NAME.metric`` (NAME: the configured name, else ``name``, else the class
   name in lower case).  A plain ``def`` runs in a worker thread; an ``async
   def`` on the event loop.
2. Metrics named in ``counters`` (or whose last dotted part is, as
   ``eth0.rx_bytes`` by ``rx_bytes``) are cumulative totals: the monitor stores
   their rate per second from two consecutive samples (nothing for the
   first, nor after the total went down: a restart of what is counted).
   ``collect()`` never sleeps to compute a rate itself.
3. It runs every ``interval`` seconds [10]; a run longer than ``timeout``
   [the smaller of interval and 5 s] is given up and recorded as an error,
   as is an exception: both are shown by ``monitor list``, and neither stops
   the next tick, nor any other collector.
4. ``options`` holds the collector's table from the config file
   (``[service.monitor.collectors.NAME]``), less ``collector`` and
   ``interval``: ``self.options["address"]``.
"""

from typing import Any, ClassVar

DEFAULT_INTERVAL = 10.0
LONGEST_DEFAULT_TIMEOUT = 5.0


class Collector:
    """A source of metrics, collected every ``interval`` seconds (see the module's rules)."""

    name: ClassVar[str] = ""
    interval: ClassVar[float] = DEFAULT_INTERVAL
    timeout: ClassVar[float | None] = None
    counters: ClassVar[frozenset[str] | set[str]] = frozenset()

    def __init__(self, options: dict[str, Any] | None = None, *, name: str | None = None):
        self.options = dict(options or {})
        self.name = name or type(self).name or type(self).__name__.lower()

    @property
    def time_limit(self) -> float:
        """How long one run may take (rule 3)."""
        if self.timeout is not None:
            return float(self.timeout)
        return min(float(self.interval), LONGEST_DEFAULT_TIMEOUT)

    def collect(self) -> dict[str, float]:
        """The metrics now: {metric: number} (rule 1)."""
        raise NotImplementedError(f"{type(self).__name__} must define collect()")
