"""What one script run writes, kept for its result in Pyjojo's shape, and followed live.

The rules:

1. ``feed(stream, chunk)`` ("out" or "err") cuts the chunk into lines with
   LineSplitter: split at LF, a CR before it dropped, UTF-8 with errors
   replaced, a line over 64 KiB cut and marked.  ``end(stream)`` makes the
   unterminated rest a line.  Work per chunk and per line, never per byte.
2. A stdout line that starts with ``jojo_return_value`` is a return value:
   the rest is split at its first "=" into KEY and VALUE, both stripped, and
   a later KEY replaces an earlier one.  It is not output: it is neither kept
   in stdout nor shown to followers.  One without "=" or with an empty KEY
   is ordinary output.
3. Split mode keeps stdout and stderr apart.  Combined mode is Pyjojo's
   stderr-into-stdout: both streams are one stream "out", in arrival order,
   line by line (never split on whitespace, Pyjojo's bug #35), so a return
   value on stderr counts too, as it did there.
4. Kept output is bounded by ``cap`` bytes: each line counts its UTF-8 bytes
   plus one for its newline.  The first line that would pass the cap is not
   kept, nor is any after it; ``truncated`` becomes True and the sys line
   ``[output truncated at 1 MB]`` is kept (once) in its place.  Followers
   still get every line.  Return values have a budget of their own of
   ``cap`` bytes (so a flood of output never costs the values printed at the
   end); past it a value is dropped and ``truncated`` is True.
5. ``note(text)`` adds smanager's own sys line (e.g. a timeout); notes are few,
   always kept, not counted, kept in ``notes`` and shown to followers.
6. ``follow(replay=True)`` gives a RunFollower: first every line kept so far
   (out, err and sys, in order), then the lines published from then on,
   through a queue of ``queue_size`` that drops when full and says
   ``[N lines dropped]``, exactly like output.py's Follower (rule 6): feed()
   never waits.  ``close()`` ends every follower after what it holds; a
   follower made after close() replays and ends.

Memory: ``cap`` bytes of text, plus per kept line its str object (about 50
bytes), one list slot, one byte and one float; plus the followers' queues and
one partial line per stream.  So 100-byte lines cost about 1.8 x ``cap`` and
the worst case, 2-character lines, about 24 x ``cap``.
"""

import time
from array import array
from itertools import repeat

from .lines import LineSplitter
from .output import Follower, Line

MAX_LINE = 65536
RETURN_PREFIX = "jojo_return_value"
STREAMS = ("out", "err", "sys")    # a kept line's stream, by its code in _codes
OUT, ERR, SYS = range(3)

# A script's output line: ``at`` when it was completed, stream "out", "err" or
# "sys" (smanager's own).  The same record a supervised program's lines use, so
# the follower machinery is shared.
RunLine = Line


