"""One client connection: the asyncio adapter around the pure core.

Bytes go through the LineFramer; complete lines wait in a queue; one worker
task per connection runs them in order, so pipelined requests are answered in
order.  The connection closes after the last queued line once the client has
half-closed, after a reply that asks for it (quit, kill), after an oversized
line, or when it was a one-shot request:

A client whose first line has no newline and that then sends nothing for
``oneshot_delay`` seconds (``echo -n 'cmd' | nc host port`` with a netcat that
never half-closes) has that text run as its only command; then the connection
closes, so the netcat exits by itself.
"""

import asyncio
import collections
import logging

from . import errors, framing, protocol
from .manager import Peer

log = logging.getLogger("smanager.connection")
QUEUE_HIGH, QUEUE_LOW = 256, 64  # lines waiting before we stop reading, and resume


def format_address(address):
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address or "unknown")


class Connection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.manager = server.manager
        self.framer = framing.LineFramer(server.config.max_line)
        self.queue = collections.deque()
        self.worker = None
        self.transport = None
        self.peer = None
        self.lines_seen = 0
        self.finish_then_close = False  # no more input will come: close when the queue is done
        self.closing = False  # run nothing more
        self._cancel_reason = None  # the error to reply when the running command is cancelled
        self._running = False
        self._oneshot_timer = None
        self._write_paused = False
        self._drain_waiter = None

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.peer = Peer(format_address(transport.get_extra_info("peername")))
        self.server.connections.add(self)
        log.debug("%s connected", self.peer.address)
        transport.write(self.manager.catalog.banner)
        if self.server.shutting_down:
            self.begin_shutdown()

    def data_received(self, data):
        if self.closing:
            return
        for event in self.framer.feed(data):
            self._handle(event)
        if self.lines_seen == 0 and self.framer.partial and not self.closing:
            self._arm_oneshot()
        self._wake_worker()

    def eof_received(self):
        self._cancel_oneshot()
        if not self.closing:
            for event in self.framer.eof():
                self._handle(event)
        self.finish_then_close = True
        self._wake_worker()
        return True  # keep our side open until the replies are written

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        self._cancel_oneshot()
        self.closing = True
        if self.worker is not None:
            self.worker.cancel()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))
        if self.peer.sessions:
            self.server.track(self.manager.client_left(self.peer))
        log.debug("%s disconnected", self.peer.address)

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- events from the framer --------------------------------------------------

    def _handle(self, event):
        if type(event) is bytes:
            self._line(event)
        elif event is framing.INTERRUPT:
            self.queue.clear()
            if self._running:
                self._cancel_running(errors.INTERRUPTED)
        elif event is framing.OVERFLOW:
            self.queue.append(framing.OVERFLOW)
            self.closing = True
            self.transport.pause_reading()
        else:  # a telnet answer
            self.transport.write(event)

    def _line(self, raw):
        if self.closing:
            return
        if self.lines_seen == 0 and protocol.looks_like_http(raw):
            log.warning("%s sent an HTTP request; closed unanswered", self.peer.address)
            self.closing = True
            self.queue.clear()
            self.transport.close()
            return
        self.lines_seen += 1
        self._cancel_oneshot()
        self.queue.append(raw)
        if len(self.queue) == QUEUE_HIGH:
            self.transport.pause_reading()

    def _arm_oneshot(self):
        self._cancel_oneshot()
        delay = self.server.config.oneshot_delay
        self._oneshot_timer = asyncio.get_running_loop().call_later(delay, self._oneshot)

    def _cancel_oneshot(self):
        if self._oneshot_timer is not None:
            self._oneshot_timer.cancel()
            self._oneshot_timer = None

    def _oneshot(self):
        self._oneshot_timer = None
        if self.lines_seen == 0 and not self.closing:
            self._line(self.framer.take_partial())
            self.finish_then_close = True
            self.transport.pause_reading()
            self._wake_worker()

    # -- running lines -----------------------------------------------------------

    def _wake_worker(self):
        if self.worker is None and (self.queue or self.finish_then_close) \
                and not self.transport.is_closing():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self):
        try:
            while self.queue and not self.transport.is_closing():
                item = self.queue.popleft()
                if len(self.queue) == QUEUE_LOW:
                    self.transport.resume_reading()
                if item is framing.OVERFLOW:
                    self._write(protocol.render_error(errors.line_too_long(self.framer.max_line)))
                    break
                await self._run_line(item)
            if self.closing or self.finish_then_close:
                self.transport.close()
        except (asyncio.CancelledError, ConnectionError):
            pass  # the client has gone
        finally:
            self.worker = None

    async def _run_line(self, raw):
        try:
            request = protocol.parse_line(raw)
        except protocol.ParseError as exc:
            self._write(protocol.render_error(str(exc)))
            return
        if request is None:
            return
        self._running = True
        try:
            reply = await self.manager.execute(request, self.peer)
            if reply.stream is not None:
                await self._send_stream(reply.stream)
            else:
                self._write(protocol.render_reply(reply))
            if reply.close:
                self.closing = True
                self.queue.clear()
        except asyncio.CancelledError:
            if self._cancel_reason is None:
                raise
            asyncio.current_task().uncancel()
            self._write(protocol.render_error(self._cancel_reason))
            self._cancel_reason = None
        finally:
            self._running = False
        await self._drain()

    async def _send_stream(self, stream):
        try:
            async for text in stream:
                self._write(protocol.render_body(text))
                await self._drain()
        finally:
            await stream.aclose()
        self._write(protocol.render_end(stream.error))

    def _cancel_running(self, reason):
        self._cancel_reason = reason
        self.worker.cancel()

    # -- output and shutdown -----------------------------------------------------

    def _write(self, data):
        if not self.transport.is_closing():
            self.transport.write(data)

    async def _drain(self):
        if self._write_paused and not self.transport.is_closing():
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def begin_shutdown(self):
        """Run nothing new; close now if idle, else once the current command ends."""
        self.closing = True
        self.queue.clear()
        self._cancel_oneshot()
        if self.worker is None:
            self.transport.close()
        else:
            self.transport.pause_reading()

    def cancel_for_shutdown(self):
        if self.worker is not None and self._running:
            self._cancel_running(errors.SHUTTING_DOWN)

