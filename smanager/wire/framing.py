"""Framing: the bytes a client sends, cut into lines.

The rules, in the order they apply:

1. Telnet commands never reach a line.  ``IAC IAC`` is a literal 0xFF byte.
   Option requests are refused (``DO x`` -> ``WONT x``, ``WILL x`` -> ``DONT x``),
   except ``DO TIMING-MARK``, answered ``WILL TIMING-MARK``: telnet sends it after
   Ctrl-C and discards all output until it is answered.  Subnegotiations
   (``IAC SB ... IAC SE``) are skipped whole.
   Each option is refused once; a client repeating itself gets no new answer.
2. ``IAC IP`` (Ctrl-C) and ``IAC BRK`` are an interrupt: the partial line is
   discarded and the caller is told.  ``IAC EL`` erases the partial line,
   ``IAC EC`` its last byte.
3. A line ends at LF; a CR right before the LF is dropped.  CR NUL (telnet's
   bare carriage return) also ends a line.
4. A line longer than the limit is an overflow: the framer stops for good, so
   the tail of an oversized line can never become a command.
5. At end of input, a last unterminated line is still a line.

The framer is pure: ``feed(bytes)`` returns events, in order.  A line is a
``bytes`` object; everything else is one of the small classes below.
"""

import re

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
IP, BRK, EL, EC = 244, 243, 248, 247
TIMING_MARK = 6
_IAC_BYTE = b"\xff"
_SPECIAL = re.compile(b"[\n\xff\x00]")  # what ends or interrupts plain text


class Interrupt:
    """The client pressed Ctrl-C (telnet IP or BRK)."""

    __slots__ = ()

    def __repr__(self):
        return "INTERRUPT"


class Overflow:
    """A line went over the limit; the framer has stopped."""

    __slots__ = ()

    def __repr__(self):
        return "OVERFLOW"


INTERRUPT = Interrupt()
OVERFLOW = Overflow()


class TelnetAnswer(bytes):
    """Bytes to send back to a telnet client (an option refusal or a timing mark)."""

    __slots__ = ()


def answer_option(verb, option):
    """The refusal (or timing mark) owed for one option request, or None."""
    if verb == DO:
        return TelnetAnswer((IAC, WILL if option == TIMING_MARK else WONT, option))
    if verb == WILL:
        return TelnetAnswer((IAC, DONT, option))
    return None  # WONT and DONT agree with the state we are already in.