class RunOutput:
    """One run's stdout, stderr, notes and return values (see the module's rules)."""

    def __init__(self, *, combined=False, cap=1_000_000, clock=time.time):
        self.combined = combined
        self.stdout = []
        self.stderr = []
        self.notes = []
        self.return_values = {}
        self.truncated = False
        self._cap = cap
        self._clock = clock
        self._splitters = {"out": LineSplitter(MAX_LINE), "err": LineSplitter(MAX_LINE)}
        self._kept = (self.stdout, self.stderr, self.notes)
        self._kept_bytes = 0
        self._output_full = False     # the cap is reached: lines are no longer kept
        self._return_bytes = 0
        self._codes = bytearray()     # per kept line, in order: its stream's code
        self._ats = array("d")        # per kept line: when it was completed
        self._followers = set()
        self._closed = False

    def feed(self, stream, data):
        if data:
            texts = self._splitters[stream].feed(data)
            if texts:
                self._take(stream, texts)

    def end(self, stream):
        texts = self._splitters[stream].flush()
        if texts:
            self._take(stream, texts)

    def note(self, text):
        self._sys_line(self._clock(), " ".join(text.splitlines()))

    def result(self, retcode):
        """Pyjojo's result: split mode has stderr, combined mode has none."""
        result = {"retcode": retcode, "stdout": list(self.stdout)}
        if not self.combined:
            result["stderr"] = list(self.stderr)
        result["return_values"] = dict(self.return_values)
        if self.truncated:
            result["truncated"] = True
        return result

    def follow(self, *, replay=True, queue_size=1000):
        follower = RunFollower(self, queue_size, len(self._codes) if replay else 0)
        if self._closed:
            follower._end()
        else:
            self._followers.add(follower)
        return follower

    def close(self):
        self._closed = True
        followers, self._followers = self._followers, set()
        for follower in followers:
            follower._end()

    def _replay_line(self, index, cursors):
        """The kept line at ``index``; ``cursors`` (per stream, advanced here)
        say where it sits in its stream's list.  For RunFollower's replay."""
        code = self._codes[index]
        text = self._kept[code][cursors[code]]
        cursors[code] += 1
        return RunLine(self._ats[index], STREAMS[code], text)

    def _take(self, stream, texts):
        if self.combined or stream == "out":
            stream = "out"
            if any(text.startswith(RETURN_PREFIX) for text in texts):
                texts = [text for text in texts if not self._return_value(text)]
                if not texts:
                    return
        at = self._clock()
        fits = 0 if self._output_full else self._fitting(texts)
        kept, rest = texts[:fits], texts[fits:]
        if kept:
            self._keep(OUT if stream == "out" else ERR, at, kept)
            self._publish(at, stream, kept)
        if rest and not self._output_full:
            self._output_full = self.truncated = True
            self._sys_line(at, f"[output truncated at {_size_text(self._cap)}]")
        if rest:
            self._publish(at, stream, rest)

    def _fitting(self, texts):
        """How many of ``texts`` fit under the cap (rule 4), counting them in."""
        size = _utf8_size("".join(texts)) + len(texts)
        if self._kept_bytes + size <= self._cap:
            self._kept_bytes += size
            return len(texts)
        for fits, text in enumerate(texts):    # only for the batch that crosses the cap
            size = _utf8_size(text) + 1
            if self._kept_bytes + size > self._cap:
                return fits
            self._kept_bytes += size
        return len(texts)

    def _return_value(self, text):
        """Take ``text`` as a return value if it is one (rule 2)."""
        if not text.startswith(RETURN_PREFIX):
            return False
        key, equals, value = text[len(RETURN_PREFIX):].partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            return False
        size = _utf8_size(key) + _utf8_size(value)
        replaced = self.return_values.get(key)  # a value reported again: its last one counts
        freed = 0 if replaced is None else _utf8_size(key) + _utf8_size(replaced)
        if self._return_bytes - freed + size > self._cap:
            self.truncated = True
        else:
            self._return_bytes += size - freed
            self.return_values[key] = value
        return True

    def _sys_line(self, at, text):
        self._keep(SYS, at, [text])
        self._publish(at, "sys", [text])

    def _keep(self, code, at, texts):
        self._kept[code].extend(texts)
        self._codes.extend(bytes((code,)) * len(texts))
        self._ats.extend(repeat(at, len(texts)))

    def _publish(self, at, stream, texts):
        for follower in self._followers:
            follower._offer(at, stream, texts)


class RunFollower(Follower):
    """An async iterator of RunLines: the kept ones first (with replay), then
    the live ones (rule 6).  ``ready_now()`` hands out at most ``queue_size``
    replayed lines at a time, so a caller's batch stays bounded."""

    def __init__(self, output, queue_size, replay_end):
        super().__init__(output, queue_size)
        self._replayed = 0
        self._replay_end = replay_end
        self._cursors = [0, 0, 0]

    async def __anext__(self):
        if self._replayed < self._replay_end:
            return self._next_replayed()
        return await super().__anext__()

    def ready_now(self):
        if self._replayed < self._replay_end:
            count = min(self._replay_end - self._replayed, self._queue_size)
            return [self._next_replayed() for _ in range(count)]
        return super().ready_now()

    def close(self):
        self._replay_end = self._replayed
        super().close()

    def _next_replayed(self):
        line = self._output._replay_line(self._replayed, self._cursors)
        self._replayed += 1
        return line


def _utf8_size(text):
    return len(text) if text.isascii() else len(text.encode())


def _size_text(size):
    for unit, name in ((1_000_000, "MB"), (1000, "kB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"
