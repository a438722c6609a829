"""``smanager`` / ``python -m smanager``: flags -> Config -> run -> exit status.

``smanager users ...`` manages the users file instead (users.py); ``--help``
says so, since argparse never sees that word.

Exit status: 0 after ``kill`` or a signal, 1 when the address cannot be
listened on, 2 for bad flags or an unusable config file.  Each failure is one
line on stderr.
"""

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

from .. import __version__
from ..config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
    ConfigError,
    OneLineParser,
    UsageError,
    bundled_services_dir,
    read_file,
)
from ..server.server import serve
from . import logs
from .users import main as users_main

log = logging.getLogger("smanager")
THREAD_GRACE = 2.0  # seconds worker threads get to finish after shutdown


SERVICES_RULE = ("Services are loaded from the bundled services ({bundled}; not with "
                 "--no-default-services) and from each --services DIR, never from the "
                 "current directory.")
EPILOG = ("Users: 'smanager users --users-file FILE add NAME' creates the users file "
          "and adds a user; 'smanager users --help' lists the rest (list, password, "
          "level, remove). Exit status: 0 after 'kill' or a signal, 1 if it cannot "
          "listen, 2 for bad flags or config.")


def build_parser():
    rule = SERVICES_RULE.format(bundled=bundled_services_dir())  # where they are here
    parser = OneLineParser(prog="smanager", description=f"A remote service manager. {rule}",
                           epilog=EPILOG, argument_default=argparse.SUPPRESS)
    add = parser.add_argument
    add("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    add("--port", type=int, help=f"TCP port, 0 for any free one (default {DEFAULT_PORT})")
    add("--services", action="append", metavar="DIR",
        help="also load the services in DIR (repeatable)")
    add("--no-default-services", action="store_true", help="do not load the bundled services")
    add("--config", metavar="FILE", help="TOML file; every flag has a key of the same name")
    add("--log-level", type=str.upper, choices=LOG_LEVELS)
    add("--log-file", metavar="FILE",
        help="append the log to FILE ('-': stderr, the default); SIGUSR1 reopens it")
    add("--log-format", choices=LOG_FORMATS, help="text (default), or json: an object a line")
    add("--command-timeout", type=float, metavar="SECONDS",
        help="time limit of a command (default 30)")
    add("--shutdown-timeout", type=float, metavar="SECONDS",
        help="time given to running commands and to each service hook (default 10)")
    add("--max-line", type=int, metavar="BYTES", help="longest line accepted (default 65536)")
    add("--oneshot-delay", type=float, metavar="SECONDS",
        help="silence after an unterminated first line before it runs (default 0.2)")
    add("--insecure", action="store_true",
        help="listen beyond loopback although anyone who reaches the port can run every command")
    add("--unix-socket", metavar="PATH", help="also listen on this Unix socket")
    add("--unix-socket-mode", metavar="OCTAL", help="its permissions (default 600)")
    add("--no-tcp", dest="tcp", action="store_false", help="listen only on the Unix socket")
    add("--max-connections", type=int, metavar="N", help="connections at once (default 1000)")
    add("--max-connections-per-address", type=int, metavar="N",
        help="connections at once from one address (default 100)")
    add("--backlog", type=int, metavar="N",
        help="connections waiting to be accepted, for bursts (default 1024)")
    add("--idle-timeout", type=float, metavar="SECONDS",
        help="close a connection that sends and runs nothing this long (default 3600)")
    add("--line-timeout", type=float, metavar="SECONDS",
        help="close a connection that does not finish a line this long after it began "
             "(default 120)")
    add("--send-timeout", type=float, metavar="SECONDS",
        help="drop a client that leaves replies unread this long (default 60)")
    add("--tls-cert", metavar="FILE", help="certificate (PEM): the TCP listener speaks TLS")
    add("--tls-key", metavar="FILE", help="its private key (PEM)")
    add("--tls-client-ca", metavar="FILE",
        help="require client certificates signed by this CA (mutual TLS)")
    add("--users-file", metavar="FILE",
        help="users and their levels, managed with 'smanager users': connections must log "
             "in; a file that is missing, unreadable or names nobody stops the start")
    add("--unauthenticated", action="append", metavar="COMMAND",
        help="a command (or service) connections may run before logging in, repeatable "
             "(default: help)")
    add("--login-max-line", type=int, metavar="BYTES",
        help="longest line before logging in (default 1024)")
    add("--login-max-commands", type=int, metavar="N",
        help="lines accepted before logging in (default 10)")
    add("--login-timeout", type=float, metavar="SECONDS",
        help="close a connection not logged in after this long (default 60)")
    add("--login-backoff-max", type=float, metavar="SECONDS",
        help="longest wait forced on an address after failed logins (default 60)")
    add("--audit-log", metavar="FILE", help="write one line per command to FILE ('-': stderr)")
    add("--audit-log-max-bytes", type=int, metavar="BYTES",
        help="rotate the audit file at this size (default 10 MiB)")
    add("--audit-log-backups", type=int, metavar="N", help="rotated files kept (default 5)")
    add("--version", action="version", version=f"smanager {__version__}")
    return parser


def make_config(argv):
    flags = vars(build_parser().parse_args(argv))
    config_file = flags.pop("config", None)
    settings = read_file(config_file) if config_file else {}
    if config_file:
        flags["config_file"] = str(Path(config_file).absolute())
    return Config().updated(settings).updated(flags)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["users"]:
        return users_main(argv[1:])
    if argv[:1] == ["check-config"]:
        # Imported here, not at the top: check.py imports this module's flags.
        from .check import main as check_main
        return check_main(argv[1:])
    if argv[:1] in (["completion"], ["__complete"]):  # the script, and its Tab questions
        # Imported here, not at the top: completion.py reads this module's flags too.
        from .completion import main as completion_main
        return completion_main(argv)
    try:
        config = make_config(argv)
    except (UsageError, ConfigError) as exc:
        print(f"smanager: error: {exc}", file=sys.stderr)
        return 2
    try:
        reopen_logs = logs.setup(config.log_level, config.log_file, config.log_format)
    except OSError as exc:
        print(f"smanager: error: cannot open log file {config.log_file}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        _run(config, reopen_logs)
    except ConfigError as exc:
        print(f"smanager: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = f"{config.host}:{config.port}" if config.tcp else config.unix_socket
        print(f"smanager: cannot listen on {where}: {reason}", file=sys.stderr)
        return 1
    if _threads_still_running(THREAD_GRACE):
        # A command overran its time limit and its thread is still running; it
        # cannot be stopped from outside, and must not keep the process alive.
        log.warning("abandoning commands still running in worker threads")
        logging.shutdown()
        os._exit(0)
    return 0


def _threads_still_running(seconds):
    """Give worker threads a moment to notice the shutdown (idle ones exit at
    once); true if any is still busy after that."""
    deadline = time.monotonic() + seconds
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    return any(thread.is_alive() for thread in others)


def _run(config, reopen_logs):
    # Not asyncio.run(): its final wait for worker threads has no time limit.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(config, reopen_logs))
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a task that swallows its cancellation must not keep us alive
            loop.run_until_complete(asyncio.wait(tasks, timeout=config.shutdown_timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