class LineFramer:
    """Turns a byte stream into lines and telnet events; see the module rules."""

    def __init__(self, max_line=65536):
        self.max_line = max_line
        self.overflowed = False
        self._partial = bytearray()
        self._telnet = b""  # an unfinished telnet command carried over from the last feed
        self._in_subnegotiation = False
        self._skipped = 0  # bytes of subnegotiation skipped so far
        self._refused = frozenset()  # (verb, option) already answered (rare: telnet)
        self._stateful = False  # a telnet command or subnegotiation is half-read, or overflowed
        self.telnet_seen = False  # the client has spoken telnet: it is interactive
        self.only_lines = True  # the last feed() found lines and nothing else

    @property
    def partial(self):
        """The bytes of the line not yet terminated."""
        return bytes(self._partial)

    @property
    def has_partial(self):
        return bool(self._partial)

    @property
    def at_line_start(self):
        """Nothing half-read: the next byte starts a new line."""
        return not self._partial and not self._stateful

    def feed(self, data):
        """Consume bytes; return the events they complete, in order.

        ``only_lines`` then says whether every event is a line (no telnet
        answer, interrupt or overflow), so a caller may take them as a batch.
        """
        # The common cases, plain text (no telnet, no NUL) that cannot overflow:
        # whole lines at once, the same result as the general path at a fraction
        # of its cost.  (Bytes are looked for as ints: ``255 in data`` is a
        # memchr, ``b"\xff" in data`` a substring search that costs 3 times more.)
        if not self._stateful and 255 not in data and 0 not in data:
            partial = self._partial
            if not partial and len(data) <= self.max_line:
                self.only_lines = True
                lines = data.split(b"\n")  # _split_text() with nothing carried over
                tail = lines.pop()
                if tail:
                    partial += tail
                if 13 in data:
                    return [line[:-1] if line[-1:] == b"\r" else line for line in lines]
                return lines
            if partial and len(partial) + len(data) <= self.max_line:
                self.only_lines = True
                return self._split_text(data)
        self.only_lines = False
        events = []
        if self.overflowed:
            return events
        if self._telnet or self._in_subnegotiation or _IAC_BYTE in data:
            self.telnet_seen = True
            self._feed_telnet(self._telnet + data, events)
        else:
            self._add_text(data, events)
        self._stateful = bool(self._telnet) or self._in_subnegotiation or self.overflowed
        return events

    def eof(self):
        """The client has finished sending; a last unterminated line still counts."""
        events = []
        if not self.overflowed and self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._emit(line[:-1] if line.endswith(b"\r") else line, events)
        return events

    def take_partial(self):
        """Remove and return the unterminated line (for a client that never ends it)."""
        line = bytes(self._partial)
        self._partial.clear()
        return line

    # -- text ------------------------------------------------------------------

    def _split_text(self, data):
        """Plain text (no telnet, no NUL) whose lines all fit: split in one go."""
        lines = data.split(b"\n")
        if self._partial:
            lines[0] = bytes(self._partial) + lines[0]
            self._partial.clear()
        tail = lines.pop()
        if tail:
            self._partial += tail
        if 13 in data or lines and lines[0][-1:] == b"\r":  # a CR (13) LF split across reads
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        return lines

    def _add_text(self, data, events):
        if b"\x00" in data:
            if data[:1] == b"\x00" and self._partial.endswith(b"\r"):
                data = b"\n" + data[1:]  # CR ended the last feed; the CR is dropped below
            data = data.replace(b"\r\x00", b"\n")
        start = 0
        newline = data.find(b"\n")
        while newline >= 0:
            if self._partial:
                self._partial += data[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:newline]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not self._emit(line, events):
                return
            start = newline + 1
            newline = data.find(b"\n", start)
        if start < len(data):
            self._partial += data[start:]
            # (a CR at the end may be the first half of the CR LF that ends the line)
            if len(self._partial) - self._partial.endswith(b"\r") > self.max_line:
                self._overflow(events)

    def _emit(self, line, events):
        if len(line) > self.max_line:
            self._overflow(events)
            return False
        events.append(line)
        return True

    def _overflow(self, events):
        self.overflowed = True
        self._partial.clear()
        events.append(OVERFLOW)

    # -- telnet ----------------------------------------------------------------

    def _feed_telnet(self, data, events):
        self._telnet = b""
        pos, end = 0, len(data)
        while pos < end and not self.overflowed:
            if self._in_subnegotiation:
                pos = self._skip_subnegotiation(data, pos, events)
                continue
            iac = data.find(_IAC_BYTE, pos)
            if iac < 0:
                self._add_text(data[pos:], events)
                return
            if iac > pos:
                self._add_text(data[pos:iac], events)
                if self.overflowed:
                    return
            if iac + 1 >= end:
                self._telnet = data[iac:]
                return
            command = data[iac + 1]
            if command in (DO, DONT, WILL, WONT):
                if iac + 2 >= end:
                    self._telnet = data[iac:]
                    return
                answer = answer_option(command, data[iac + 2])
                if answer is not None and answer not in self._refused:
                    events.append(answer)
                    if data[iac + 2] != TIMING_MARK:  # each Ctrl-C needs its own mark
                        self._refused = self._refused | {answer}
                pos = iac + 3
                continue
            pos = iac + 2
            self._telnet_command(command, events)

    def _telnet_command(self, command, events):
        if command == IAC:
            self._add_text(_IAC_BYTE, events)
        elif command in (IP, BRK):
            self._partial.clear()
            events.append(INTERRUPT)
        elif command == EL:
            self._partial.clear()
        elif command == EC:
            del self._partial[-1:]
        elif command == SB:
            self._in_subnegotiation = True
            self._skipped = 0
        # NOP, GA, AYT, AO, DM, EOR and anything unknown: nothing to do.

    def _skip_subnegotiation(self, data, pos, events):
        """Skip to just after IAC SE; count what is skipped against the line limit."""
        end = data.find(b"\xff\xf0", pos)
        if end < 0:
            # Keep a trailing IAC: it may be the first half of IAC SE.
            keep = 1 if data.endswith(_IAC_BYTE) else 0
            self._skipped += len(data) - pos - keep
            self._telnet = data[len(data) - keep:] if keep else b""
            if self._skipped > self.max_line:
                self._overflow(events)
            return len(data)
        self._in_subnegotiation = False
        self._skipped += end - pos  # however the bytes were split into reads
        if self._skipped > self.max_line:
            self._overflow(events)
            return len(data)
        return end + 2
