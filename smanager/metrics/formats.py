"""The text formats samples travel in: what exec collectors print, what export writes.

Rules:
- A sample is ``Sample(name, value, ts)``: value a float (NaN and +-Inf allowed), ts Unix
  seconds as a float, or None when the text gave none (the caller decides "now").
- A name is a base of ``[A-Za-z0-9_.:-]`` with optional labels in Prometheus's own syntax,
  keys sorted: ``cpu.usage{host="a",path="/var/x"}``.  ``labelled(base, labels)`` builds one,
  ``split_name(name)`` takes one apart.
- Readers take a whole text and return what they could read plus problems: one line each,
  ``line N: why``.  A bad line never stops the others; lines end at "\\n" ("\\r" dropped).
  - ``read_plain``: ``name value [unix_seconds]``; '#' comments and blank lines skipped.
  - ``read_influx``: InfluxDB line protocol.  Each numeric field is a sample named
    ``measurement.field`` with the tags as labels; integers (``i``/``u``), floats and
    booleans (1/0) are read, string fields skipped silently; timestamps in nanoseconds.
  - ``read_prometheus``: text exposition 0.0.4; histogram and summary series are plain
    samples; timestamps in milliseconds; also returns the names TYPEd ``counter``.
- Writers return one line per sample, each ending "\\n".
  - ``graphite_lines``: ``path value seconds``; labels' values (by key) become trailing path
    segments; anything outside ``[A-Za-z0-9_.-]`` becomes "_"; ts None is ``now``; NaN and
    Inf are left out (carbon drops NaN).  ``read_plain`` reads it back.
  - ``influx_lines``: measurement and field from ``measurement_of(base)`` [split at the last
    dot: ``load.load1`` -> ``load load1=0.5``], labels as tags (empty ones dropped); always a
    float field (InfluxDB refuses a field that changes type); ns timestamps with microsecond
    precision, none when ts is None; NaN and Inf left out (InfluxDB refuses them).
  - ``prometheus_text``: names ``prefix + base`` with every character outside
    ``[A-Za-z0-9_]`` made "_"; counters end in ``_total``; one HELP and TYPE per family;
    a repeated series keeps its last value; no timestamps (node_exporter's textfile
    collector refuses them).
"""

import math
import re
import time
from collections import namedtuple

Sample = namedtuple("Sample", "name value ts")

BASE_NAME, BASE_NAME_RULE = re.compile(r"[A-Za-z0-9_.:-]+\Z"), "a name of [A-Za-z0-9_.:-]"
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z|[-+]?(nan|inf|infinity)\Z", re.I)
INTEGER = re.compile(r"[-+]?\d+\Z")
LABEL = re.compile(r'\s*([A-Za-z0-9_.:-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,?)\s*')
LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
PROMETHEUS_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
PROMETHEUS_KINDS = {"counter", "gauge", "histogram", "summary", "untyped"}
INFLUX_TRUE = {"t", "T", "true", "True", "TRUE"}
INFLUX_FALSE = {"f", "F", "false", "False", "FALSE"}


