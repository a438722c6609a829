"""One client connection: the asyncio protocol around the pure core.

Bytes go through the LineFramer; lines go to the connection's Pipeline, which
runs them in order.  This module decides what the client's bytes *mean* for
the connection:

- Telnet answers are sent at once; Ctrl-C stops the running command.
- A first line that looks like HTTP closes the connection unanswered.
- The connection closes after the last line once the client has half-closed,
  after a reply that asks for it (quit, kill), after an oversized line, or when
  it was a one-shot request: a client whose first line has no newline and that
  then sends nothing for ``oneshot_delay`` seconds (``echo -n 'cmd' | nc host
  port`` with a netcat that never half-closes) has that text run as its only
  command, then the connection closes, so the netcat exits by itself.  A
  client that speaks telnet, or sends its first bytes a key at a time, is a
  person typing and never gets this treatment.
"""

import asyncio
import logging

from ..auth.peer import Peer
from ..wire import errors, framing, protocol
from . import limits, tls
from .pipeline import Phase, Pipeline

log = logging.getLogger("smanager.connection")
_OPEN, _CLOSED = Phase.OPEN, Phase.CLOSED  # looked up on every read
_HTTP_FIRST = protocol.HTTP_FIRST_BYTES


def _is_http(line):
    """A first line that opens an HTTP request: a browser or a health check."""
    return line[:1] in _HTTP_FIRST and protocol.looks_like_http(line)


