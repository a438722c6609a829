"""``smanager check-config``: the configuration checked as the server would start
with it, without starting it (like ``nginx -t`` and ``sshd -t``).

Rules:

1. It takes the server's flags, ``--config FILE`` and every other, and reads
   them as the server does: the file, then the flags over it.
2. It finds every problem, not only the first, each in the words the server
   uses: every top-level setting is checked on its own (an unknown one with the
   nearest known one suggested), each ``[service.NAME]`` table too; then the
   settings that go together (something to listen on, TLS and its files, the
   users file, exposure beyond loopback, the log and audit files, the Unix
   socket's directory, ``services`` directories); then the tables of the
   bundled proc, scripts and monitor through the readers they use at start
   (check_services.py).
   A table naming no loaded service is a warning: the server starts without it.
3. Nothing is started: no socket bound, no program run, no file or directory
   written (no bytecode either).  Service files are imported, as the server
   imports them, but no service is created.
4. Good: the effective settings on stdout, ``key = value`` in TOML, defaults
   included (``[service.NAME]`` tables by name only: they may hold passwords),
   then ``configuration OK``; status 0.  Bad: on stderr, one line a problem,
   ``smanager: WHERE: problem`` (WHERE is the file, or "command line" for a
   flag; for settings that go together, the file if there is one; a file that
   cannot be read or parsed is one line naming it); status 2.
   Warnings go to stderr too and leave the status alone.
5. ``smanager --config FILE`` itself stops at the first problem of the
   top-level settings, in the same words; a mistake in a service's table leaves
   that service failed (``help`` shows it) while the others run.
"""

import difflib
import errno
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

from ..config import Config, ConfigError, UsageError, bundled_services_dir, read_file
from ..core.loader import import_file, service_files, service_name
from ..server.limits import exposed
from ..server.server import _access, _tls_context  # the server's own words for these
from .check_services import READERS
from .main import build_parser

COMMAND_LINE = "command line"
SETTINGS = [f.name for f in fields(Config) if f.name not in ("service", "config_file")]


class Report:
    """The lines to print, in the order found; problems decide the exit status."""

    def __init__(self):
        self.lines, self.problems = [], 0

    def problem(self, where, text):
        self.lines.append(f"smanager: {where}: {text}" if where else f"smanager: {text}")
        self.problems += 1

    def warning(self, where, text):
        self.lines.append(f"smanager: {where}: warning: {text}")


def check(flags: dict) -> tuple[Config | None, Report]:
    """The effective Config (None if it has a problem) and the Report of FLAGS,
    the server's flags as parsed (``config`` naming the file, if any)."""
    report, flags = Report(), dict(flags)
    config_file = flags.pop("config", None)
    where = config_file or COMMAND_LINE
    try:
        settings = read_file(config_file) if config_file else {}
    except ConfigError as exc:
        report.problem(None, str(exc))  # the message names the file
        return None, report
    bad = set()
    config = Config().updated(_good(settings, config_file, report, bad)) \
        .updated(_good(flags, COMMAND_LINE, report, bad))
    if config_file:
        config = config.updated({"config_file": str(Path(config_file).absolute())})
    _settings_together(config, bad, where, report)
    if "services" not in bad and "no_default_services" not in bad:
        _service_tables(config, where, report)
    return (None if report.problems else config), report


def _good(settings, where, report, bad):
    """SETTINGS without those that cannot be used, each reported (and named in BAD)."""
    good = {}
    for key, value in settings.items():
        pieces = value.items() if key == "service" and isinstance(value, dict) else [(None, value)]
        for name, piece in pieces:
            attempt = {name: piece} if name is not None else piece
            try:
                Config().updated({key: attempt})
            except ConfigError as exc:
                report.problem(where, _hinted(key, str(exc)))
                bad.add(key.replace("-", "_"))
            else:
                good[key] = {**good.get(key, {}), **attempt} if name is not None else attempt
    return good


def _hinted(key, message):
    close = difflib.get_close_matches(key.replace("-", "_"), SETTINGS, n=1)
    if message.startswith("unknown setting") and close:
        return f"{message} (did you mean {close[0]!r}?)"
    return message


