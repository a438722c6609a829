"""The asyncio client: the blocking Client's interface, awaited.

    async with AsyncClient("web1") as server:
        reply = await server.call("systemstatus uptime")
        async for chunk in server.stream("testsvc count 3"):
            ...

One request at a time per client (a lock keeps concurrent callers in turn);
for many servers at once, use one AsyncClient each (see fleet.py).
"""

import asyncio

from ..config import DEFAULT_HOST, DEFAULT_PORT
from . import common
from .blocking import DEFAULT_TIMEOUT
from .common import CannotConnect, ClientError, CommandFailed, ConnectionLost, TimedOut


class AsyncClient:
    def __init__(self, host=DEFAULT_HOST, port=DEFAULT_PORT, *, timeout=DEFAULT_TIMEOUT):
        self.host, self.port, self.timeout = host, port, timeout
        self.where = common.format_address(host, port)
        self.banner_services = []
        self._reader = self._writer = None
        self._turn = asyncio.Lock()
        self._index = {}

    @property
    def connected(self):
        return self._writer is not None

    async def connect(self):
        await self.close()
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=common.MAX_LINE)
        except TimeoutError:
            raise TimedOut(f"{self.where}: no connection within {self.timeout:g} s") from None
        except OSError as exc:
            raise CannotConnect(f"cannot connect to {self.where}: {common.describe_os_error(exc)}") from None
        try:
            greeting = common.Greeting(self.where)
            while not greeting.add(await self._line(self.timeout)):
                pass
            self.banner_services = greeting.services
            self._writer.write(common.request_bytes("mode json"))
            common.check_mode_switch(await self._line(self.timeout), self.where)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self):
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc_info):
        await self.close()

    async def call(self, line, *, timeout=None, on_chunk=None):
        """As Client.call.  A cancelled call closes the connection."""
        chunks, finals = [], []
        async for chunk in self._exchange(line, timeout, finals):
            (on_chunk or chunks.append)(chunk)
        return common.finish(line, finals[0], chunks)

    async def run(self, *words, timeout=None):
        reply = await self.call(common.join(*words), timeout=timeout)
        if not reply.ok:
            raise CommandFailed(reply)
        return reply.chunks if reply.chunks else reply.value

    async def stream(self, line, *, timeout=None):
        """As Client.stream: chunks as they come; CommandFailed if it ends in an error."""
        finals = []
        async for chunk in self._exchange(line, timeout, finals):
            yield chunk
        reply = common.finish(line, finals[0], [])
        if not reply.ok:
            raise CommandFailed(reply)

    async def interrupt(self):
        """Send Ctrl-C: the server stops the command this connection is running."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(common.INTERRUPT)

    async def _exchange(self, line, timeout, finals):
        """Send a line, yield its chunks, append its final message to ``finals``.
        Cut short, it closes the connection: its state is unknown."""
        data = common.request_bytes(line)
        timeout = self.timeout if timeout is None else timeout
        async with self._turn:
            if self._writer is None or self._reader.at_eof():
                await self.connect()
            finished = False
            try:
                self._writer.write(data)
                while "ok" not in (message := await self._message(timeout)):
                    yield message["chunk"]
                finals.append(message)
                finished = True
            except ClientError:
                raise
            except OSError as exc:
                raise ConnectionLost(f"{self.where}: {common.describe_os_error(exc)}") from None
            finally:
                if not finished:  # timed out, cancelled, or the caller left a stream
                    await self.interrupt()  # stop the command nobody waits for
                    await self.close()

    # -- the help index ------------------------------------------------------------

    async def services(self):
        return (await self._terse(""))["SERVICES"]

    async def toplevel(self):
        return (await self._terse(""))["TOP"]

    async def builtins(self):
        return (await self._terse(""))["COMMANDS"]

    async def commands(self, service):
        return (await self._terse(service))["COMMANDS"]

    def refresh(self):
        self._index.clear()

    async def _terse(self, topic):
        if topic not in self._index:
            reply = await self.call(f"help -s {topic}".strip())
            if not reply.ok:
                raise CommandFailed(reply)
            self._index[topic] = common.terse_fields(reply.text)
        return self._index[topic]

    # -- reading -------------------------------------------------------------------

    async def _message(self, timeout):
        return common.decode(await self._line(timeout), self.where)

    async def _line(self, timeout):
        try:
            async with asyncio.timeout(timeout):
                raw = await self._reader.readline()
        except TimeoutError:
            raise TimedOut(f"{self.where}: no reply within {timeout:g} s") from None
        except ValueError:  # the stream's limit
            raise ClientError(f"{self.where} sent a line longer than {common.MAX_LINE} bytes") \
                from None
        if not raw.endswith(b"\n"):
            raise ConnectionLost(f"{self.where} closed the connection")
        return raw[:-1].decode("utf-8", "replace")