class Connection(asyncio.BufferedProtocol):
    def __init__(self, server):
        self.server = server
        self.framer = framing.LineFramer(server.config.max_line)
        self._buffer = server.receive_buffer
        self._line_limits = server.line_limits  # [logged in or open, not yet logged in]
        self.transport = None
        self.peername = None  # as the socket has it: (host, port, ...), or a Unix path
        self.peer = None
        self.pipeline = None  # the connection's Pipeline, once it is open
        self.lines_seen = 0
        self.keystrokes = False  # the client sends a key at a time: never a one-shot
        self._oneshot_timer = None
        self.reads = 0  # how many times bytes arrived: the limits' sweep watches it
        self.watch = None  # the limits' sweep's notes on it, from its first look (limits.py)
        self.admitted = None  # the address the connection counts against, once admitted
        self.raw = None  # under TLS: the TCP transport, whose buffer the send time-out watches
        self.early = None  # under TLS: bytes decrypted before start_tls has returned

    @property
    def worker(self):
        return self.pipeline.worker

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport):
        self.peername = peername = transport.get_extra_info("peername")
        address = peername[0] if isinstance(peername, tuple) else "unix"
        self.transport = transport
        refusal = self.server.admission.admit(address)  # before any TLS work, which costs
        if refusal is not None:
            if self.server.tls_context is None:  # over TLS it could not be read: just close
                transport.write(protocol.render_error(refusal))
            transport.close()
            return
        self.admitted = address  # (TCP keepalive it has from the listener: server.py)
        if self.server.tls_context is not None and address != "unix":
            transport.pause_reading()  # nothing is read as a line before the handshake
            self.server.handshake(self, transport)
        else:
            self.begin(transport)

    def begin(self, transport, raw=None):
        """The connection is open (a TLS one, after its handshake; ``raw`` is then
        the TCP transport under it): greet the client."""
        if self.admitted is None:
            return  # lost in the moment between its handshake and now
        manager = self.server.manager
        self.transport, self.raw = transport, raw
        peername = self.peername  # (a TLS transport forgets it once lost)
        # The Peer formats an IP socket's peername when asked (see Peer.address);
        # a Unix socket's client is rarely bound to a path.
        self.peer = Peer(peername if type(peername) is tuple else str(peername or "unix"),
                         self.admitted, tls.peer_user(transport) if raw is not None else None)
        self.pipeline = Pipeline(manager, self.peer, transport, self.server.audit,
                                 self.server.spare, raw is not None)
        self.server.connections.add(self)
        transport.write(manager.access.greet(self.peer, manager.catalog))
        if self.peer.on_probation:  # its login time-out runs from now, not the sweep's first look
            self.watch = limits.Watch(self.server.loop.time())
        if self.server.shutting_down:
            self.begin_shutdown()
        if self.early:  # under TLS: read with the handshake's last bytes; read them now
            early, self.early = self.early, None
            for start in range(0, len(early), len(self._buffer)):
                chunk = early[start:start + len(self._buffer)]
                self._buffer[:len(chunk)] = chunk
                self.buffer_updated(len(chunk))

    def get_buffer(self, sizehint):
        # The transport reads into the server's one receive buffer instead of
        # allocating a fresh 256 KiB bytes object per read; it is free again as
        # soon as buffer_updated() returns, which copies out what it needs.
        return self._buffer

    def buffer_updated(self, nbytes):
        pipeline = self.pipeline
        if pipeline is None:
            # asyncio hands on lines that came with the handshake's last bytes
            # before start_tls returns; keep them for begin(), one loop turn away.
            # A connection refused at the door reads nothing.
            if self.admitted is not None:
                self.early = (self.early or b"") + self._buffer[:nbytes]
            return
        self.reads += 1
        if pipeline.phase is not _OPEN:
            return
        data = self._buffer[:nbytes].tobytes()  # a copy: the buffer is every connection's
        framer, probation, seen = self.framer, self.peer.on_probation, self.lines_seen
        # Read per read, as a login or a change in the users file moves it.
        framer.max_line = self._line_limits[1 if probation else 0]  # (int: faster)
        events = framer.feed(data)
        if framer.only_lines and events and not probation \
                and (seen or not _is_http(events[0])):
            # Lines (not an HTTP request), from a client that may send any
            # number: nothing to check one by one, so the pipeline takes them
            # together; the first of them as a one-liner's would be.
            if self._oneshot_timer is not None:
                self._cancel_oneshot()  # the first line came whole after all
            self.lines_seen = seen + len(events)
            pipeline.take(events, not seen)
            return
        pipeline.hold()  # the replies ready by the end of this read: one write
        try:
            self._take(events)
            if self.lines_seen == 0 and framer.has_partial and pipeline.accepting:
                self._maybe_oneshot(data)
            pipeline.advance()
        finally:
            pipeline.flush()

    def eof_received(self):
        pipeline = self.pipeline
        if pipeline is None:
            return False  # refused at the door
        if self._oneshot_timer is not None:
            self._cancel_oneshot()
        if self.framer.has_partial and pipeline.phase is _OPEN:
            pipeline.hold()  # its reply goes out with any before the close
            try:
                self._take(self.framer.eof())  # a last line without its newline
                pipeline.finish()
            finally:
                pipeline.flush()
        else:
            pipeline.finish()
        # Keep our side open until the replies are written (TLS cannot: asyncio
        # closes a TLS connection at the client's EOF, and warns if asked not
        # to); once closed, saying so spares asyncio a search for its reader.
        return self.raw is None and pipeline.phase is not _CLOSED

    def release(self):
        """Count the connection out of the caps, once.  asyncio calls no
        connection_lost for a TLS handshake that times out, is reset or is
        cancelled (only for some that fail), so the handshake calls this too."""
        if self.admitted is not None:
            self.server.admission.release(self.admitted)
            self.admitted = None

    def connection_lost(self, exc):
        self.release()
        if self.pipeline is None:
            return  # refused at the door, or lost before its TLS handshake ended
        self.server.forget(self)
        if self._oneshot_timer is not None:
            self._cancel_oneshot()
        self.pipeline.lost()
        if self.peer.sessions:
            self.server.track(self.server.manager.client_left(self.peer))

    def pause_writing(self):
        if self.pipeline is not None:  # not while refusing or shaking hands
            self.pipeline.pause_writing()

    def resume_writing(self):
        if self.pipeline is not None:
            self.pipeline.resume_writing()

    # -- what the client's bytes mean ------------------------------------------------

    def _take(self, events):
        """What the framer found, in order: lines, and everything else."""
        for event in events:
            if type(event) is bytes:
                self._line(event)
            else:
                self._handle(event)

    def _handle(self, event):
        """What the framer found besides a line."""
        if event is framing.INTERRUPT:
            self.pipeline.advance()  # lines before the Ctrl-C run, as if read on their own
            self.pipeline.interrupt(errors.INTERRUPTED)
        elif event is framing.OVERFLOW:
            self.server.oversized_lines.warn(
                f"{self.peer.address} sent more than {self.framer.max_line} bytes")
            self.pipeline.stop_with(errors.line_too_long(self.framer.max_line))
        elif type(event) is framing.TelnetAnswer:
            self.pipeline.advance()  # after the replies to the lines before it
            self.pipeline.send(event)

    def _line(self, raw):
        pipeline = self.pipeline
        if pipeline.phase is not _OPEN:
            return
        if self.lines_seen == 0 and _is_http(raw):
            log.warning("%s sent an HTTP request; closed unanswered", self.peer.address)
            pipeline.close()
            return
        self.lines_seen += 1
        if self._oneshot_timer is not None:
            self._cancel_oneshot()
        if self.peer.on_probation and self.lines_seen > self.server.config.login_max_commands:
            pipeline.stop_with("too many commands before logging in "
                               f"(limit {self.server.config.login_max_commands})")
            return
        pipeline.add(raw)

    def _maybe_oneshot(self, data):
        """(Re)start the one-shot timer, unless this client is a person typing:
        one that speaks telnet, or whose first bytes came a key at a time (a
        character-mode telnet) would otherwise be cut off after one key."""
        if self.framer.telnet_seen or len(data) == 1:
            self.keystrokes = True
        if self.keystrokes:
            return
        self._cancel_oneshot()
        delay = self.server.config.oneshot_delay
        self._oneshot_timer = asyncio.get_running_loop().call_later(delay, self._oneshot)

    def _cancel_oneshot(self):
        if self._oneshot_timer is not None:
            self._oneshot_timer.cancel()
            self._oneshot_timer = None

    def _oneshot(self):
        self._oneshot_timer = None
        if self.lines_seen == 0 and self.pipeline.accepting:
            self._line(self.framer.take_partial())
            self.pipeline.finish()

    # -- shutdown ----------------------------------------------------------------

    def begin_shutdown(self):
        """Run nothing new; close now if idle, else once the current command ends
        (a stream ends at once: it has no reply to finish)."""
        self._cancel_oneshot()
        if self.pipeline.streaming:
            self.pipeline.interrupt(errors.SHUTTING_DOWN)
        self.pipeline.shut()

    def refuse(self, message, reachable=True):
        """A limit was broken: say so if the client can still hear it, and close."""
        self._cancel_oneshot()
        if not reachable:
            self.transport.abort()
        elif self.pipeline.busy:
            self.pipeline.interrupt(message)  # the command's reply is this error
        else:
            self.pipeline.send(self.pipeline.format.error(message))
        self.pipeline.shut()

    def cancel_for_shutdown(self):
        self.pipeline.interrupt(errors.SHUTTING_DOWN)
