"""Bytes to lines, for a child's output (rule 2 of output.py): split at LF, a CR
before it dropped, UTF-8 with errors replaced, and a line over ``max_line``
bytes cut (its first ``max_line`` bytes kept, the rest only counted), so
memory stays bounded whatever the child writes."""

class LineSplitter:
    """Bytes of one stream in, finished lines out (rule 2); pure."""

    def __init__(self, max_line=65536):
        self._max_line = max_line
        self._partial = bytearray()
        self._cut = 0           # bytes of the pending line dropped past max_line
        self._cut_cr = False    # the last dropped byte is a CR, which may end the line

    def feed(self, data):
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
            return []
        lines, start = [], 0
        if self._partial or self._cut:
            start = data.find(b"\n") + 1
            self._hold(data[: start - 1])
            lines.append(self._finish())
        if start <= last:
            lines += self._split(data[start: last + 1])
        self._hold(data[last + 1:])
        return lines

    def flush(self):
        return [self._finish()] if self._partial or self._cut else []

    def _split(self, region):
        """Whole lines, each ending in LF.  A region no longer than max_line
        cannot hold a long line: decode and split it at C speed."""
        if len(region) <= self._max_line:
            text = str(region, "utf-8", "replace")
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            lines = text.split("\n")
            lines.pop()
            return lines
        lines = []
        for part in region[:-1].split(b"\n"):
            if part.endswith(b"\r"):
                part = part[:-1]
            if len(part) > self._max_line:
                lines.append(_cut_text(part[: self._max_line], len(part) - self._max_line))
            else:
                lines.append(str(part, "utf-8", "replace"))
        return lines

    def _hold(self, data):
        if not data:
            return
        if not self._cut:
            room = self._max_line - len(self._partial)
            if len(data) <= room:
                self._partial += data
                return
            self._partial += data[:room]
            data = data[room:]
        self._cut += len(data)
        self._cut_cr = data.endswith(b"\r")

    def _finish(self):
        line, dropped, more = bytes(self._partial), self._cut, self._cut - self._cut_cr
        self._partial.clear()
        self._cut, self._cut_cr = 0, False
        if more:
            return _cut_text(line, more)
        if not dropped and line.endswith(b"\r"):
            line = line[:-1]
        return str(line, "utf-8", "replace")


def _cut_text(kept, more):
    return f"{str(kept, 'utf-8', 'replace')} [line cut: {more} more bytes]"
