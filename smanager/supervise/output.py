"""A child's stdout and stderr: log files, the last lines in memory, and live followers.

The rules:

1. ``feed(stream, chunk)`` writes the chunk's bytes to the stream's log file
   unchanged, with one write per chunk, and cuts the chunk into lines.
2. A line ends at LF; a CR right before the LF is dropped.  Text is UTF-8
   decoded with errors replaced.  ``end(stream)`` makes the unterminated rest
   a line.  A line over ``max_line`` bytes keeps its first ``max_line`` bytes
   plus `` [line cut: N more bytes]``; the rest is only counted.
3. Each stream (out, err, and sys for smanager's own notes) keeps its last
   ``lines`` lines, and at most RING_TEXT characters of them; oldest go first.
4. A log file that a write would take past ``max_bytes`` is rotated first:
   NAME.out.log -> NAME.out.log.1 -> .2 ... up to ``backups`` old files
   (0: no old file).  ``max_bytes`` 0 never rotates.  Files are opened for
   append, so a new Output for the same name continues them.
5. A file that cannot be written is logged once and left: lines still reach
   memory and followers.  It is tried again at the next rotation (counted as
   if the bytes had been written) or at ``reopen()``.
6. A follower gets every line from its start on, in order, from a queue of
   ``queue_size``.  When the queue is full new lines are dropped and the next
   kept line is preceded by a sys line ``[N lines dropped]``; feed() never waits.

Memory is bounded whatever the child writes: per stream ``lines`` lines (and
RING_TEXT characters) plus one partial line of ``max_line`` bytes, plus the
followers' queues.
"""

import asyncio
import logging
import os
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from itertools import chain, count, islice, repeat

from .lines import LineSplitter
from .logfile import LogFile

log = logging.getLogger("smanager.proc")

RING_TEXT = 1 << 20
STREAMS = ("out", "err")
CHOICES = {"out": ("out",), "err": ("err",), "both": ("out", "err", "sys")}


@dataclass(frozen=True, slots=True)
class Line:
    """One line of output: ``at`` when it was completed; stream "sys" is smanager's own."""

    at: float
    stream: str
    text: str


class _Ring:
    """The last lines of one stream, as (seq, at, text); seq orders streams together."""

    def __init__(self, stream, lines):
        self.stream = stream
        self._lines = lines
        self._entries = deque()
        self._chars = 0

    def add(self, seq, at, texts):
        if len(texts) > self._lines:    # most of a big batch would go at once
            seq += len(texts) - self._lines
            texts = texts[len(texts) - self._lines:]
        self._entries.extend(zip(count(seq), repeat(at), texts))
        self._chars += sum(map(len, texts))
        while len(self._entries) > self._lines or self._chars > RING_TEXT:
            self._chars -= len(self._entries.popleft()[2])

    def last(self, n):
        return [(seq, Line(at, self.stream, text))
                for seq, at, text in islice(reversed(self._entries), n)]


class Output:
    """What one program writes (see the module's rules)."""

    def __init__(self, name, log_dir, *, max_bytes=10 * 1024 * 1024, backups=5, lines=1000,
                 clock=time.time):
        self.name = name
        self._clock = clock
        self._splitters = {stream: LineSplitter() for stream in STREAMS}
        self._rings = {stream: _Ring(stream, lines) for stream in CHOICES["both"]}
        self._seq = 0
        self._followers = set()
        self._closed = False
        self.paths = {}
        if log_dir is not None:
            self.paths = {s: os.path.join(log_dir, f"{name}.{s}.log") for s in STREAMS}
        self._files = {s: LogFile(name, path, max_bytes, backups)
                       for s, path in self.paths.items()}
        self._backups = backups

    def feed(self, stream, data):
        splitter = self._splitters[stream]
        if not data:
            return
        if stream in self._files:
            self._files[stream].write(data)
        texts = splitter.feed(data)
        if texts:
            self._publish(stream, texts)

    def end(self, stream):
        texts = self._splitters[stream].flush()
        if texts:
            self._publish(stream, texts)

    def note(self, text):
        """A line from smanager itself: to memory, followers and the err file."""
        text = " ".join(text.splitlines())
        self._publish("sys", [text])
        if "err" in self._files:
            file = self._files["err"]
            file.write((b"" if file.ends_line else b"\n") + f"[smanager] {text}\n".encode())

    def last(self, n=50, stream="both"):
        if stream not in CHOICES:
            raise ValueError(f"stream must be out, err or both, not {stream!r}")
        if n <= 0:
            return []
        found = chain.from_iterable(self._rings[s].last(n) for s in CHOICES[stream])
        return [line for _, line in sorted(found, key=lambda entry: entry[0])[-n:]]

    def last_text(self, stream="err"):
        lines = self.last(1, stream)
        return lines[0].text if lines else None

    def follow(self, *, queue_size=1000):
        follower = Follower(self, queue_size)
        if self._closed:
            follower._end()
        else:
            self._followers.add(follower)
        return follower

    def close(self):
        """Close the files (later output stays in memory) and end the followers."""
        self._closed = True
        for file in self._files.values():
            file.close()
        followers, self._followers = self._followers, set()
        for follower in followers:
            follower._end()

    def delete_files(self):
        """Close, and remove the log files and their rotated copies (a session
        that is gone must not leave its logs to grow the disk forever)."""
        self.close()
        for path in self.paths.values():
            for name in [path] + [f"{path}.{n}" for n in range(1, self._backups + 1)]:
                with suppress(FileNotFoundError):
                    os.unlink(name)

    def reopen(self):
        for file in self._files.values():
            file.close()
            file.open()

    def _publish(self, stream, texts):
        at = self._clock()
        self._rings[stream].add(self._seq, at, texts)
        self._seq += len(texts)
        for follower in self._followers:
            follower._offer(at, stream, texts)


class Follower:
    """An async iterator of the Lines an Output publishes from now on (rule 6)."""

    def __init__(self, output, queue_size):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._output = output
        self._queue_size = queue_size
        self._pending = deque()
        self._dropped = 0
        self._dropped_at = 0.0
        self._ended = False
        self._waiter = None

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pending.popleft()

    def ready_now(self):
        """Every Line already waiting, without waiting for more (a batch for one chunk)."""
        lines = list(self._pending)
        self._pending.clear()
        return lines

    def close(self):
        self._output._followers.discard(self)
        self._pending.clear()
        self._dropped = 0
        self._ended = True
        self._wake()

    def _offer(self, at, stream, texts):
        room = self._queue_size - len(self._pending) - (1 if self._dropped else 0)
        kept = texts[: max(room, 0)]
        if kept:
            self._mark_dropped(at)
            self._pending.extend(Line(at, stream, text) for text in kept)
            self._wake()
        if len(kept) < len(texts):
            self._dropped += len(texts) - len(kept)
            self._dropped_at = at

    def _end(self):
        self._mark_dropped(self._dropped_at)
        self._ended = True
        self._wake()

    def _mark_dropped(self, at):
        if self._dropped:
            self._pending.append(Line(at, "sys", f"[{self._dropped} lines dropped]"))
            self._dropped = 0

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
