"""The bundled collectors that take metrics other programs write: exec runs a command
each interval and reads what it prints; textfile reads node_exporter's ``*.prom`` files.

Rules:

1. Options are checked as asking.py rule 1 says: one ValueError line naming the option.
2. exec: ``command`` is a list of strings, or a string split as a shell would, never
   run by one; ``format`` is "plain", "influx" or "prometheus" [plain] (formats.py);
   ``cwd`` [/] and ``env`` (a table added to PATH, LANG, HOME, USER: never smanager's
   own environment, which may hold secrets).  Each run is child.spawn's own process
   group, stdin /dev/null.
3. A run gives the samples of its stdout, by name; timestamps are dropped (a sample is
   stamped with its tick), and a later sample of a name replaces an earlier one.
   Prometheus ``# TYPE NAME counter`` makes NAME's series counters (stored as rates).
4. A run fails (CollectError, one line, naming the program) when it cannot start, exits
   non-zero or by a signal (with the first line of its stderr, else of its stdout), prints
   anything the format cannot read (the first problem, "line N: why"), or prints more than
   MAX_OUTPUT bytes (it is stopped at once).  A run still going at IO_SHARE of
   ``time_limit`` less a grace is stopped: TERM, then KILL after the grace; so is its whole
   group when the monitor gives the run up.
5. textfile: ``dir`` (absolute) holds ``*.prom`` files in Prometheus text format, each
   written whole and renamed into place by its writer.  A file that cannot be read, is
   not a regular file, is over MAX_OUTPUT bytes, has a line read_prometheus cannot read,
   or repeats a series of an earlier file (by name order) is skipped whole, as
   node_exporter does: the others' values are still given, ``textfile_errors`` counts the
   skipped files, and the reason (file and line) is logged when it changes.  A missing
   ``dir`` fails the run.  Files are read in a worker thread, never on the loop.
"""

import asyncio
import logging
import os
import pwd
import shlex
import signal
import stat

from ..collector import Collector
from ..supervise import child
from ..supervise.checks import choices, shown
from . import formats
from .asking import IO_SHARE, check_keys, text_option
from .collecting import CollectError

log = logging.getLogger("smanager.monitor")
MAX_OUTPUT = 1 << 20  # bytes of stdout and stderr together, or of one textfile
STOP_GRACE = 1.0  # seconds at most between TERM and KILL, less for a short time_limit
READERS = {"plain": formats.read_plain, "influx": formats.read_influx}
FORMATS = ("plain", "influx", "prometheus")


def read_samples(fmt, text):
    """({name: value}, counters, problems) of TEXT in format FMT (rule 3)."""
    if fmt == "prometheus":
        samples, typed, problems = formats.read_prometheus(text)
    else:
        (samples, problems), typed = READERS[fmt](text), frozenset()
    values = {sample.name: sample.value for sample in samples}
    counters = frozenset(name for name in values if formats.split_name(name)[0] in typed)
    return values, counters, problems


class _Kept:
    """The output sink child.spawn feeds: at most ``cap`` bytes of both streams kept;
    past them ``overflowed`` is set and ``on_overflow()`` called, once."""

    def __init__(self, cap):
        self.streams = {"out": bytearray(), "err": bytearray()}
        self.room, self.overflowed = cap, False
        self.on_overflow = lambda: None

    def feed(self, stream, data):
        if len(data) > self.room and not self.overflowed:
            self.overflowed = True
            self.on_overflow()
        if not self.overflowed:
            self.streams[stream] += data
            self.room -= len(data)

    def end(self, stream):
        pass

    def text(self, stream):
        return self.streams[stream].decode("utf-8", "replace")


def child_environment(extra):
    """PATH, LANG, HOME, USER and LOGNAME, then EXTRA (rule 2)."""
    env = dict(child.BASE_ENV)
    try:
        entry = pwd.getpwuid(os.getuid())
        env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    except KeyError:
        pass
    env.update(extra)
    return env


def path_option(options, key, required=False):
    """OPTIONS[KEY] as an absolute path (~ expanded), or None when not given."""
    if options.get(key) is None and not required:
        return None
    path = os.path.expanduser(text_option(options, key))
    if not os.path.isabs(path):
        raise ValueError(f"{key} must be an absolute path, not {shown(options[key])}")
    return path


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def first_line(*texts):
    """': ' and the first non-blank line of the first text that has one, cut short."""
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                return f": {line.strip()[:200]}"
    return ""


