"""``tshell``: the command-line client.

    tshell [HOST[:PORT]]                         an interactive shell (see shell.py)
    tshell HOST[:PORT] -c 'systemstatus uptime'  one command: only its reply on stdout
    tshell HOST[:PORT] < commands.txt            one command per line, the same way
    tshell --hosts web1,web2:10001 -c COMMAND    one command on many hosts at once
    tshell --hosts-file FILE --ping              which hosts answer, and their services
    tshell --user alice HOST -c 'kill'           logged in (password: $SMANAGER_PASSWORD,
                                                 else asked for; it never crosses the wire)

Exit status: 0 when every command succeeded; 1 when a server replied with an
error; 2 when a server could not be reached or answered too late, or the
arguments were wrong; 130 after Ctrl-C; 141 when stdout's reader went away.
Every failure is also one line on stderr.  Output is
plain text unless stdout (for errors, stderr) is a terminal.
"""

import asyncio
import contextlib
import getpass
import json
import math
import os
import ssl
import sys

from ..client import Client, ClientError, fleet, tls_context
from ..client.common import DEFAULT_TIMEOUT, request_bytes, text_of
from ..config import DEFAULT_HOST, DEFAULT_PORT, OneLineParser, UsageError
from .shell import RED, RESET, Shell, default_history_file

OK, ERROR_REPLY, NO_ANSWER = 0, 1, 2
INTERRUPTED, OUTPUT_CLOSED = 130, 141  # as a shell reports SIGINT and SIGPIPE


def build_parser():
    parser = OneLineParser(prog="tshell", description="Talk to smanager servers.")
    add = parser.add_argument
    add("address", nargs="?", metavar="HOST[:PORT]",
        help=f"the server (default {DEFAULT_HOST}:{DEFAULT_PORT})")
    add("-c", "--command", help="run this one command, print its reply, and exit")
    hosts = parser.add_mutually_exclusive_group()
    hosts.add_argument("--hosts", metavar="LIST", help="comma-separated HOST[:PORT]s")
    hosts.add_argument("--hosts-file", metavar="FILE",
                       help="one HOST[:PORT] per line; '#' starts a comment")
    add("--ping", action="store_true", help="show which hosts answer and their services")
    add("--json", action="store_true", help="print JSON: one line per host (or per message)")
    add("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help="for connecting, and for each part of a reply; with --hosts or --ping, "
             f"for each host in all (default {DEFAULT_TIMEOUT:g})")
    add("--tls", action="store_true", help="the server speaks TLS (verified by the system CAs)")
    add("--tls-ca", metavar="FILE", help="verify the server with this CA instead (implies --tls)")
    add("--tls-cert", metavar="FILE", help="client certificate, for mutual TLS (implies --tls)")
    add("--tls-key", metavar="FILE", help="its private key")
    add("--user", metavar="NAME", help="log in as NAME (password from $SMANAGER_PASSWORD, "
        "else asked for on the terminal)")
    add("--parallel", type=int, default=fleet.DEFAULT_PARALLEL, metavar="N",
        help=f"hosts asked at once (default {fleet.DEFAULT_PARALLEL})")
    return parser


def main(argv=None, *, stdin=None, stdout=None, stderr=None):
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        addresses = _addresses(args)
    except (UsageError, ValueError, OSError) as exc:
        stderr.write(f"tshell: {exc} (try 'tshell --help')\n")
        return NO_ANSWER
    except (KeyboardInterrupt, EOFError):  # at the password prompt
        stderr.write("tshell: interrupted\n")
        return INTERRUPTED
    output = Output(stdout, stderr, args.json)
    try:
        return _run(args, addresses, output, stdin)
    except KeyboardInterrupt:
        output.complain("tshell: interrupted")
        return INTERRUPTED
    except BrokenPipeError:  # whoever read our output has gone (`| head`)
        with contextlib.suppress(OSError, ValueError):  # no second error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return OUTPUT_CLOSED


def _run(args, addresses, output, stdin):
    if args.hosts or args.hosts_file or args.ping:
        return asyncio.run(_fleet(addresses, args, output))
    client = Client(*addresses[0], timeout=args.timeout, **args.client_options)
    try:
        if args.command is not None:
            return output.run(client, args.command)
        if not stdin.isatty():
            return output.run_lines(client, getattr(stdin, "buffer", stdin))
        try:
            client.connect()
        except ClientError as exc:
            return output.failure(exc)
        return Shell(client, out=output.stdout, colour=output.colour_out,
                     history_file=default_history_file()).run()
    finally:
        client.close()


