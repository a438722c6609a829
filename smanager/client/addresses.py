"""Where a server is, as people write it: ``HOST[:PORT]``, or a Unix socket's path.

- ``web1``, ``web1:10001``, ``10.0.0.7``, ``[::1]:10002`` and a bare IPv6
  address (``::1``) name a TCP server; the port is 10000 unless given.
- Anything with a ``/`` in it is the path of a Unix socket
  (``/run/smanager.sock``, or ``./smanager.sock`` for one in the current
  directory); there is no port then.  A URL (``http://...``) is neither.
"""

import ipaddress
import re

from ..config import DEFAULT_PORT
from ..wire.address import format_address

_HOST = re.compile(r"[\w.:%-]+")  # names, IPv4, IPv6 (with a zone): no spaces, commas, slashes


def is_socket_path(host):
    """True when ``host`` is the path of a Unix socket, not a host name."""
    return "/" in host


def where_of(host, port):
    """How messages name a server: ``HOST:PORT`` (``[V6]:PORT``), or a socket's path."""
    return host if is_socket_path(host) else format_address(host, port)


def parse_address(text, default_port=DEFAULT_PORT):
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (host, port);
    a path -> (path, None); ValueError for anything else (a URL, two hosts in
    one, a stray colon)."""
    text = text.strip()
    if is_socket_path(text):
        if "://" in text:
            raise ValueError(f"bad address {text!r}: give HOST[:PORT], not a URL")
        return text, None
    host, port = text, default_port
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or rest == ":":
            raise ValueError(f"bad address {text!r}")
        port = rest[1:] or default_port
        _check_ipv6(host, text)
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        _check_ipv6(host, text)
    if not host or not _HOST.fullmatch(host):
        raise ValueError(f"bad address {text!r}")
    if not (isinstance(port, int) or port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def _check_ipv6(host, text):
    try:
        ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        raise ValueError(f"bad address {text!r}") from None