class Exec(Collector):
    """What a command prints, in plain, influx or prometheus format"""

    name = "exec"

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"command", "format", "cwd", "env"})
        command = self.options.get("command")
        if isinstance(command, str):
            try:
                command = shlex.split(command)
            except ValueError as exc:
                raise ValueError(f"command cannot be split: {exc}") from None
        if command is None:
            raise ValueError("command is required")
        if not isinstance(command, list) or not command \
                or not all(isinstance(word, str) and word for word in command):
            raise ValueError(f"command must be a list of words or a string, "
                             f"not {shown(self.options['command'])}")
        self.command, self.program = command, os.path.basename(command[0])
        self.format = self.options.get("format", "plain")
        if self.format not in FORMATS:
            raise ValueError(f"format must be {choices(FORMATS)}, not {shown(self.format)}")
        self.cwd = path_option(self.options, "cwd")
        env = self.options.get("env", {})
        if not isinstance(env, dict) or not all(
                isinstance(value, (str, int, float)) and not isinstance(value, bool)
                for value in env.values()):
            raise ValueError("env must be a table of NAME = value (text or number)")
        self.env = child_environment({key: str(value) for key, value in env.items()})

    async def collect(self):
        grace = min(STOP_GRACE, self.time_limit * 0.2)
        running = self.time_limit * IO_SHARE - grace
        output = _Kept(MAX_OUTPUT)
        try:
            run = await child.spawn(output, argv=self.command, env=self.env, cwd=self.cwd)
        except child.SpawnError as exc:
            raise CollectError(str(exc)) from None
        output.on_overflow = lambda: run.signal(signal.SIGTERM)
        if output.overflowed:  # before spawn returned
            output.on_overflow()
        try:
            async with asyncio.timeout(running):
                code, signum = await run.ended()
        except TimeoutError:
            how = await run.stop(signal.SIGTERM, grace)
            raise CollectError(f"{self.program}: still running after {running:.3g} s; "
                               f"{how}") from None
        finally:
            if not run.exited.is_set() or asyncio.current_task().cancelling():
                run.kill_leftovers()  # the monitor gave the run up: none of it may stay (rule 4)
        out, err = output.text("out"), output.text("err")
        if output.overflowed:
            raise CollectError(f"{self.program}: printed more than {MAX_OUTPUT} bytes; stopped")
        if signum is not None:
            raise CollectError(f"{self.program}: killed by {signal_name(signum)}"
                               f"{first_line(err, out)}")
        if code != 0:
            raise CollectError(f"{self.program}: exited with status {code}{first_line(err, out)}")
        values, counters, problems = read_samples(self.format, out)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CollectError(f"{self.program}: {self.format} output {problems[0]}{more}")
        self.counters = counters
        return values


def read_textfile(path):
    """The text of the regular file PATH, at most MAX_OUTPUT bytes; OSError or ValueError.
    O_NONBLOCK: a FIFO named like a textfile must not hang the thread."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = file.read(MAX_OUTPUT + 1)
    if len(data) > MAX_OUTPUT:
        raise ValueError(f"larger than {MAX_OUTPUT} bytes")
    return data.decode("utf-8", "replace")


def read_textfiles(directory):
    """(values, counters, {file name: why skipped}) of DIRECTORY's *.prom files (rule 5)."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory)
                       if entry.name.endswith(".prom"))
    except OSError as exc:
        raise CollectError(f"{directory}: {exc.strerror}") from None
    values, counters, skipped = {}, set(), {}
    for name in names:
        try:
            file_values, file_counters, problems = read_samples(
                "prometheus", read_textfile(os.path.join(directory, name)))
        except OSError as exc:
            skipped[name] = exc.strerror or str(exc)
            continue
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        repeated = sorted(file_values.keys() & values.keys())
        if problems or repeated:
            skipped[name] = problems[0] if problems else f"{repeated[0]} is in an earlier file"
            continue
        values.update(file_values)
        counters |= file_counters
    return values, frozenset(counters), skipped


class Textfile(Collector):
    """The *.prom files of a directory (node_exporter's textfile collector)"""

    name = "textfile"

    def __init__(self, options=None, *, name=None):
        super().__init__(options, name=name)
        check_keys(self.options, {"dir"})
        self.dir = path_option(self.options, "dir", required=True)
        self._skipped = {}

    async def collect(self):
        values, counters, skipped = await asyncio.to_thread(read_textfiles, self.dir)
        for name, why in skipped.items():
            if self._skipped.get(name) != why:
                log.warning("%s: %s skipped: %s", self.name, os.path.join(self.dir, name), why)
        self._skipped = skipped
        self.counters = counters
        values["textfile_errors"] = float(len(skipped))
        return values


KINDS = {kind.name: kind for kind in (Exec, Textfile)}
