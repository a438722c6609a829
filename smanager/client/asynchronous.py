"""The asyncio client: the blocking Client's interface, awaited.

    async with AsyncClient("web1") as server:
        reply = await server.call("systemstatus uptime")
        async for chunk in server.stream("testsvc count 3"):
            ...

One request at a time per client: concurrent callers take turns, and a
request made while a stream is open but not being read stops that stream.
For many servers at once, use one AsyncClient each (see fleet.py).
"""

import asyncio
import contextlib
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

from ..auth.scram import ClientLogin
from ..config import DEFAULT_HOST, DEFAULT_PORT
from . import common
from .common import ClientError, CommandFailed, ConnectionLost, Reply, TimedOut


class AsyncClient(common.Endpoint):
    """A connection to one smanager server, for asyncio programs."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 timeout: float = common.DEFAULT_TIMEOUT, ssl: SSLContext | None = None,
                 user: str | None = None, password: str | None = None):
        super().__init__(host, port, timeout=timeout, ssl=ssl, user=user, password=password)
        self._reader = self._writer = None
        self._turn = asyncio.Lock()  # one request at a time on the connection
        self._holder = None  # the Exchange that has the turn

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self) -> "AsyncClient":
        await self.close()
        self.refresh()  # a new connection may be a new version of the server
        try:
            async with asyncio.timeout(self.timeout):
                if self.unix:
                    self._reader, self._writer = await asyncio.open_unix_connection(
                        self.host, limit=common.MAX_LINE)
                else:
                    self._reader, self._writer = await asyncio.open_connection(
                        self.host, self.port, limit=common.MAX_LINE, ssl=self.ssl)
        except TimeoutError:
            raise TimedOut(f"{self.where}: no connection within {self.timeout:g} s") from None
        except (OSError, UnicodeError) as exc:
            raise common.cannot_connect(self.where, exc) from None
        try:
            greeting = common.Greeting(self.where)
            try:
                while not greeting.add(await self._line(self.timeout)):
                    pass
            except (TimedOut, ConnectionLost) as exc:
                raise common.no_greeting(self, exc) from None
            self.banner_services = greeting.services
            self._writer.write(common.request_bytes("mode json"))
            common.check_mode_switch(await self._line(self.timeout), self.where)
            if self.user is not None:
                await self._log_in()
        except BaseException as exc:
            await self.close()
            if isinstance(exc, OSError) and not isinstance(exc, ClientError):
                raise common.lost(self.where, exc) from None
            raise
        return self

    async def _log_in(self):
        login = ClientLogin(self.user, self.password)
        self._writer.write(common.challenge_request(login))
        challenge = await self._line(self.timeout)
        self._writer.write(await asyncio.to_thread(  # PBKDF2: not on the event loop
            common.proof_request, challenge, login, self.where))
        common.check_login(await self._line(self.timeout), login, self.where)

    async def close(self) -> None:
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

    async def call(self, line: str, *, timeout: float | None = None,
                   on_chunk: Callable[[Any], None] | None = None,
                   on_text: Callable[[str], None] | None = None) -> Reply:
        """As Client.call.  A cancelled call stops the command and closes the connection."""
        chunks, texts = [], []
        exchange = Exchange(self, line, timeout)
        try:
            async for chunk in exchange:
                common.hand_on(chunk, exchange.chunk_text, (chunks, texts), on_chunk, on_text)
        finally:
            exchange.abandon()
        return common.finish(line, exchange.final, chunks, texts)

    async def run(self, *words: object, timeout: float | None = None) -> Any:
        """As Client.run: a command given as words; its value, or CommandFailed."""
        reply = await self.call(common.join(*words), timeout=timeout)
        if not reply.ok:
            raise CommandFailed(reply)
        return reply.chunks if reply.chunks else reply.value

    def stream(self, line: str, *, timeout: float | None = None) -> "Exchange":
        """As Client.stream: ``async for`` gets the chunks as they come, and
        CommandFailed if the stream ends in an error.  Leaving early stops the
        command: at once with ``await stream.aclose()``, else at the next
        request on this client, or when the stream is garbage-collected."""
        return Exchange(self, line, timeout, raise_error=True)

    async def interrupt(self) -> None:
        """Send Ctrl-C: the server stops the command this connection is running."""
        self._interrupt()

    def _interrupt(self):
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(common.INTERRUPT)

    async def _take_turn(self, exchange):
        """Wait until the request in progress is answered.  A stream nobody is
        reading (one left with ``break``) is stopped instead of waited for."""
        holder = self._holder
        if holder is not None and not holder.reading:
            holder.abandon()
        await self._turn.acquire()
        self._holder = exchange

    def _give_turn(self):
        self._holder = None
        self._turn.release()

    def _drop(self):
        """Stop the command in progress and close, at once (no awaiting)."""
        self._interrupt()
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()

    # -- the help index ------------------------------------------------------------

    async def services(self) -> list[str]:
        """As Client.services."""
        return (await self._terse(""))["SERVICES"]

    async def toplevel(self) -> list[str]:
        """As Client.toplevel."""
        return (await self._terse(""))["TOP"]

    async def builtins(self) -> list[str]:
        """As Client.builtins."""
        return (await self._terse(""))["COMMANDS"]

    async def commands(self, service: str) -> list[str]:
        """As Client.commands."""
        return (await self._terse(service))["COMMANDS"]

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
            raise ClientError(common.too_long(self.where)) from None
        if not raw.endswith(b"\n"):
            raise ConnectionLost(f"{self.where} closed the connection")
        return raw[:-1].decode("utf-8", "replace")


class Exchange:
    """One request and its reply, read message by message; an async iterator
    of the chunks.  It holds the client's turn from its first step to its
    final message; anything that cuts it short stops the command and drops
    the connection, whose state is then unknown."""

    def __init__(self, client, line, timeout, raise_error=False):
        self.data = common.request_bytes(line)  # a line no client sends fails here, at once
        self.client, self.line, self.raise_error = client, line, raise_error
        self.timeout = client.timeout if timeout is None else timeout
        self.reading = False  # inside __anext__: someone is waiting for the next message
        self.final = None
        self.chunk_text = None
        self._state = "new"  # -> "holding" (its turn, its line sent) -> "done"

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._state == "done":
            if self.final is None:
                raise common.stopped_by_later_request(self.line)
            raise StopAsyncIteration
        self.reading = True
        try:
            if self._state == "new":
                await self.client._take_turn(self)
                self._state = "holding"
                await self._send()
            message = await self._receive()
        except BaseException:
            self.abandon()
            raise
        finally:
            self.reading = False
        if "chunk" in message and "ok" not in message:
            self.chunk_text = common.text_in(message, "chunk")  # what telnet shows for it
            return message["chunk"]
        self.final = message
        self._finish()
        if self.raise_error and not message.get("ok"):
            raise CommandFailed(common.finish(self.line, message, []))
        raise StopAsyncIteration

    async def _send(self):
        client = self.client
        if client._writer is None or client._reader.at_eof():
            await client.connect()
        client._writer.write(self.data)  # buffered by asyncio: a broken pipe shows on reading

    async def _receive(self):
        try:
            return await self.client._message(self.timeout)
        except ClientError:
            raise
        except OSError as exc:
            raise common.lost(self.client.where, exc) from None

    def abandon(self):
        """Stop it where it is (nothing, if it is complete)."""
        if self._state == "holding":
            self.client._drop()
        self._finish()

    async def aclose(self):
        self.abandon()

    def _finish(self):
        if self._state == "holding":
            self.client._give_turn()
        self._state = "done"

    def __del__(self):
        # Left unfinished and forgotten: free the connection for others.
        with contextlib.suppress(Exception):  # the loop may be gone already
            self.abandon()
