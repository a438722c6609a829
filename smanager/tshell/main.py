"""``tshell``: the command-line client.

    tshell [HOST[:PORT]]                         an interactive shell (see shell.py)
    tshell HOST[:PORT] -c 'systemstatus uptime'  one command: only its reply on stdout
    tshell HOST[:PORT] < commands.txt            one command per line, the same way
    tshell /run/smanager.sock -c 'kill'          a server's Unix socket: a path
    tshell --hosts web1,web2:10001 -c COMMAND    one command on many hosts at once
    tshell --hosts-file FILE --ping              which hosts answer, and their services
    tshell --hosts a,b,c --place 'proc run web'  on the least loaded host only (placement.py)
    tshell --user alice HOST -c 'kill'           logged in (password: $SMANAGER_PASSWORD,
                                                 else asked for; it never crosses the wire)

Exit status (the flags are checked in arguments.py before anything is sent):

- 0 when every command succeeded;
- 1 when a server replied with an error, or a line read from stdin was one no
  client sends (``mode text``, not UTF-8): it is skipped like an error reply;
  and when --place finds no host that gives its load;
- 2 when a server could not be reached or answered too late, or the arguments
  were wrong, ``-c`` with such a line (``-c ''``, ``-c 'mode text'``) included;
- 130 after Ctrl-C; 141 when stdout's reader went away.

Every failure is also one line on stderr.  Output is plain text unless stdout
(for errors, stderr) is a terminal.

An interactive session leaves what it learned of the server's help index in a
cache (helpcache.py), from which bash completes ``tshell HOST -c '...'`` on Tab:
``tshell __complete ...`` answers it without connecting (completion.py).
"""

import asyncio
import contextlib
import json
import os
import sys

from ..client import Client, ClientError, fleet, placement
from ..config import UsageError
from . import arguments, completion, helpcache
from .bashcomplete import QUERY
from .shell import RED, RESET, Shell, default_history_file

OK, ERROR_REPLY, NO_ANSWER = 0, 1, 2
INTERRUPTED, OUTPUT_CLOSED = 130, 141  # as a shell reports SIGINT and SIGPIPE


def main(argv=None, *, stdin=None, stdout=None, stderr=None):
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [QUERY]:  # Tab in bash (bashcomplete.py): words from the cache, no connection
        return completion.answer(argv[1:], stdout)
    try:
        args = arguments.parse(argv)
    except (UsageError, ValueError, OSError) as exc:
        stderr.write(f"tshell: {exc} (try 'tshell --help')\n")
        return NO_ANSWER
    except (KeyboardInterrupt, EOFError):  # at the password prompt
        stderr.write("tshell: interrupted\n")
        return INTERRUPTED
    output = Output(stdout, stderr, args.json)
    try:
        return _run(args, output, stdin)
    except KeyboardInterrupt:
        output.complain("tshell: interrupted")
        return INTERRUPTED
    except BrokenPipeError:  # whoever read our output has gone (`| head`)
        with contextlib.suppress(OSError, ValueError):  # no second error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return OUTPUT_CLOSED


def _run(args, output, stdin):
    if args.place is not None:
        return asyncio.run(_place(args, output))
    if args.fleet:
        return asyncio.run(_fleet(args, output))
    client = Client(*args.addresses[0], timeout=args.timeout, **args.client_options)
    try:
        if args.command is not None:
            return output.run(client, args.command)
        if not stdin.isatty():
            return output.run_lines(client, getattr(stdin, "buffer", stdin))
        try:
            client.connect()
        except ClientError as exc:
            return output.failure(exc)
        try:
            return Shell(client, out=output.stdout, colour=output.colour_out,
                         history_file=default_history_file()).run()
        finally:
            helpcache.save(client)  # for `tshell HOST -c '...'`'s Tab completion
    finally:
        client.close()


async def _fleet(args, output):
    addresses = args.addresses
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


async def _place(args, output):
    candidates, skipped = await placement.survey(
        args.addresses, parallel=args.parallel, timeout=args.timeout, **args.client_options)
    for skip in skipped:
        output.complain(f"tshell: skipped {skip.host}: {skip.why}")
    chosen = placement.least_loaded(candidates)
    if chosen is None:
        output.complain("tshell: no host left to place on: "
                        f"none of the {len(skipped)} gave its load")
        return ERROR_REPLY
    # On the chosen host only, and a failure is never retried on another: the
    # command may have had effects there already (run_on says more).
    try:
        reply = await placement.run_on(chosen, args.place, timeout=args.timeout,
                                       **args.client_options)
    except ClientError as exc:
        return output.failure(exc)
    if args.json:
        output.write(placement.as_json(chosen, reply))
        return OK if reply.ok else ERROR_REPLY
    output.write(placement.as_text(chosen, reply))
    if reply.ok:
        return OK
    output.complain(f"{chosen.host}: ERROR: {reply.error}")  # where it may have had effects
    return ERROR_REPLY


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
            reply = (client.call(line, on_chunk=self._chunk) if self.as_json
                     else client.call(line, on_text=self.write))
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
        self.write(json.dumps({"chunk": chunk}, ensure_ascii=False, default=str) + "\n")

    def write(self, text):
        self.stdout.write(text)
        self.stdout.flush()

    def complain(self, line):
        self.stderr.write(f"{RED}{line}{RESET}\n" if self.colour_err else line + "\n")
        self.stderr.flush()
