"""What the peer benchmarks (proc, scripts, monitor) print: medians, ratios, numbers.

None stands for "not measured" throughout: a median of nothing, a ratio with a
missing side, a number printed as "-".
"""

import statistics


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"
