"""The server: listening, connections, signals, and shutdown in ordered phases.

start:    bind (so a busy port fails before any service starts), start the
          services, then accept connections and log the address.
shutdown: stop accepting; let each connection finish the command it is running
          (bounded by shutdown_timeout, then cancelled with an error reply);
          stop the services in reverse order; close every connection.
"""

import asyncio
import logging
import signal
import ssl
from pathlib import Path

from ..auth.access import Access
from ..auth.audit import Audit
from ..config import ConfigError
from ..core.manager import Manager
from ..wire.address import format_address
from . import limits, tls, unix_socket
from .connection import Connection

log = logging.getLogger("smanager.server")
RECEIVE_BUFFER = 65536  # bytes read from a client at a time
CLOSE_BACKSTOP = 3600.0  # seconds
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS client has to finish its handshake


class Server:
    def __init__(self, config, manager=None):
        self.config = config
        self.admission = limits.Admission(config.max_connections,
                                          config.max_connections_per_address)
        self.audit = None  # opened by start()
        self.tls_context = None  # set by start() when the TCP listener speaks TLS
        self._handshakes = set()  # TLS handshakes under way
        self.refused_handshakes = limits.Throttled("refused %d TLS handshake(s); the latest: %s")
        self.oversized_lines = limits.Throttled(
            "closed %d connection(s) for a line too long; the latest: %s")
        self.manager = manager or Manager(
            config.service_dirs, command_timeout=config.command_timeout,
            hook_timeout=config.shutdown_timeout, options=config.service,
            config_file=config.config_file or None,
            access=_access(config), backoff_max=config.login_backoff_max)
        self.manager.server_facts = self.facts  # what `status` adds about the server
        self.connections = set()
        self.shutting_down = False
        self._listeners = []
        self._sweeper = None
        self._tasks = set()
        self._all_closed = None  # set when the last connection is gone, during shutdown
        self.receive_buffer = memoryview(bytearray(RECEIVE_BUFFER))  # see Connection.get_buffer

    @property
    def address(self):
        """(host, port) actually listened on; the port is real even if 0 was asked."""
        return self._listeners[0].sockets[0].getsockname()[:2]

    def facts(self):
        """Where it listens and how many are connected, for ``status``."""
        config, listening = self.config, []
        if config.tcp and self._listeners:
            listening.append(f"{format_address(*self.address)} ({_speaks(config)})")
        if config.unix_socket:
            listening.append(f"{config.unix_socket} (Unix socket)")
        return {"listening": listening, "connections": len(self.connections),
                "max_connections": config.max_connections}

    def forget(self, connection):
        self.connections.discard(connection)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    def track(self, coroutine):
        """Run a coroutine the shutdown must wait for (client_disconnected hooks)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self):
        """Listen, start the services, accept.  ConfigError for an address it
        must not listen on; OSError when it cannot."""
        config = self.config
        if not config.tcp and not config.unix_socket:
            raise ConfigError("nothing to listen on: --no-tcp needs --unix-socket PATH")
        for directory in map(Path, config.services):
            if not directory.is_dir():
                raise ConfigError(f"--services {directory}: " + (
                    "a file, not a directory of services" if directory.exists()
                    else "no such directory"))
        if config.tls_key and not config.tls_cert:
            raise ConfigError("--tls-key needs --tls-cert (the certificate)")
        if config.tls_cert and not config.tls_key:
            raise ConfigError("--tls-cert needs --tls-key (its private key)")
        if config.tls_client_ca and not config.tls_cert:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS "
                              "is TLS first")
        access = self.manager.access  # with a users file, closed: it names users (users.py)
        # Authenticated: users must log in, or only holders of a client certificate connect.
        authenticated = access.closed or bool(config.tls_client_ca)
        if config.tcp and limits.exposed(config.host) and not (config.insecure or authenticated):
            raise ConfigError(
                f"refusing to listen on {config.host or 'every address'}: anyone who can "
                "reach it could run every command, kill included. Listen on 127.0.0.1 or a "
                "Unix socket (--unix-socket), add users (smanager users add NAME, then "
                "--users-file FILE), require client certificates (--tls-cert, --tls-key, "
                "--tls-client-ca), or pass --insecure if only trusted hosts can reach this "
                "network")
        loop = asyncio.get_running_loop()
        self.tls_context = _tls_context(config)
        try:
            if config.tcp:
                # Plain TCP, even for TLS: a connection is counted against the
                # limits when accepted, and only then does its handshake begin.
                self._listeners.append(await loop.create_server(
                    lambda: Connection(self), config.host, config.port,
                    reuse_address=True, backlog=config.backlog, start_serving=False))
            if config.unix_socket:
                self._listeners.append(await unix_socket.listen(
                    lambda: Connection(self), config.unix_socket,
                    int(config.unix_socket_mode, 8), config.backlog))
            if config.audit_log:
                self.audit = _open_audit(config, lambda: self.manager.catalog)
            await self.manager.start()
        except BaseException:
            self._close_listeners()
            self._close_audit()
            raise
        for listener in self._listeners:
            await listener.start_serving()
        self._sweeper = loop.create_task(limits.sweep(self, config))
        if config.tcp:
            log.info("listening on %s (%s)", format_address(*self.address), _speaks(config))
        if config.unix_socket:
            log.info("listening on Unix socket %s", config.unix_socket)

    def handshake(self, connection, transport):
        """Begin a TLS handshake for an admitted connection."""
        task = asyncio.get_running_loop().create_task(self._handshake(connection, transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, connection, transport):
        try:
            secure = await asyncio.get_running_loop().start_tls(
                transport, connection, self.tls_context, server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                # asyncio's is a deadline on the whole close, reply included: it
                # would cut off a big reply read steadily.  The sweep ends closes
                # that make no progress (limits.py); this is only a backstop.
                ssl_shutdown_timeout=CLOSE_BACKSTOP)
        except BaseException as exc:  # start_tls has closed the transport
            connection.release()  # asyncio may call no connection_lost for it
            if not isinstance(exc, (OSError, TimeoutError)):
                raise  # cancelled by shutdown, or a bug for the log
            peername = transport.get_extra_info("peername")
            where = format_address(*peername[:2]) if isinstance(peername, tuple) else "?"
            self.refused_handshakes.warn(f"{where}: {_why_refused(exc)}")
            return
        # From a plain callback: begin() may answer lines that came with the
        # handshake, and a command's task cannot start eagerly inside this task.
        asyncio.get_running_loop().call_soon(connection.begin, secure, transport)

    def _close_audit(self):
        if self.audit is not None:
            self.audit.close()

    def _close_listeners(self):
        for listener in self._listeners:
            listener.close()
            unix_socket.remove(listener)

    async def serve_until_shutdown(self):
        await self.manager.shutdown_requested.wait()
        await self.shutdown()

    async def shutdown(self):
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down")
        self._close_listeners()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._handshakes):
            task.cancel()
        for connection in list(self.connections):
            connection.begin_shutdown()
        await self._wait_for_commands(self.config.shutdown_timeout)
        await self.manager.stop()
        await self._close_connections(self.config.shutdown_timeout)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.config.shutdown_timeout)
        self.manager.executor.shutdown(wait=False, cancel_futures=True)
        self._close_audit()
        log.info("stopped")

    async def _close_connections(self, timeout):
        """Close every connection; abort those whose client will not read the rest."""
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            connection.pipeline.close()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                log.warning("%d client(s) not reading; dropping them", len(self.connections))
                for connection in list(self.connections):
                    connection.transport.abort()

    async def _wait_for_commands(self, timeout):
        workers = [c.worker for c in self.connections if c.pipeline.busy and c.worker is not None]
        if not workers:
            return
        _, late = await asyncio.wait(workers, timeout=timeout)
        if late:
            log.warning("%d command(s) still running after %g s; cancelling them",
                        len(late), timeout)
            for connection in list(self.connections):
                connection.cancel_for_shutdown()
            await asyncio.wait(late, timeout=1.0)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc_info):
        await self.shutdown()


def _speaks(config):
    """What the TCP listener speaks, for the line that says where it listens."""
    if not config.tls_cert:
        return "plain TCP"
    return "TLS, client certificates required" if config.tls_client_ca else "TLS"


def _why_refused(exc):
    """A failed TLS handshake, as OpenSSL or the clock saw it."""
    if isinstance(exc, TimeoutError):
        return f"no handshake within {HANDSHAKE_TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate refused: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).replace("_", " ").lower()
    if isinstance(exc, ConnectionError):
        return "the client went away"
    return exc.strerror or str(exc)


def _tls_context(config):
    if not config.tls_cert:
        return None
    try:
        return tls.server_context(config.tls_cert, config.tls_key, config.tls_client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS certificate or key: {exc}") from None


def _access(config):
    try:
        return Access(config.users_file, config.unauthenticated)
    except ValueError as exc:
        raise ConfigError(f"cannot use users file {config.users_file}: {exc}") from None


def _open_audit(config, catalog_of):
    try:
        return Audit(config.audit_log, config.audit_log_max_bytes, config.audit_log_backups,
                     catalog_of)
    except OSError as exc:
        raise ConfigError(f"cannot open audit log {config.audit_log}: "
                          f"{exc.strerror or exc}") from None


async def serve(config):
    """Run until ``kill``, SIGTERM or SIGINT; SIGHUP restarts the services."""
    server = Server(config)
    loop = asyncio.get_running_loop()
    # Installed before start() logs the address, so a supervisor that signals
    # as soon as it sees that line gets the graceful path.
    loop.add_signal_handler(signal.SIGTERM, server.manager.request_shutdown)
    loop.add_signal_handler(signal.SIGINT, server.manager.request_shutdown)
    loop.add_signal_handler(signal.SIGHUP, lambda: server.track(_restart(server.manager)))
    try:
        await server.start()
        await server.serve_until_shutdown()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _restart(manager):
    log.info("SIGHUP: restarting services")
    report = await manager.restart()
    # Each failure in the report was logged where it happened (loader, roster,
    # lifecycle); only the outcome is news here.
    log.info("restart: %s", report.splitlines()[-1])
