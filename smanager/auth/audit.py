"""The audit trail: one line per command, to a file that rotates by size, or to stderr.

    2026-11-22T14:03:07.412Z 127.0.0.1:50514 user=- ok 0.4ms "systemstatus echo hi"
    2026-11-22T14:03:09.020Z 127.0.0.1:50514 user=- error="unknown command 'x' (try 'help')" 0.1ms "x"

Fields: when the command began (UTC), the client, the user (a TLS client
certificate's name, else ``-``), the outcome, how long it took, and the command as
JSON text.  Blank lines are not commands and are not written.  Secrets never are:

- a parameter a service marks with ``@filtered`` is written as ``FILTERED``
  (so are ``name=value`` words for it), and so are the words the service
  names for one request with ``@filtered(by=...)`` (a script's secret);
- a line that names no command (a mistyped name, a service that failed to
  load) is written as its first word, every other word ``FILTERED``: nothing
  says where its secrets are.  Its error does not echo a masked word either;
- the file is created with mode 0600, and so is each one that replaces it at
  rotation: opened with that mode, never readable by others even briefly.
"""

import json
import logging
import logging.handlers
import os
import sys
import time

from ..wire import errors
from ..wire.protocol import ParseError, Request, parse_line

FILTERED = "FILTERED"


def _word(user):
    """A user name as one word of the line (it comes from a certificate)."""
    return json.dumps(user) if user and not user.isidentifier() \
        else user or "-"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are created 0600 (the umask may only
    narrow that); a file that already exists keeps the mode it has."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


class Audit:
    def __init__(self, destination, max_bytes, backups, catalog_of):
        self._catalog_of = catalog_of  # () -> the Catalog of the moment, to find secrets
        self.logger = logging.getLogger(f"smanager.audit.{id(self)}")
        self.logger.propagate = False  # the trail is not the server's log
        self.logger.setLevel(logging.INFO)
        if destination == "-":
            self.handler = logging.StreamHandler(sys.stderr)
        else:
            self.handler = PrivateRotatingFileHandler(
                destination, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.logger.addHandler(self.handler)

    def close(self):
        self.logger.removeHandler(self.handler)
        self.handler.close()

    def record(self, started, raw, peer, error):
        """One finished command: ``started`` is its time.time(), ``error`` None if it worked."""
        took = (time.time() - started) * 1000
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
        millis = int(started * 1000) % 1000
        words, hidden = self._written(raw)
        if error is None:
            outcome = "ok"
        else:
            outcome = f"error={json.dumps(errors.one_line(_unechoed(error, hidden)))}"
        self.logger.info("%s.%03dZ %s user=%s %s %.1fms %s", when, millis, peer.address,
                         _word(peer.user), outcome, took,
                         json.dumps(words))  # ASCII: no raw line breaks

    def shown(self, raw):
        """The request as it may be written down: secrets replaced."""
        return self._written(raw)[0]

    def _written(self, raw):
        """(the request as it may be written down, the words masked in it)."""
        try:
            request = parse_line(raw)
        except ParseError:  # still find the command, to keep its secrets out
            line = raw.decode("utf-8", "replace").strip()
            request = Request(tuple(line.split()), line) if line else None
        if request is None:
            return "", ()
        words = request.words
        target = self._catalog_of().resolve(words)
        if type(target) is str:  # no command: who knows where its secrets are
            return " ".join([words[0], *[FILTERED] * (len(words) - 1)]), words[1:]
        command = target.command
        if not (command.secret or command.secret_words):
            return request.line[:errors.LINE_LIMIT], ()
        prefix = words[:len(words) - len(target.words)]
        shown = command.filtered(target.words, FILTERED,
                                 target.service.instance if target.service else None)
        hidden = [word for word, seen in zip(target.words, shown, strict=True) if seen != word]
        return " ".join([*prefix, *shown]), hidden


def _unechoed(error, hidden):
    """An error with the words masked in the command masked too, where it quotes
    them as errors.shown() does (unknown command 'unlokc' for vault)."""
    for word in hidden:
        error = error.replace(errors.shown(word), FILTERED)
    return error
