"""tshell's words for Tab completion in bash (the protocol is bashcomplete.py's).

- Its flags and their values come from its parser (arguments.py).
- The server (``HOST[:PORT]``, and each one in ``--hosts a,b``) is one of
  the servers in the help-index cache (helpcache.py), written as a user
  would (``web1``, ``web1:10001``, ``/run/smanager.sock``); once it has a
  ``/`` it is a file name, a Unix socket's path.
- The command of ``-c``, ``--command`` and ``--place`` is completed as the
  interactive shell completes a line (shell.Completer), from the cached index
  of the servers the words name (``--hosts``, ``--hosts-file``'s hosts, else
  the address or the local server): all of them together when there are
  several.  ``quit``, ``exit`` and ``use`` are the shell's own and
  are not offered.  A service that is the only match comes with each of its
  commands (``systemstatus uptime``), so that a quote stays open for them.
- Completion never connects: a server the cache does not know has no words,
  nor does a service whose commands no session asked for.
"""

from ..client import ClientError, fleet
from ..client.addresses import parse_address, where_of
from ..config import DEFAULT_HOST, DEFAULT_PORT
from . import arguments, bashcomplete, helpcache
from .bashcomplete import Answer, from_parser
from .shell import LOCAL_WORDS, Completer


def answer(argv, out):
    """tshell's answer to bash's question ARGV (POINT WORD LINE); the exit status."""
    return bashcomplete.answer(argv, out, words)


def words(typed, partial):
    """The Answer completing PARTIAL after TYPED, tshell's arguments so far."""
    return from_parser(arguments.build_parser(), typed, partial, _values)


def _values(action, partial, given):
    if action.dest in ("command", "place"):
        saved = helpcache.load()
        indexes = [saved[where] for where in _servers(given) if where in saved]
        return _commands(partial, SavedIndex(indexes)) if indexes else Answer()
    if action.dest == "hosts":
        head = partial[:len(partial) - len(partial.rpartition(",")[2])]
        return Answer("words", [head + host for host in _cached_hosts()
                                if (head + host).startswith(partial)])
    if action.dest == "address":
        if "/" in partial:
            return Answer("files")
        return Answer("words", [host for host in _cached_hosts() if host.startswith(partial)])
    return None


def _commands(partial, index):
    last = "" if not partial or partial[-1].isspace() else partial.split()[-1]
    head = partial[:len(partial) - len(last)]
    found = Completer(index).candidates(partial)
    if not head.strip():
        found = [word for word in found if word not in LOCAL_WORDS]
        if len(found) == 1 and found[0] in index.services():
            found = [f"{found[0]} {command}" for command in _commands_of(index, found[0])] \
                or found
    return Answer("words", [head + word for word in found])


def _commands_of(index, service):
    try:
        return index.commands(service)
    except ClientError:
        return []


def _servers(given):
    """Where the servers the arguments name are, as the cache keys them."""
    if "hosts_file" in given:
        try:
            with open(given["hosts_file"][-1], encoding="utf-8") as file:
                names = fleet.read_hosts_file(file.read())
        except (OSError, UnicodeError):
            names = []
    elif "hosts" in given:
        names = given["hosts"][-1].split(",")
    else:
        names = given.get("address", [DEFAULT_HOST])[-1:]
    wheres = []
    for name in names:
        try:
            wheres.append(where_of(*parse_address(name)))
        except ValueError:
            continue
    return wheres


def _cached_hosts():
    """The cached servers as a user writes them: no port when it is the default."""
    hosts = set()
    for where in helpcache.load():
        try:
            host, port = parse_address(where)
        except ValueError:
            continue
        hosts.add(host if port == DEFAULT_PORT and ":" not in host else where)
    return sorted(hosts)


class NotSaved(ClientError):
    """A topic no session saved: to the Completer, as if no server could be asked."""


class SavedIndex:
    """Saved help indexes, standing in for a client in shell.Completer: the
    union of every server's names.  It has nothing else to ask."""

    def __init__(self, indexes):
        self.indexes = indexes

    def services(self):
        return self._names("", "SERVICES")

    def toplevel(self):
        return self._names("", "TOP")

    def builtins(self):
        return self._names("", "COMMANDS")

    def commands(self, service):
        return self._names(service, "COMMANDS")

    def call(self, line):  # the scripts' names are never saved
        raise NotSaved(line)

    def _names(self, topic, field):
        saved = [index[topic] for index in self.indexes if topic in index]
        if not saved:
            raise NotSaved(topic)
        return sorted({name for fields in saved for name in fields.get(field, [])})
