"""The audit trail: one line per command, to a file that rotates by size, or to stderr.

    2026-11-22T14:03:07.412Z 127.0.0.1:50514 user=- ok 0.4ms "systemstatus echo hi"
    2026-11-22T14:03:09.020Z 127.0.0.1:50514 user=- error="unknown command 'x' (try 'help')" 0.1ms "x"

Fields: when the command began (UTC), the client, the user (a TLS client
certificate's name, else ``-``), the outcome, how long it took, and the command as
JSON text.  A parameter a service marks with ``@filtered`` is written as
``FILTERED`` (so are ``name=value`` words for it).  Blank lines are not
commands and are not written.
"""

import json
import logging
import logging.handlers
import sys
import time

from ..wire import errors
from ..wire.protocol import ParseError, Request, parse_line

FILTERED = "FILTERED"


def _word(user):
    """A user name as one word of the line (it comes from a certificate)."""
    return json.dumps(user) if user and not user.isidentifier() \
        else user or "-"


class Audit:
    def __init__(self, destination, max_bytes, backups, catalog_of):
        self._catalog_of = catalog_of  # () -> the Catalog of the moment, to find secrets
        self.logger = logging.getLogger(f"smanager.audit.{id(self)}")
        self.logger.propagate = False  # the trail is not the server's log
        self.logger.setLevel(logging.INFO)
        if destination == "-":
            self.handler = logging.StreamHandler(sys.stderr)
        else:
            self.handler = logging.handlers.RotatingFileHandler(
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
        outcome = "ok" if error is None else f"error={json.dumps(errors.one_line(error))}"
        self.logger.info("%s.%03dZ %s user=%s %s %.1fms %s", when, millis, peer.address,
                         _word(peer.user), outcome, took,
                         json.dumps(self.shown(raw)))  # ASCII: no raw line breaks

    def shown(self, raw):
        """The request as it may be written down: secrets replaced."""
        try:
            request = parse_line(raw)
        except ParseError:  # still find the command, to keep its secrets out
            line = raw.decode("utf-8", "replace").strip()
            request = Request(tuple(line.split()), line)
        if request is None:
            return ""
        target = self._catalog_of().resolve(request.words)
        if type(target) is str or not target.command.secret:
            return request.line[:errors.LINE_LIMIT]
        prefix = request.words[:len(request.words) - len(target.words)]
        return " ".join([*prefix, *target.command.filtered(target.words, FILTERED)])
