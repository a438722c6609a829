"""Backpressure for one connection, both ways.

Reading stops for as long as any reason holds: too many lines waiting to run
("queue"), or replies the client is not reading ("output") — so a client
cannot make the server hold more than a bounded amount for it, in either
direction.  Writing, for a command that produces more (a stream), waits in
drain() until the client has caught up.

A Pipeline is a Flow (the one object per connection holds both): a Python
object costs some 2,000 instructions to make and free, where a connection's
whole life costs some 63,000, and every line looks at this state.
"""

import asyncio

_NONE = frozenset()  # not holding: shared, as most connections never hold


class Flow:
    """The backpressure state of one connection (see the module text)."""

    def __init__(self, transport):
        self.transport = transport
        self.write_paused = False
        self.final = False  # no more reading will ever be wanted: never resume
        self.stopped_for = _NONE  # why we are not reading now (a reason each)
        self._drain_waiter = None
        self.resumes = 0  # how often the client caught up: progress, for the send time-out

    def stop_reading(self, why):
        if not self.stopped_for:
            self.transport.pause_reading()
        self.stopped_for = self.stopped_for | {why}

    def start_reading(self, why):
        if why in self.stopped_for:
            self.stopped_for = self.stopped_for - {why}
            if not self.stopped_for and not self.final:
                self.transport.resume_reading()

    def stop_for_good(self):
        self.final = True
        self.transport.pause_reading()

    def pause_writing(self):
        self.write_paused = True
        self.stop_reading("output")

    @property
    def reading(self):
        """We are taking the client's bytes (it is not us holding its line up)."""
        return not self.stopped_for and not self.final

    def resume_writing(self):
        self.resumes += 1
        self.write_paused = False
        self.start_reading("output")
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self):
        """Wait until the client has read enough of what was written."""
        if self.write_paused and not self.transport.is_closing():
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def fail_drain(self):
        """The transport is gone: a drain() waiting for it fails."""
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))