def shown(text, limit=40):
    """TEXT quoted for a one-line problem, cut to LIMIT characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def checked(pattern, text, what):
    """TEXT when PATTERN matches all of it; otherwise ValueError: it is not WHAT."""
    if not pattern.match(text):
        raise ValueError(f"{shown(text)} is not {what}")
    return text


def parse_number(text):
    """A float from decimal TEXT (NaN and Inf in any case); no underscores, no hex."""
    return float(checked(NUMBER, text, "a number"))


def labelled(base, labels):
    """The sample name of BASE with LABELS ({key: value}), keys sorted."""
    inner = ",".join(f'{key}="{labels[key].translate(LABEL_ESCAPES)}"' for key in sorted(labels))
    return f"{base}{{{inner}}}" if labels else base


def read_labels(text, start):
    """The labels from TEXT[START:] up to the closing brace: ({key: value}, index after it)."""
    labels, at = {}, start
    while not text.startswith("}", at):
        match = LABEL.match(text, at)
        if not match:
            raise ValueError(f"bad label at {shown(text[at:])}")
        labels[match[1]] = re.sub(r'\\([\\"n])', lambda m: "\n" if m[1] == "n" else m[1], match[2])
        at = match.end()
        if not match[3] and not text.startswith("}", at):
            raise ValueError(f"labels not closed: {shown(text[start - 1:])}")
    return labels, at + 1


def split_name(name):
    """(base, {key: value}) of a sample name."""
    base, brace, _ = name.partition("{")
    if not brace:
        return name, {}
    labels, end = read_labels(name, len(base) + 1)
    if end != len(name):
        raise ValueError(f"text after the labels in {shown(name)}")
    return base, labels


def read_by_line(text, read_line):
    """(samples, problems): READ_LINE(line) gives each non-blank line's samples or raises
    ValueError, which becomes a problem naming the line."""
    samples, problems = [], []
    for number, line in enumerate(text.split("\n"), 1):
        try:
            samples += read_line(line.strip()) if line.strip() else []
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    return samples, problems


def plain_samples(line):
    if line.startswith("#"):
        return []
    fields = line.split()
    if len(fields) not in (2, 3):
        raise ValueError(f"expected 'name value [timestamp]', got {shown(line)}")
    ts = parse_number(fields[2]) if len(fields) == 3 else None
    if ts is not None and not math.isfinite(ts):
        raise ValueError(f"timestamp {shown(fields[2])} is not finite")
    return [Sample(checked(BASE_NAME, fields[0], BASE_NAME_RULE), parse_number(fields[1]), ts)]


def read_plain(text):
    """(samples, problems) from ``name value [unix_seconds]`` lines."""
    return read_by_line(text, plain_samples)


def split_influx(text, separator, quoted=False, most=-1):
    """TEXT cut at SEPARATOR where no backslash escapes it (nor, if QUOTED, a double-quoted
    string holds it), at most MOST times; pieces keep their escapes."""
    pieces, start, at, in_string = [], 0, 0, False
    while at < len(text) and most != 0:
        if text[at] == "\\":
            at += 1
        elif quoted and text[at] == '"':
            in_string = not in_string
        elif text[at] == separator and not in_string:
            pieces.append(text[start:at])
            start, most = at + 1, most - 1
        at += 1
    if in_string:
        raise ValueError("a string field is not closed")
    return pieces + [text[start:]]


def unescape_influx(text):
    return re.sub(r"\\([\\, =])", r"\1", text)


def influx_value(raw):
    """The float of a field value, or None for a string."""
    if raw in INFLUX_TRUE or raw in INFLUX_FALSE:
        return float(raw in INFLUX_TRUE)
    if raw[-1:] in ("i", "u"):
        return float(checked(INTEGER, raw[:-1], "an integer"))
    return None if raw.startswith('"') else parse_number(raw)


def influx_samples(line):
    if line.startswith("#"):
        return []
    key, *rest = split_influx(line, " ", most=1)
    fields_and_time = split_influx(rest[0], " ", quoted=True) if rest else []
    if len(fields_and_time) not in (1, 2) or not fields_and_time[0]:
        raise ValueError(f"expected 'measurement[,tags] fields [timestamp]', got {shown(line)}")
    measurement, *tags = split_influx(key, ",")
    if not measurement:
        raise ValueError(f"no measurement in {shown(line)}")
    labels = {}
    for tag in tags:
        tag_key, *tag_value = split_influx(tag, "=", most=1)
        if not tag_value or not tag_key:
            raise ValueError(f"tag {shown(unescape_influx(tag))} has no '='")
        tag_key = checked(BASE_NAME, unescape_influx(tag_key), "a tag key of [A-Za-z0-9_.:-]")
        labels[tag_key] = unescape_influx(tag_value[0])
    ts = None
    if len(fields_and_time) == 2:
        ts = int(checked(INTEGER, fields_and_time[1], "a timestamp in ns")) / 10**9
    samples = []
    for field in split_influx(fields_and_time[0], ",", quoted=True):
        field_key, *raw = split_influx(field, "=", quoted=True, most=1)
        if not raw or not field_key or not raw[0]:
            raise ValueError(f"field {shown(field)} is not 'key=value'")
        value = influx_value(raw[0])
        if value is not None:
            base = f"{unescape_influx(measurement)}.{unescape_influx(field_key)}"
            checked(BASE_NAME, base, BASE_NAME_RULE)
            samples.append(Sample(labelled(base, labels), value, ts))
    return samples


def read_influx(text):
    """(samples, problems) from InfluxDB line protocol."""
    return read_by_line(text, influx_samples)


def prometheus_sample(line):
    match = PROMETHEUS_NAME.match(line)
    if not match:
        raise ValueError(f"no metric name at {shown(line)}")
    labels, at = {}, match.end()
    if line.startswith("{", at):
        labels, at = read_labels(line, at + 1)
    fields = line[at:].split()
    if not line[at:at + 1].isspace() or len(fields) not in (1, 2):
        raise ValueError(f"expected 'name[{{labels}}] value [timestamp_ms]', got {shown(line)}")
    ts = int(checked(INTEGER, fields[1], "a timestamp in ms")) / 1000 if len(fields) == 2 else None
    return [Sample(labelled(match[0], labels), parse_number(fields[0]), ts)]


def read_prometheus(text):
    """(samples, counters, problems) from Prometheus text exposition; COUNTERS is the
    frozenset of the names a ``# TYPE NAME counter`` line declares."""
    counters = set()

    def read_line(line):
        words = line.split()
        if words[:2] == ["#", "TYPE"]:
            if len(words) != 4 or words[3] not in PROMETHEUS_KINDS:
                raise ValueError(f"expected '# TYPE name counter|gauge|histogram|summary|untyped',"
                                 f" got {shown(line)}")
            counters.update(words[2:3] if words[3] == "counter" else [])
        return [] if line.startswith("#") else prometheus_sample(line)
    samples, problems = read_by_line(text, read_line)
    return samples, frozenset(counters), problems


