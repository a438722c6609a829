"""tshell's flags, and everything checked before a byte is sent.

- The server is ``HOST[:PORT]``, or the path of its Unix socket (anything
  with a ``/``: ``/run/smanager.sock``, ``./smanager.sock``); see
  smanager/client/addresses.py.
- A mistake in them (a second ``-c``, an empty ``--hosts``, ``-c ''``, ``--tls``
  with a Unix socket) is a UsageError: one line, exit status 2, nothing run.
- The password for ``--user`` is asked for last, once the rest is known to be
  good, and only on the terminal: stdin may be carrying the commands.
"""

import argparse
import getpass
import math
import os
import ssl

from .. import __version__
from ..client import fleet, tls_context
from ..client.addresses import is_socket_path
from ..client.common import DEFAULT_TIMEOUT, request_bytes
from ..config import DEFAULT_HOST, DEFAULT_PORT, OneLineParser, UsageError


class Once(argparse.Action):
    """An option that may be given once: a second one is a mistake, not "the last wins"
    (``-c status -c kill`` must not quietly run only ``kill``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{'/'.join(self.option_strings)} given twice")
        setattr(namespace, self.dest, values)


def build_parser():
    parser = OneLineParser(prog="tshell", description="Talk to smanager servers.")
    add = parser.add_argument
    add("address", nargs="?", metavar="HOST[:PORT]|PATH",
        help=f"the server (default {DEFAULT_HOST}:{DEFAULT_PORT}), or the path of its "
             "Unix socket (anything with a '/')")
    add("-c", "--command", action=Once, help="run this one command, print its reply, and exit")
    hosts = parser.add_mutually_exclusive_group()
    hosts.add_argument("--hosts", action=Once, metavar="LIST",
                       help="comma-separated HOST[:PORT]s (or socket paths)")
    hosts.add_argument("--hosts-file", action=Once, metavar="FILE",
                       help="one HOST[:PORT] per line; '#' starts a comment")
    add("--ping", action="store_true", help="show which hosts answer and their services")
    add("--place", action=Once, metavar="COMMAND",
        help="run COMMAND (meant for 'proc run TEMPLATE KEY=VALUE...') on the least loaded "
             "of the hosts only: the 1-minute load average divided by the CPU count (proc "
             "load); ties go to fewer running programs, then to the host given first.  Hosts "
             "that give no load are skipped; a COMMAND that fails is not tried elsewhere")
    add("--json", action="store_true", help="print JSON: one line per host (or per message)")
    add("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help="for connecting, and for each part of a reply; with --hosts or --ping, "
             "and for --place's question to each host, for each host in all "
             f"(default {DEFAULT_TIMEOUT:g})")
    add("--tls", action="store_true", help="the server speaks TLS (verified by the system CAs)")
    add("--tls-ca", metavar="FILE", help="verify the server with this CA instead (implies --tls)")
    add("--tls-cert", metavar="FILE", help="client certificate, for mutual TLS (implies --tls)")
    add("--tls-key", metavar="FILE", help="its private key")
    add("--user", action=Once, metavar="NAME", help="log in as NAME (password from "
        "$SMANAGER_PASSWORD, else asked for on the terminal)")
    add("--parallel", type=int, default=fleet.DEFAULT_PARALLEL, metavar="N",
        help=f"hosts asked at once (default {fleet.DEFAULT_PARALLEL})")
    add("--version", action="version", version=f"tshell {__version__}")
    return parser


def parse(argv):
    """The checked arguments: ``args.addresses`` are (host, port) pairs,
    ``args.fleet`` is true for --hosts, --hosts-file and --ping, and
    ``args.client_options`` go to every client.  UsageError for a mistake."""
    args = build_parser().parse_args(argv)
    args.fleet = args.hosts is not None or args.hosts_file is not None  # '' is a mistake too
    if args.fleet and args.address:
        raise UsageError("give either HOST or --hosts/--hosts-file, not both")
    if args.place is not None:
        _check_place(args)
    elif args.fleet and args.command is None and not args.ping:
        raise UsageError("--hosts needs -c COMMAND, --ping or --place COMMAND")
    if args.ping and args.command is not None:
        raise UsageError("--ping runs no command; drop -c")
    args.fleet = args.fleet or args.ping
    if args.parallel < 1 or not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--parallel and --timeout must be positive numbers")
    if args.command is not None:
        try:
            request_bytes(args.command)  # a line no client sends: nothing to run
        except ValueError as exc:
            raise UsageError(f"-c: {exc}") from None
    try:
        args.addresses = fleet.parse_hosts(_host_names(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.client_options = {"ssl": _tls(args)}
    if args.user is not None:
        args.client_options.update(user=args.user, password=_password(args.user))
    return args


def _check_place(args):
    """--place chooses among hosts, and runs its own command only."""
    if not args.fleet:
        raise UsageError("--place needs --hosts or --hosts-file to choose from")
    if args.command is not None or args.ping:
        raise UsageError("--place runs its own command; drop -c and --ping")
    try:
        request_bytes(args.place)
    except ValueError as exc:
        raise UsageError(f"--place: {exc}") from None


def _host_names(args):
    if args.hosts_file is not None:
        try:
            with open(args.hosts_file, encoding="utf-8") as file:
                names = fleet.read_hosts_file(file.read())
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"cannot read --hosts-file {args.hosts_file!r}: {reason}") \
                from None
    elif args.hosts is not None:
        names = [name for name in args.hosts.split(",") if name.strip()]
    else:
        names = [args.address or DEFAULT_HOST]
    if not names:
        raise UsageError("no hosts given")
    return names


def _tls(args):
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    sockets = [host for host, _ in args.addresses if is_socket_path(host)]
    if sockets:  # a TLS flag must never be quietly ignored
        raise UsageError(f"{sockets[0]} is a Unix socket; a server speaks TLS only over TCP")
    try:
        return tls_context(args.tls_ca, args.tls_cert, args.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"cannot use the TLS files: {exc}") from None


def _password(user):
    password = os.environ.get("SMANAGER_PASSWORD")
    if password is not None:
        return password
    try:  # without a terminal getpass would read stdin, which may hold the commands
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise UsageError("--user needs a password: set SMANAGER_PASSWORD, or run "
                         "tshell from a terminal") from None
    return getpass.getpass(f"password for {user}: ")