def _settings_together(config, bad, where, report):
    """Server.start()'s refusals, and what it would fail to open, said as it says them."""
    def usable(*keys):
        return not bad.intersection(keys)
    if usable("tcp", "unix_socket") and not config.tcp and not config.unix_socket:
        report.problem(where, "nothing to listen on: --no-tcp needs --unix-socket PATH")
    for directory in map(Path, config.services if usable("services") else ()):
        if not directory.is_dir():
            report.problem(where, f"--services {directory}: " + (
                "a file, not a directory of services" if directory.exists()
                else "no such directory"))
    tls = usable("tls_cert", "tls_key", "tls_client_ca")
    if tls and config.tls_key and not config.tls_cert:
        report.problem(where, "--tls-key needs --tls-cert (the certificate)")
    elif tls and config.tls_cert and not config.tls_key:
        report.problem(where, "--tls-cert needs --tls-key (its private key)")
    elif tls and config.tls_client_ca and not config.tls_cert:
        report.problem(where, "--tls-client-ca needs --tls-cert and --tls-key: mutual TLS "
                              "is TLS first")
    elif tls and config.tls_cert:
        _attempt(where, report, _tls_context, config)
    access = _attempt(where, report, _access, config) \
        if usable("users_file", "unauthenticated") else None
    authenticated = access is not None and access.closed or bool(config.tls_client_ca)
    if (access is not None and usable("host", "tcp", "insecure") and config.tcp
            and exposed(config.host) and not (config.insecure or authenticated)):
        report.problem(where, (
            f"refusing to listen on {config.host or 'every address'}: anyone who can "
            "reach it could run every command, kill included. Listen on 127.0.0.1 or a "
            "Unix socket (--unix-socket), add users (smanager users add NAME, then "
            "--users-file FILE), require client certificates (--tls-cert, --tls-key, "
            "--tls-client-ca), or pass --insecure if only trusted hosts can reach this "
            "network"))
    for key, what in (("log_file", "log file"), ("audit_log", "audit log")):
        path = getattr(config, key)
        why = usable(key) and path not in ("", "-") and _unwritable(Path(path))
        if why:
            report.problem(where, f"cannot open {what} {path}: {why}")
    socket_dir = Path(config.unix_socket).parent
    if usable("unix_socket") and config.unix_socket and not socket_dir.is_dir():
        report.problem(where, f"cannot listen on {config.unix_socket}: "
                              f"{os.strerror(errno.ENOENT)}")


def _attempt(where, report, make, config):
    try:
        return make(config)
    except ConfigError as exc:
        report.problem(where, str(exc))
        return None


def _unwritable(path):
    """Why a log could not be opened for appending, or None; it is not
    created: an existing file is opened without writing, else its directory looked at."""
    try:
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC))
        elif not path.parent.is_dir():
            return os.strerror(errno.ENOENT)
        elif not os.access(path.parent, os.W_OK | os.X_OK):
            return os.strerror(errno.EACCES)
    except OSError as exc:
        return exc.strerror
    return None


def _service_tables(config, where, report):
    """Each [service.NAME] table: of a loaded service, and through its reader if bundled."""
    files = {}  # service name -> its file, the first one to claim the name
    for path in service_files(config.service_dirs):
        scanned = import_file(path)
        if scanned.error:
            report.problem(path, f"cannot load its services: {scanned.error}")
            files.setdefault(scanned.label, path)  # the server counts it as a failed service
        for cls in scanned.classes:
            files.setdefault(service_name(cls), path)
    bundled = bundled_services_dir().resolve()
    for name, table in config.service.items():
        if name not in files:
            report.warning(where, f"[service.{name}]: no service of that name is loaded "
                                  "(a typo?)")
        elif name in READERS and files[name].parent == bundled:
            for problem in READERS[name](table):
                report.problem(where, problem)


def effective(config: Config) -> list[str]:
    """Rule 4's lines: every top-level setting, then the service tables by name."""
    source = f"of {config.config_file}" if config.config_file else "(no --config)"
    lines = [f"# effective settings {source}, defaults included"]
    lines += [f"{key} = {_toml(getattr(config, key))}" for key in SETTINGS]
    if config.service:
        lines.append("# [service.NAME] tables (not shown: they may hold passwords): "
                     + ", ".join(config.service))
    return lines


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def main(argv) -> int:
    parser = build_parser()
    parser.prog = "smanager check-config"
    parser.description = ("Check the configuration the server would start with (these flags "
                          "and --config FILE) without starting it, and print every problem.")
    parser.epilog = ("Exit status: 0 and the effective settings if it can be used; 2 and "
                     "one line a problem ('smanager: FILE: problem') if not.")
    try:
        flags = vars(parser.parse_args(argv))
    except UsageError as exc:
        print(f"smanager: error: {exc}", file=sys.stderr)
        return 2
    # The problems are said here, once; the loaders' logs would repeat them.
    # And collectors_dir's files are imported with no __pycache__ written (rule 3).
    logging.disable(logging.CRITICAL)
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        config, report = check(flags)
    finally:
        logging.disable(logging.NOTSET)
        sys.dont_write_bytecode = writes_bytecode
    for line in report.lines:
        print(line, file=sys.stderr)
    if config is None:
        return 2
    print("\n".join(effective(config) + ["configuration OK"]))
    return 0
