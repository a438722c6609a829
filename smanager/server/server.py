"""The server: listening, connections, signals, and shutdown in ordered phases.

start:    bind (so a busy port fails before any service starts), start the
          services, then accept connections and log the address.  Sockets
          systemd passed (socket activation) are used instead of binding, and
          the same rule decides whether they may be listened on.
shutdown: stop accepting; let each connection finish the command it is running
          (bounded by shutdown_timeout, then cancelled with an error reply);
          stop the services in reverse order; close every connection.
signals:  SIGTERM and SIGINT stop; SIGHUP restarts the services; SIGUSR1
          reopens the log file.  Under systemd, each step is told (systemd.py).
"""

import asyncio
import functools
import logging
import signal
import socket
import ssl
from pathlib import Path

from ..auth.access import Access
from ..auth.audit import Audit
from ..config import ConfigError
from ..core import eager
from ..core.manager import Manager
from ..wire.address import format_address
from . import limits, systemd, tls, unix_socket
from .connection import Connection

log = logging.getLogger("smanager.server")
RECEIVE_BUFFER = 65536  # bytes read from a client at a time
CLOSE_BACKSTOP = 3600.0  # seconds
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS client has to finish its handshake


class Server:
    def __init__(self, config, manager=None):
        self.config = config
        # The longest line a connection may send: [logged in or open, not yet logged in].
        self.line_limits = (config.max_line, min(config.login_max_line, config.max_line))
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
        self.listening = []  # what each listener is, as `status` and the log say it
        self._listeners = []
        self._sweeper = None
        self._tasks = set()
        self._all_closed = None  # set when the last connection is gone, during shutdown
        self.receive_buffer = memoryview(bytearray(RECEIVE_BUFFER))  # see Connection.get_buffer
        self.loop = self.spare = None  # the loop it runs on, and see start()

    @property
    def address(self):
        """(host, port) of the first TCP listener; the port is real even if 0 was asked."""
        sockets = [listener.sockets[0] for listener in self._listeners]
        return next(s for s in sockets if s.family != socket.AF_UNIX).getsockname()[:2]

    def facts(self):
        """Where it listens and how many are connected, for ``status``."""
        return {"listening": list(self.listening), "connections": len(self.connections),
                "max_connections": self.config.max_connections}

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
        inherited = systemd.inherited_sockets()
        self.loop = loop = asyncio.get_running_loop()  # connections use it: asking costs a getpid()
        self.spare = eager.Spare(loop)  # the task connections' first steps run as (eager.py)
        try:
            if not (inherited or config.tcp or config.unix_socket):
                raise ConfigError("nothing to listen on: --no-tcp needs --unix-socket PATH")
            # The rule for binding holds for the sockets systemd passed too.
            exposed = (systemd.exposed(inherited) if inherited
                       else config.tcp and limits.exposed(config.host)
                       and (config.host or "every address"))
            if exposed and not (config.insecure or authenticated):
                raise ConfigError(
                    f"refusing to listen on {exposed}: anyone who can "
                    "reach it could run every command, kill included. Listen on 127.0.0.1 or a "
                    "Unix socket (--unix-socket), add users (smanager users add NAME, then "
                    "--users-file FILE), require client certificates (--tls-cert, --tls-key, "
                    "--tls-client-ca), or pass --insecure if only trusted hosts can reach this "
                    "network")
            self.tls_context = _tls_context(config)
            await self._listen(inherited)
            if config.audit_log:
                self.audit = _open_audit(config, lambda: self.manager.catalog)
            await self.manager.start()
        except BaseException:
            self._close_listeners()
            for each in inherited:  # those no listener took yet
                each.socket.close()
            self._close_audit()
            raise
        for listener in self._listeners:
            _keep_alive(listener)
            await listener.start_serving()
        self.spare.get()  # one waits from the start, as the sweeper does
        self._sweeper = loop.create_task(limits.sweep(self, config))
        for where in self.listening:
            log.info("listening on %s", where)

    async def _listen(self, inherited):
        """A listener on each socket systemd passed, or on those the config names."""
        config, loop = self.config, asyncio.get_running_loop()
        connection = functools.partial(Connection, self)  # (a lambda is a Python call more)
        # Plain TCP, even for TLS: a connection is counted against the limits
        # when accepted, and only then does its handshake begin.
        for each in inherited:
            self._listeners.append(await loop.create_server(
                connection, sock=each.socket, backlog=config.backlog,
                start_serving=False))
            speaks = "Unix socket" if each.kind == "Unix" else _speaks(config)
            self.listening.append(f"{each.where} ({speaks}, {each.origin})")
        if inherited:
            return
        if config.tcp:
            self._listeners.append(await loop.create_server(
                connection, config.host, config.port,
                reuse_address=True, backlog=config.backlog, start_serving=False))
            self.listening.append(f"{format_address(*self.address)} ({_speaks(config)})")
        if config.unix_socket:
            self._listeners.append(await unix_socket.listen(
                connection, config.unix_socket,
                int(config.unix_socket_mode, 8), config.backlog))
            self.listening.append(f"{config.unix_socket} (Unix socket)")

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
        if self.spare is not None:  # (None: start() failed before it)
            self.spare.close()
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


def _keep_alive(listener):
    """TCP keepalive on the listening sockets, which every accepted connection
    inherits (Linux copies it at accept): a client that vanished without a FIN
    is found and closed in hours, not never, at no cost per connection."""
    for sock in listener.sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


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


async def serve(config, reopen_logs=None):
    """Run until ``kill``, SIGTERM or SIGINT; SIGHUP restarts the services;
    SIGUSR1 calls ``reopen_logs`` (the log file's, None for stderr)."""
    server = Server(config)
    notifier = systemd.Notifier()
    loop = asyncio.get_running_loop()
    # Installed before start() logs the address, so a supervisor that signals
    # as soon as it sees that line gets the graceful path.  SIGUSR1 always has
    # one: its default action would end the server.
    handlers = {signal.SIGTERM: server.manager.request_shutdown,
                signal.SIGINT: server.manager.request_shutdown,
                signal.SIGHUP: lambda: server.track(_reload(server, notifier)),
                signal.SIGUSR1: lambda: _reopen_logs(reopen_logs)}
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    pulse = None
    try:
        await server.start()
        notifier.ready(systemd.status_line(server))
        # systemd arms the watchdog once start-up is complete: from here on.
        pulse = loop.create_task(systemd.pulse(notifier, lambda: systemd.status_line(server)))
        await server.manager.shutdown_requested.wait()
        notifier.stopping()
        await server.shutdown()
    finally:
        if pulse is not None:
            pulse.cancel()
        notifier.close()
        for signum in handlers:
            loop.remove_signal_handler(signum)


async def _reload(server, notifier):
    """SIGHUP: the restart, between RELOADING=1 and READY=1 for systemd."""
    if server.shutting_down:
        log.info("SIGHUP: ignored, shutting down")
        return
    notifier.reloading()
    try:
        await _restart(server.manager)
    finally:
        if not server.shutting_down:
            notifier.ready(systemd.status_line(server))


def _reopen_logs(reopen):
    if reopen is None:
        log.info("SIGUSR1: the log goes to stderr; no file to reopen")
    else:
        reopen()  # it logs how that went


async def _restart(manager):
    log.info("SIGHUP: restarting services")
    report = await manager.restart()
    # Each failure in the report was logged where it happened (loader, roster,
    # lifecycle); only the outcome is news here.
    log.info("restart: %s", report.splitlines()[-1])
