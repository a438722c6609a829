"""One-line text charts of a series, for ``monitor spark``.

Rules:
- ``spark(values, width)`` draws one character per value with the eight bars
  ``▁▂▃▄▅▆▇█``: the lowest value is ``▁``, the highest ``█``, the range between cut into
  eight equal steps.  A missing value (None, NaN, or +-Inf, which has no place on the
  scale) is a space, so a gap in collection shows as a gap.
- A flat series (every value the same) is all ``▁``: nothing rose.
- With more values than WIDTH, consecutive values are averaged into WIDTH buckets whose
  sizes differ by at most one; missing values are left out of the average, and a bucket
  with none present is a space.  With WIDTH None or not exceeded, one character per value.
- ``summary_line(name, values, since_text)`` is ``NAME CHART min X max Y last Z (SINCE)``;
  min and max come from the values themselves, not the averaged buckets, so a peak is
  never averaged away; last is the latest value present.  No value at all gives
  ``NAME no data (SINCE)``.
"""

import math

BARS = "▁▂▃▄▅▆▇█"


def present(value):
    return value is not None and math.isfinite(value)


def buckets(values, width):
    """VALUES averaged into WIDTH consecutive buckets (None where a bucket has none)."""
    count = len(values)
    averaged = []
    for index in range(width):
        bucket = values[index * count // width:(index + 1) * count // width]
        found = [v for v in bucket if present(v)]
        averaged.append(sum(found) / len(found) if found else None)
    return averaged


def spark(values, width=None):
    """VALUES as a row of bars, at most WIDTH [one per value] characters wide."""
    values = list(values)
    if width is not None and width < 1:
        raise ValueError(f"width must be at least 1, not {width}")
    if width is not None and len(values) > width:
        values = buckets(values, width)
    shown = [v for v in values if present(v)]
    if not shown:
        return " " * len(values)
    low, high = min(shown), max(shown)
    span = high - low
    return "".join(" " if not present(v) else BARS[0] if span == 0
                   else BARS[min(int((v - low) / span * len(BARS)), len(BARS) - 1)]
                   for v in values)


def number_text(value):
    """VALUE short: two decimals in the everyday range, otherwise 4 significant digits."""
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:.2f}"
    return f"{value:.4g}"


def summary_line(name, values, since_text, width=None):
    """``load.load1 ▁▂▃▅▇▅▃ min 0.12 max 1.96 last 0.80 (1h)``."""
    values = list(values)
    shown = [v for v in values if present(v)]
    if not shown:
        return f"{name} no data ({since_text})"
    return (f"{name} {spark(values, width)} min {number_text(min(shown))} "
            f"max {number_text(max(shown))} last {number_text(shown[-1])} ({since_text})")