def _addresses(args):
    fleet_mode = bool(args.hosts or args.hosts_file)
    if fleet_mode and args.address:
        raise UsageError("give either HOST or --hosts/--hosts-file, not both")
    if fleet_mode and args.command is None and not args.ping:
        raise UsageError("--hosts needs -c COMMAND or --ping")
    if args.ping and args.command is not None:
        raise UsageError("--ping runs no command; drop -c")
    if args.parallel < 1 or not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--parallel and --timeout must be positive numbers")
    if args.command is not None:
        request_bytes(args.command)  # a command no client sends: a wrong argument
    args.client_options = {"ssl": None}
    if args.tls or args.tls_ca or args.tls_cert:
        try:
            args.client_options["ssl"] = tls_context(args.tls_ca, args.tls_cert,
                                                             args.tls_key)
        except ssl.SSLError as exc:
            raise UsageError(f"cannot use the TLS files: {exc}") from None
    if args.user is not None:
        args.client_options.update(user=args.user, password=_password(args.user))
    if args.hosts_file:
        with open(args.hosts_file, encoding="utf-8") as file:
            names = fleet.read_hosts_file(file.read())
    elif args.hosts:
        names = [name for name in args.hosts.split(",") if name.strip()]
    else:
        names = [args.address or DEFAULT_HOST]
    if not names:
        raise UsageError("no hosts given")
    return fleet.parse_hosts(names)


def _password(user):
    password = os.environ.get("SMANAGER_PASSWORD")
    if password is not None:
        return password
    try:
        with open("/dev/tty", "r+", encoding="utf-8"):  # getpass would fall back to stdin
            pass
    except OSError:
        raise UsageError("--user needs a password: set SMANAGER_PASSWORD, or run "
                         "tshell from a terminal") from None
    return getpass.getpass(f"password for {user}: ")


async def _fleet(addresses, args, output):
    if args.ping:
        results = await fleet.ping_everywhere(addresses, parallel=args.parallel,
                                              timeout=args.timeout, **args.client_options)
        width = max(len(result.host) for result in results)
        output.write("".join(fleet.as_json(r) if args.json else fleet.ping_row(r, width)
                             for r in results))
    else:
        results = await fleet.run_everywhere(addresses, args.command, parallel=args.parallel,
                                             timeout=args.timeout, **args.client_options)
        output.write("".join(fleet.as_json(r) if args.json else fleet.as_text(r)
                             for r in results))
    summary = fleet.failure_summary(results)
    if summary is None:
        return OK
    output.complain(f"tshell: {summary}")
    return NO_ANSWER if any(not r.reached for r in results) else ERROR_REPLY


class Output:
    """Replies to stdout and failures to stderr, as text or JSON lines."""

    def __init__(self, stdout, stderr, as_json):
        self.stdout, self.stderr, self.as_json = stdout, stderr, as_json
        plain = "NO_COLOR" in os.environ
        self.colour_out = not plain and stdout.isatty()
        self.colour_err = not plain and stderr.isatty()

    def run(self, client, line):
        """One command; its exit status."""
        try:
            reply = client.call(line, on_chunk=self._chunk)
        except ClientError as exc:
            return self.failure(exc)
        except ValueError as exc:  # a line the client will not send: like an error reply
            self.complain(f"tshell: {exc}")
            return ERROR_REPLY
        if self.as_json:
            final = {"ok": True, "result": reply.value} if reply.ok \
                else {"ok": False, "error": reply.error}
            self.write(json.dumps(final, ensure_ascii=False, default=str) + "\n")
            return OK if reply.ok else ERROR_REPLY
        self.write(reply.text)
        if reply.ok:
            return OK
        self.complain(f"ERROR: {reply.error}")
        return ERROR_REPLY

    def run_lines(self, client, lines):
        """One command per line ('#' comments and blank lines skipped); stops at
        ``quit`` or when the server cannot be reached."""
        status = OK
        for raw in lines:
            if isinstance(raw, bytes):  # bytes that are not UTF-8 go to the server as they are
                raw = raw.decode("utf-8", "surrogateescape")
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower() in ("quit", "exit"):
                break
            code = self.run(client, line)
            if code not in (OK, ERROR_REPLY):
                return code
            status = max(status, code)
        return status

    def failure(self, exc):
        self.complain(f"tshell: {exc}")
        return NO_ANSWER

    def _chunk(self, chunk):
        self.write(json.dumps({"chunk": chunk}, ensure_ascii=False, default=str) + "\n"
                   if self.as_json else text_of(chunk))

    def write(self, text):
        self.stdout.write(text)
        self.stdout.flush()

    def complain(self, line):
        self.stderr.write(f"{RED}{line}{RESET}\n" if self.colour_err else line + "\n")
        self.stderr.flush()