def graphite_lines(samples, now=None):
    """Graphite plaintext lines; a sample without a timestamp gets NOW [the time]."""
    when = time.time() if now is None else now
    lines = []
    for sample in samples:
        if math.isfinite(sample.value):
            base, labels = split_name(sample.name)
            tags = [re.sub(r"[^A-Za-z0-9_-]", "_", labels[key]) or "_" for key in sorted(labels)]
            path = re.sub(r"[^A-Za-z0-9_.-]", "_", ".".join([base] + tags))
            ts = when if sample.ts is None else sample.ts
            lines.append(f"{path} {float(sample.value)!r} {int(ts)}\n")
    return "".join(lines)


def field_after_last_dot(base):
    """(measurement, field) of BASE: ``load.load1`` -> ("load", "load1"); no dot -> "value"."""
    measurement, _, field = base.rpartition(".")
    return (measurement, field) if measurement and field else (base, "value")


def field_named_value(base):
    """(BASE, "value"): the whole name is the measurement."""
    return base, "value"


def escape_influx(text, specials):
    """TEXT for line protocol: SPECIALS and backslashes escaped; a line break, which the
    protocol cannot carry at all, becomes a space (a label from a Prometheus text may hold one)."""
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return re.sub(f"([\\\\{specials}])", r"\\\1", text)


def influx_lines(samples, measurement_of=field_after_last_dot):
    """InfluxDB line protocol, one float field per line."""
    lines = []
    for sample in samples:
        if math.isfinite(sample.value):
            base, labels = split_name(sample.name)
            measurement, field = measurement_of(base)
            tags = "".join(f",{escape_influx(key, ',= ')}={escape_influx(value, ',= ')}"
                           for key, value in sorted(labels.items()) if value)
            ts = "" if sample.ts is None else f" {round(sample.ts * 1e6) * 1000}"
            lines.append(f"{escape_influx(measurement, ', ')}{tags} "
                         f"{escape_influx(field, ',= ')}={float(sample.value)!r}{ts}\n")
    return "".join(lines)


def prometheus_name(base, prefix="smanager_", counter=False):
    """BASE as a Prometheus metric name: PREFIX added, "_total" on counters."""
    name = prefix + re.sub(r"[^A-Za-z0-9_]", "_", base)
    name = "_" + name if name[:1].isdigit() else name
    return name + "_total" if counter and not name.endswith("_total") else name


def prometheus_number(value):
    special = {math.inf: "+Inf", -math.inf: "-Inf"}
    return "NaN" if math.isnan(value) else special.get(value, repr(float(value)))


def prometheus_text(samples, counters=(), help=None, prefix="smanager_"):
    """Prometheus text exposition of SAMPLES.  COUNTERS holds base names of counters;
    HELP maps base names to their help text [the base name itself]."""
    families = {}  # family name -> (kind, help text, {labels text: sample line})
    for sample in samples:
        base, labels = split_name(sample.name)
        family = prometheus_name(base, prefix, counter=base in counters)
        kind, text, series = families.setdefault(
            family, ("counter" if base in counters else "gauge", (help or {}).get(base, base), {}))
        inner = labelled("", {prometheus_name(key, ""): value for key, value in labels.items()})
        series[inner] = f"{family}{inner} {prometheus_number(sample.value)}\n"
    out = []
    for family, (kind, text, series) in families.items():
        text = text.replace("\\", "\\\\").replace("\n", "\\n")
        out += [f"# HELP {family} {text}\n# TYPE {family} {kind}\n", *series.values()]
    return "".join(out)
