"""Limits that keep any one client, or a crowd of them, from wearing the server down.

1. At most ``max_connections`` connections, and ``max_connections_per_address``
   from one address (a Unix socket's clients share one).  One more is sent a
   one-line error and closed; refusals are logged at most once a second.
2. A connection that sends nothing and runs nothing for ``idle_timeout``
   seconds is told so and closed.
3. A line must be complete ``line_timeout`` seconds after it began (a client
   sending a byte a second cannot hold a connection forever).
4. A client that leaves our output unread for ``send_timeout`` seconds is
   dropped: nothing more can be sent to it, and what it left unread is freed.
   (Until then it holds at most one reply: see pipeline.py and flow.py.)
   A connection we are closing is dropped likewise once it has made no
   progress for that long: its client neither reads the rest nor, under TLS,
   answers our close_notify.
5. A connection that must log in and has not, ``login_timeout`` seconds
   after it connected, is told so and closed.

The sweep also reads the users file again when it changes (auth/access.py).

The timers are one sweep over all connections, a few times a second, so the
path every request takes does no clock reads for them, and a connection's
notes for them (its Watch) are made at the sweep's first look at it: a
connection that ends before then (most one-liners) never costs one.  (One
that must log in gets its Watch as it begins: its login time-out runs from
then.)
"""

import asyncio
import ipaddress
import logging
import socket
import time

log = logging.getLogger("smanager.limits")
STALLED_BYTES = 65536  # unsent beneath TLS: asyncio's own high-water mark


class Throttled:
    """A warning a flood could repeat thousands of times a second: written at
    most once a second, saying how many it stands for.  ``message`` has a %d
    (how many) and a %s (the latest one's detail)."""

    def __init__(self, message):
        self.message = message
        self._count, self._logged_at = 0, 0.0

    def warn(self, detail):
        self._count += 1
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            log.warning(self.message, self._count, detail)
            self._count, self._logged_at = 0, now


class Admission:
    """Counts connections, overall and per address (rule 1)."""

    def __init__(self, total, per_address):
        self.total, self.per_address = total, per_address
        self.count = 0
        self.by_address = {}
        self._refusals = Throttled("refused %d connection(s): %s")

    def admit(self, address):
        """None if the connection may stay (and it is counted), else the error."""
        if self.count >= self.total:
            return self._refuse(f"too many connections (limit {self.total}); try again later")
        by_address = self.by_address
        here = by_address.get(address, 0)
        if here >= self.per_address:
            return self._refuse(f"too many connections from {address} "
                                f"(limit {self.per_address}); try again later")
        self.count += 1
        by_address[address] = here + 1
        return None

    def release(self, address):
        self.count -= 1
        by_address = self.by_address
        left = by_address[address] - 1
        if left:
            by_address[address] = left
        else:
            del by_address[address]

    def _refuse(self, error):
        self._refusals.warn(error)
        return error


class Watch:
    """What the sweep last saw of one connection, to tell progress from none."""

    __slots__ = ("closing_since", "idle_since", "line_since", "lines", "opened", "reads",
                 "refused", "resumes", "stalled_since", "unsent")

    def __init__(self, now):
        self.opened = now
        self.reads, self.idle_since = -1, now
        self.lines, self.line_since = -1, None
        self.resumes, self.stalled_since = -1, None
        self.unsent, self.closing_since = 0, None
        self.refused = False  # told to go: it only gets send_timeout to take its last words


async def sweep(server, config):
    """Rules 2-5, for as long as the server runs."""
    interval = min(1.0, config.idle_timeout, config.line_timeout, config.send_timeout,
                   config.login_timeout) / 4
    loop = asyncio.get_running_loop()
    while True:
        # With nobody connected, a quarter as often: an idle server (the usual
        # state of one left on every host) wakes once a second, not four times.
        await asyncio.sleep(interval if server.connections else interval * 4)
        now = loop.time()
        try:
            server.manager.access.refresh()
        except Exception:  # noqa: BLE001 - the limits must go on
            log.exception("reading the users file failed")
        for connection in list(server.connections):
            try:
                problem = check(connection, now, config)
                if problem is not None:
                    message, reachable = problem
                    log.warning("%s: %s", connection.peer.address, message)
                    connection.watch.refused = True
                    connection.refuse(message, reachable)
            except Exception:  # noqa: BLE001 - one odd connection must not end every limit
                log.exception("%s: checking its limits failed", connection.peer.address)


def check(connection, now, config):
    """The rule this connection breaks now, as (its error, whether the client
    can still be told), or None."""
    watch, flow = connection.watch, connection.pipeline  # (a Flow)
    if watch is None:  # first seen now: a connection over by then never costs one
        watch = connection.watch = Watch(now)
    # Rule 4 first: it is the only one left for a connection already refused.
    # Under TLS, one big reply can sit whole in the TCP transport beneath,
    # where the TLS transport's flow control never sees it: watch that too.
    unsent = (connection.raw or connection.transport).get_write_buffer_size()
    took_some, watch.unsent = unsent < watch.unsent, unsent
    if connection.transport.is_closing():
        if took_some or watch.closing_since is None:
            watch.closing_since = now
        elif now - watch.closing_since >= config.send_timeout:
            return (f"closing, and no progress for {config.send_timeout:g} s "
                    "(the rest unread, or our close unanswered); dropping the client"), False
        return None
    stalled = flow.write_paused or unsent > STALLED_BYTES
    if not stalled or flow.resumes != watch.resumes or took_some:
        watch.resumes, watch.stalled_since = flow.resumes, None  # the client reads
        if watch.refused:
            return None
    elif watch.stalled_since is None:
        watch.stalled_since = now
    elif now - watch.stalled_since >= config.send_timeout:
        return f"output unread for {config.send_timeout:g} s; dropping the client", False
    if watch.refused:
        return None
    if connection.peer.on_probation and now - watch.opened >= config.login_timeout:
        return f"not logged in within {config.login_timeout:g} s; closing the connection", True
    if connection.reads != watch.reads or connection.pipeline.busy or connection.pipeline.queue:
        watch.reads, watch.idle_since = connection.reads, now
    elif now - watch.idle_since >= config.idle_timeout:
        return f"idle for {config.idle_timeout:g} s; closing the connection", True
    if not connection.framer.has_partial or not flow.reading:
        watch.line_since = None  # no line begun, or we are not reading it: not its fault
    elif watch.line_since is None or connection.lines_seen != watch.lines:
        watch.lines, watch.line_since = connection.lines_seen, now
    elif now - watch.line_since >= config.line_timeout:
        return f"line not finished within {config.line_timeout:g} s; closing the connection", True
    return None


def exposed(host):
    """True if listening on ``host`` accepts connections from other machines."""
    if not host:
        return True  # every interface
    if host in ("localhost", "ip6-localhost"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return False  # binding will fail, and say why
    return not all(ipaddress.ip_address(info[4][0].partition("%")[0]).is_loopback
                   for info in infos)
