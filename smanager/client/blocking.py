"""The blocking client: one connection, one request at a time.

    with Client("web1", 10000) as server:
        print(server.call("systemstatus uptime").text)
        if "scrapman" in server.services():
            print(server.run("scrapman", "get_heartbeat"))

It connects on first use and again after the connection was lost or closed (a
server restart, a time-out), so one Client can live as long as a shell.
"""

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..auth.scram import ClientLogin
from ..config import DEFAULT_HOST, DEFAULT_PORT
from . import common
from .common import ClientError, CommandFailed, ConnectionLost, Reply, TimedOut

DRAIN_TIMEOUT = 5.0  # after Ctrl-C, seconds to wait for the end of the reply


class Client(common.Endpoint):
    """A connection to one smanager server.  Subclass it to give a
    deployment's commands names of their own (see the README)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 timeout: float = common.DEFAULT_TIMEOUT, ssl: ssl.SSLContext | None = None,
                 user: str | None = None, password: str | None = None):
        super().__init__(host, port, timeout=timeout, ssl=ssl, user=user, password=password)
        self._sock = None
        self._buffer = bytearray()
        self._open = None  # the exchange of the latest request, maybe unfinished
        self._chunk_text = None  # what telnet shows for the latest chunk

    # -- connection ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> "Client":
        """Connect and read the greeting (done for you by the first request)."""
        self.close()
        self.refresh()  # a new connection may be a new version of the server
        try:
            self._sock = self._unix_socket() if self.unix else \
                socket.create_connection((self.host, self.port), self.timeout)
            if self.ssl is not None:
                self._sock = self.ssl.wrap_socket(self._sock, server_hostname=self.host)
        except TimeoutError:
            raise TimedOut(f"{self.where}: no connection within {self.timeout:g} s") from None
        except (OSError, UnicodeError) as exc:
            raise common.cannot_connect(self.where, exc) from None
        try:
            greeting = common.Greeting(self.where)
            try:
                while not greeting.add(self._line(self.timeout)):
                    pass
            except (TimedOut, ConnectionLost) as exc:
                raise common.no_greeting(self, exc) from None
            self.banner_services = greeting.services
            self._sock.sendall(common.request_bytes("mode json"))
            common.check_mode_switch(self._line(self.timeout), self.where)
            if self.user is not None:
                login = ClientLogin(self.user, self.password)
                self._sock.sendall(common.challenge_request(login))
                self._sock.sendall(common.proof_request(self._line(self.timeout), login,
                                                        self.where))
                common.check_login(self._line(self.timeout), login, self.where)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError) and not isinstance(exc, ClientError):
                raise common.lost(self.where, exc) from None
            raise
        return self

    def _unix_socket(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            sock.close()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc_info):
        self.close()

    # -- requests ------------------------------------------------------------------

    def call(self, line: str, *, timeout: float | None = None,
             on_chunk: Callable[[Any], None] | None = None,
             on_text: Callable[[str], None] | None = None) -> Reply:
        """Send one line, wait for its whole reply.  A stream's chunks go to
        ``on_chunk`` (their values) and ``on_text`` (what telnet would show) as
        they come if either is given, else into ``reply.chunks`` and ``reply.texts``.

        An error reply is a Reply with ``ok`` false; the exceptions are for
        not getting a reply at all (CannotConnect, TimedOut, ConnectionLost).
        Ctrl-C (KeyboardInterrupt) stops the command on the server too.
        """
        chunks, texts = [], []
        exchange = self._start(line, timeout)
        try:
            while True:
                try:
                    chunk = next(exchange)
                except StopIteration as done:
                    return common.finish(line, done.value, chunks, texts)
                common.hand_on(chunk, self._chunk_text, (chunks, texts), on_chunk, on_text)
        finally:
            exchange.close()

    def run(self, *words: object, timeout: float | None = None) -> Any:
        """Run a command given as words (quoted for you); its value, or CommandFailed."""
        reply = self.call(common.join(*words), timeout=timeout)
        if not reply.ok:
            raise CommandFailed(reply)
        return reply.chunks if reply.chunks else reply.value

    def stream(self, line: str, *, timeout: float | None = None) -> Iterator[Any]:
        """A command's chunks, as they come.  Leaving the loop early, or making
        another request before the end, stops the command; a stream that ends
        with an error raises CommandFailed."""
        message = yield from self._start(line, timeout)
        if message is None:
            raise common.stopped_by_later_request(line)
        reply = common.finish(line, message, [])
        if not reply.ok:
            raise CommandFailed(reply)

    def _start(self, line, timeout):
        """The exchange for a new request; one still open (a stream left
        unfinished) is stopped first, so the replies cannot mix."""
        data = common.request_bytes(line)  # a line no client sends fails here, at once
        if self._open is not None:
            self._open.close()
        self._open = self._exchange(data, self.timeout if timeout is None else timeout)
        return self._open

    def _exchange(self, data, timeout):
        """Send a request, yield its chunks, return its final message.  Whatever
        cuts it short (Ctrl-C, the caller leaving) stops the command too."""
        self._ensure_connected()
        sock, finished = self._sock, False
        try:
            sock.sendall(data)
            while "ok" not in (message := self._message(timeout)):
                self._chunk_text = common.text_in(message, "chunk")
                yield message["chunk"]
            finished = True
            return message
        except (ClientError, OSError) as exc:
            if isinstance(exc, TimedOut):  # stop the command we no longer wait for
                with contextlib.suppress(OSError):
                    self.interrupt()
            self.close()
            if isinstance(exc, ClientError):
                raise
            raise common.lost(self.where, exc) from None
        finally:
            if not finished:
                self._abandon(sock)

    def interrupt(self) -> None:
        """Send Ctrl-C: the server stops the command this connection is running."""
        if self._sock is not None:
            self._sock.sendall(common.INTERRUPT)

    # -- the help index ------------------------------------------------------------

    def services(self) -> list[str]:
        """The services the server runs (from ``help -s``, cached)."""
        return self._terse("")["SERVICES"]

    def toplevel(self) -> list[str]:
        """The toplevel commands it offers."""
        return self._terse("")["TOP"]

    def builtins(self) -> list[str]:
        """Its listed built-in commands."""
        return self._terse("")["COMMANDS"]

    def commands(self, service: str) -> list[str]:
        """A service's commands (from ``help -s SERVICE``); CommandFailed if unknown."""
        return self._terse(service)["COMMANDS"]

    def _terse(self, topic):
        if topic not in self._index:
            reply = self.call(f"help -s {topic}".strip())
            if not reply.ok:
                raise CommandFailed(reply)
            self._index[topic] = common.terse_fields(reply.text)
        return self._index[topic]

    # -- reading -------------------------------------------------------------------

    def _ensure_connected(self):
        if self._sock is None or self._stale():
            self.connect()

    def _stale(self):
        """The server closed this idle connection (it restarted, say): an idle
        client is owed nothing, so anything readable means the end."""
        try:
            poller = select.poll()  # not select(): it fails for descriptors over 1023
            poller.register(self._sock, select.POLLIN)
            if not poller.poll(0):
                return bool(self._buffer)
            if self.ssl is None:
                return True
            # TLS sends records that are not data (TLS 1.3 session tickets): only
            # reading tells whether the server has closed.
            self._sock.setblocking(False)
            try:
                self._sock.recv(1)  # the end, or bytes nobody asked for: stale either way
                return True
            except (ssl.SSLWantReadError, BlockingIOError):
                return bool(self._buffer)
            finally:
                self._sock.settimeout(self.timeout)
        except (OSError, ValueError):
            return True

    def _abandon(self, sock):
        """After Ctrl-C: stop the command, read to the end of its reply, so the
        connection is ready for the next request; if that fails, drop it."""
        if self._sock is not sock:  # already dropped, or replaced by a new connection
            return
        try:
            self.interrupt()
            while "ok" not in self._message(DRAIN_TIMEOUT):
                pass
        except BaseException:  # noqa: BLE001 - a second Ctrl-C, a time-out: start afresh
            self.close()

    def _message(self, timeout):
        return common.decode(self._line(timeout), self.where)

    def _line(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > common.MAX_LINE:
                raise ClientError(common.too_long(self.where))
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimedOut(f"{self.where}: no reply within {timeout:g} s")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise ConnectionLost(f"{self.where} closed the connection")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        return line.decode("utf-8", "replace")
