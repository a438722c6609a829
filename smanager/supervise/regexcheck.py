r"""Refusing a parameter pattern that can take exponential time.

A value is matched on the event loop, and Python's ``re`` holds the GIL while
it matches, so one pattern like ``(a+)+`` met with ``aaaa...!`` would stall the
whole server for every client.  The classic cause is a repeat nested in a
repeat, both able to repeat more than once, with nothing else the outer one's
every turn must match: the engine tries every way of splitting the text
between them.  ``nested_repeat(pattern)`` finds one: ``(a+)+``, ``(\w+\s?)+``
and ``(a|aa)+``-like ``(a{1,2})+`` are refused; ``(\.[a-z]+)*`` and
``([a-z]+-)+`` are not (each turn needs its "." or "-").  A repeat that cannot
backtrack (possessive ``a++``, atomic groups ``(?>...)``, Python 3.11) is safe
and is the way to write the others.

It reads the compiled pattern through ``re._parser``, CPython's own parser (a
private module, stable since 3.11); without it, nothing is refused.
Alternatives that overlap inside a repeat (``(a|a)+``), and a required
character the inner repeat also matches (``([a-z]+a)+``), are not detected.
"""

try:
    from re import _constants as sre
    from re import _parser as parser
except ImportError:  # another Python's re: no check
    parser = None

_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")


def nested_repeat(pattern: str) -> str | None:
    """Why PATTERN can take exponential time (one line), or None."""
    if parser is None:
        return None
    try:
        tree = parser.parse(pattern)
    except Exception:  # noqa: BLE001 - re.compile has said what is wrong with it
        return None
    return _walk(tree, inside=False)


def _walk(items, inside):
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            _, high, body = av
            repeats = high is sre.MAXREPEAT or high > 1
            if repeats and inside:
                return ("a repeat inside a repeat can take exponential time on a value that "
                        "almost matches; make one possessive (a++) or atomic ((?>...))")
            found = _walk(body, inside or (repeats and not _has_fixed(body)))
        elif name == "SUBPATTERN":
            found = _walk(av[3], inside)
        elif name == "BRANCH":
            found = next(filter(None, (_walk(branch, inside) for branch in av[1])), None)
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _walk(av[1], inside)
        elif name == "GROUPREF_EXISTS":
            found = next(filter(None, (_walk(branch, inside) for branch in av[1:] if branch)),
                         None)
        else:  # literals, classes, anchors; POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack
            found = None
        if found:
            return found
    return None


def _has_fixed(items):
    """Whether every match of ITEMS takes at least one character outside their repeats."""
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "IN", "ANY"):
            return True
        if name == "SUBPATTERN" and _has_fixed(av[3]):
            return True
    return False
