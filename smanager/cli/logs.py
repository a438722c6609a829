"""Where the server's log goes, and in what form.

1. To stderr, or with ``--log-file FILE`` (log_file) appended to FILE
   instead.  SIGUSR1 reopens FILE: rename it, send SIGUSR1, and the next
   line starts a new FILE (logrotate without copytruncate).  A FILE that
   cannot be reopened keeps the old one in use, and says so.
2. ``--log-format text`` (log_format): ``TIME LEVEL LOGGER: MESSAGE``, a
   traceback on the lines after.  ``json``: one object per line, with time
   (ISO 8601, UTC), level, logger, message, and exc (the traceback) when
   there is one.
3. When stderr is systemd's journal (JOURNAL_STREAM names its device and
   inode), every line written there starts with its syslog priority ``<N>``
   (DEBUG 7, INFO 6, WARNING 4, ERROR 3, CRITICAL 2), and text lines leave
   the time out: the journal records its own.  A JOURNAL_STREAM that names
   another file (stderr redirected by a script) is not the journal.
"""

import datetime
import json
import logging
import os
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
              (logging.INFO, 6))  # syslog's; anything lower is DEBUG, 7


def setup(level, log_file="", log_format="text"):
    """Send the root logger's records at ``level`` and above where the rules
    say; returns what SIGUSR1 calls (the file's reopen), or None for stderr.
    OSError if the file cannot be opened."""
    handler = make_handler(log_file, log_format)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return getattr(handler, "reopen", None)


def make_handler(log_file="", log_format="text", stream=None, environ=None):
    """The handler of rules 1-3, not yet attached to any logger."""
    if log_file and log_file != "-":
        handler = ReopenedFile(log_file)
        handler.setFormatter(JsonFormatter() if log_format == "json"
                             else logging.Formatter(TEXT_FORMAT))
        return handler
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    journal = is_journal(stream, os.environ if environ is None else environ)
    if log_format == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(JOURNAL_TEXT_FORMAT if journal else TEXT_FORMAT)
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    return handler


def is_journal(stream, environ):
    """True if ``stream`` is the journal's, as JOURNAL_STREAM=DEV:INO says."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # no descriptor, or no such variable
        return False


def priority(levelno):
    return next((number for level, number in PRIORITIES if levelno >= level), 7)


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each behind the record's ``<N>`` (rule 3): a
    traceback's lines keep the priority of the line they belong to."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def format(self, record):
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (rule 2)."""

    def format(self, record):
        entry = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
                 .isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class ReopenedFile(logging.FileHandler):
    """A log file SIGUSR1 reopens (rule 1)."""

    def __init__(self, path):
        super().__init__(path, mode="a", encoding="utf-8")

    def reopen(self):
        try:
            stream = self._open()
        except OSError as exc:
            logging.getLogger("smanager").warning(
                "cannot reopen log file %s: %s; still writing to the old one",
                self.baseFilename, exc.strerror or exc)
            return
        with self.lock:
            old, self.stream = self.stream, stream
        old.close()
        logging.getLogger("smanager").info("log file %s reopened", self.baseFilename)
