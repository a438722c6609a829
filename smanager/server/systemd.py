"""systemd, by its documented protocols alone: notifications and socket activation.

Notifications (sd_notify(3)):

1. Only when NOTIFY_SOCKET names a Unix datagram socket (a path, or "@name"
   for an abstract one); without it every call does nothing.
2. A message is one datagram of KEY=VALUE lines.  It is sent without
   waiting: a socket that is missing, full or gone drops it.  The first
   failure is logged, once; the server never fails for one.
3. READY=1 once the server listens and its services have started;
   RELOADING=1 (with MONOTONIC_USEC, which systemd 253 and later want) when
   SIGHUP's restart begins, READY=1 when it ends; STOPPING=1 when the
   shutdown begins.  STATUS= says what runs, sent again only when it changed.
4. The watchdog: when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this
   process), WATCHDOG=1 every half of it, from the event loop, so a loop that
   hangs stops the pings.
5. The environment is left alone: the programs proc starts get an
   environment built for them, and systemd ignores messages from any process
   but the main one (NotifyAccess=main, the default).

Socket activation (sd_listen_fds(3)):

6. When LISTEN_PID is this process, LISTEN_FDS=N sockets are the descriptors
   3 to 3+N-1, named by LISTEN_FDNAMES (optional, colon-separated).
7. Each must be a listening stream socket (TCP or Unix, Accept=no); anything
   else stops the start (ConfigError).
8. They are made non-blocking and close-on-exec: no program proc starts
   inherits them.
"""

import asyncio
import logging
import os
import socket
import time
from typing import NamedTuple

from ..config import ConfigError
from ..service import State
from ..wire.address import format_address
from . import limits

log = logging.getLogger("smanager.systemd")
FIRST_FD = 3  # SD_LISTEN_FDS_START
STATUS_EVERY = 10.0  # seconds between looks at the status when the watchdog asks for none sooner
FAMILIES = {socket.AF_INET: "TCP", socket.AF_INET6: "TCP", socket.AF_UNIX: "Unix"}


class Notifier:
    """Messages to the service manager (rules 1-4)."""

    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        self.where = environ.get("NOTIFY_SOCKET", "")  # as given, for the log
        self.address = notify_address(self.where)
        self.watchdog = watchdog_interval(environ)  # seconds between pings, or None
        self._socket = None
        self._status = None  # the last STATUS sent
        self._failed = False  # a failure has been logged

    @property
    def enabled(self):
        return self.address is not None

    def send(self, *fields):
        """One message of KEY=VALUE fields; True if it left."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)  # rule 2: never hold up the event loop
            self._socket.sendto("".join(f"{field}\n" for field in fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd (%s): %s; further failures are not logged",
                            self.where, exc.strerror or exc)
            return False
        return True

    def ready(self, status):
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self):
        self._status = "reloading"
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")

    def stopping(self):
        self._status = "stopping"
        self.send("STOPPING=1", "STATUS=stopping")

    def tick(self, status):
        """What the pulse sends: WATCHDOG=1 if asked for, STATUS if it changed."""
        fields = ["WATCHDOG=1"] if self.watchdog else []
        if status != self._status:
            self._status = status
            fields.append(f"STATUS={status}")
        if fields:
            self.send(*fields)

    def close(self):
        if self._socket is not None:
            self._socket.close()
        self.address = self._socket = None


async def pulse(notifier, status_of):
    """Ping the watchdog and refresh the status until cancelled (rules 3, 4)."""
    if not notifier.enabled:
        return
    interval = min(STATUS_EVERY, notifier.watchdog or STATUS_EVERY)
    while True:
        await asyncio.sleep(interval)
        notifier.tick(status_of())


def notify_address(value):
    """NOTIFY_SOCKET as an address for sendto, or None when there is none we can use."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux's abstract namespace
    if value:
        log.warning("NOTIFY_SOCKET=%s is not a socket path; not notifying systemd", value)
    return None


def watchdog_interval(environ):
    """Seconds between WATCHDOG=1 pings (half the timeout), or None: no watchdog."""
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Inherited(NamedTuple):
    socket: socket.socket
    name: str  # from LISTEN_FDNAMES: the socket unit's FileDescriptorName=, or ""

    @property
    def kind(self):
        return FAMILIES[self.socket.family]

    @property
    def where(self):
        """Its address, as the log and `status` show it."""
        name = self.socket.getsockname()
        if self.kind == "TCP":
            return format_address(*name[:2])
        return name if isinstance(name, str) else "@" + name[1:].decode(errors="replace")

    @property
    def origin(self):
        return f"from systemd: {self.name}" if self.name else "from systemd"


def exposed(inherited):
    """The first TCP socket of these that other machines reach, described for
    the refusal to listen on it; "" if none."""
    for each in inherited:
        if each.kind == "TCP" and limits.exposed(each.socket.getsockname()[0]):
            return f"{each.where} (a socket systemd passed)"
    return ""


def status_line(server):
    """The STATUS ``systemctl status`` shows: what runs, and who is connected."""
    if server.shutting_down:
        return "stopping"
    catalog, connections = server.manager.catalog, len(server.connections)
    running = sum(loaded.instance.state is State.RUNNING for loaded in catalog.services.values())
    line = (f"{running} service{'' if running == 1 else 's'} running, "
            f"{connections} connection{'' if connections == 1 else 's'}")
    return line + (f", {len(catalog.failures)} failed" if catalog.failures else "")


def inherited_sockets(environ=None):
    """The sockets systemd passed this process (rules 6-8); [] when none."""
    environ = os.environ if environ is None else environ
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        raise ConfigError(f"LISTEN_FDS={environ.get('LISTEN_FDS', '')!r} is not a "
                          "number of sockets") from None
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    inherited = []
    try:
        for index in range(count):
            inherited.append(Inherited(_adopt(FIRST_FD + index),
                                       names[index] if index < len(names) else ""))
    except ConfigError:
        for each in inherited:
            each.socket.close()
        raise
    return inherited


def _adopt(fd):
    """Descriptor ``fd`` as a socket to listen on, checked (rule 7) and set up (rule 8)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"systemd passed descriptor {fd}, which is not a socket: "
                          f"{exc.strerror or exc}") from None
    if sock.family not in FAMILIES or sock.type != socket.SOCK_STREAM \
            or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.close()
        raise ConfigError(f"systemd passed descriptor {fd}, which is not a listening TCP or "
                          "Unix stream socket (the socket unit needs ListenStream= and "
                          "Accept=no)")
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock
