#!/usr/bin/env python3
"""Automating smanager from Python: the SManager README's example, working.

    python demo_script.py [HOST[:PORT]] [LOGFILE]

asks the server whether it runs scrapman and appends scrapman's heartbeat (or
why there is none) to LOGFILE (default: useful_log.log in the temporary
directory).  Exit status 0 when a heartbeat was logged, 1 when scrapman is not
running there, 2 when the server could not be reached.

Other scripts import it, as the README does:

    from demo_script import smanager_cmd, address, port
    print(smanager_cmd(address, port, 'systemstatus uptime'))

No netcat needed: smanager_cmd uses smanager.client, which raises a
smanager.client.ClientError (also an OSError) when the server is out of reach.
"""

import os
import sys
import tempfile
import time

from smanager.client import Client, ClientError, parse_address
from smanager.client.common import terse_fields

address = "127.0.0.1"
port = 10000


def smanager_cmd(address, port, cmd):
    """Run one command; its reply as text, as nc shows it without the separator.

    An error reply is its ``ERROR: ...`` line; use smanager.client.Client
    directly to tell the two apart without reading the text.
    """
    with Client(address, port) as client:
        return str(client.call(cmd))


def _terse_help(address=None, port=None):
    text = smanager_cmd(address or globals()["address"], port or globals()["port"], "help -s")
    return terse_fields(text)


def what_services(address=None, port=None):
    """The names of the services the server runs."""
    return _terse_help(address, port).get("SERVICES", [])


def what_commands(address=None, port=None):
    """The built-in commands (help, kill, restart)."""
    return _terse_help(address, port).get("COMMANDS", [])


def what_toplvl(address=None, port=None):
    """The toplevel commands, the ones you run without a service name."""
    return _terse_help(address, port).get("TOP", [])


def log_scrapman_heartbeat(logfile, address, port):
    """The README's example; returns the exit status described above.

    Fixed from the original: the log is opened for appending (it was opened
    for reading), smanager_cmd gets its address and port, losing the server
    at any step is logged instead of crashing on an unset variable, an error
    reply is not logged as a heartbeat, and 'scrapman' must be a whole
    service name, not part of one.
    """
    try:
        # Connect to smanager and ask for simplified help summary
        help_output = smanager_cmd(address, port, "help -s")
        for line in help_output.split("\n"):
            if line.startswith("SERVICES:") and "scrapman" in line.split()[1:]:
                # if scrapman exists as a service, get its heartbeat and log it
                heartbeat = smanager_cmd(address, port, "scrapman get_heartbeat").strip()
                if heartbeat.startswith("ERROR:"):
                    _log(logfile, f"Scrapman heartbeat unavailable at {time.time()}: {heartbeat}")
                    return 1
                _log(logfile, f"Scrapman heartbeat at {time.time()}: {heartbeat}")
                return 0
    except ClientError as exc:
        _log(logfile, f"Couldn't connect to smanager at {time.time()}: {exc}")
        return 2
    # if scrapman doesn't exist as a service, log that
    _log(logfile, f"Scrapman not available at {time.time()}")
    return 1


def _log(logfile, line):
    with open(logfile, "a", encoding="utf-8") as fp:
        fp.write(line + "\n")
    print(line)


def main(argv):
    if len(argv) > 2 or any(arg.startswith("-") for arg in argv):
        print("usage: demo_script.py [HOST[:PORT]] [LOGFILE]", file=sys.stderr)
        return 2
    try:
        host, server_port = parse_address(argv[0], port) if argv else (address, port)
    except ValueError as exc:
        print(f"demo_script.py: {exc}", file=sys.stderr)
        return 2
    logfile = argv[1] if len(argv) > 1 else os.path.join(tempfile.gettempdir(), "useful_log.log")
    try:
        return log_scrapman_heartbeat(logfile, host, server_port)
    except OSError as exc:  # the log cannot be written
        print(f"demo_script.py: cannot write {logfile}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
