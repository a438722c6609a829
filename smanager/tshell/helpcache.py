"""The help index tshell remembers of each server, for Tab completion in bash.

- An interactive session saves what its client learned of the server's help
  index (``help -s`` and ``help -s SERVICE`` answers: services, toplevel and
  built-in commands, and the commands of each service it completed) when it
  ends.  Nothing is ever asked for the cache's sake.
- Completion (completion.py) reads it and never connects: a server no
  session has seen has no entry, and so nothing to offer.
- The file is ``$XDG_CACHE_HOME/tshell/help-index.json`` (``~/.cache/...``),
  one JSON object: ``{"servers": {WHERE: {"saved": SECONDS, "index": {TOPIC:
  FIELDS}}}}`` with WHERE as messages name the server (``web1:10000``, a
  socket's path) and TOPIC ``""`` or a service's name.  Readable by its owner
  only; written whole to a temporary file that then replaces it.
- A session's answers replace the saved ones of the same topics; the other
  topics stay, less the services the server no longer lists.  At most
  MAX_SERVERS are kept, the ones saved last.
- A cache never stands in tshell's way: a file that cannot be read is an
  empty cache, and one that cannot be written is left as it was.
"""

import contextlib
import json
import os
import tempfile
import time

MAX_SERVERS = 200


def cache_file():
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative one is ignored
        base = os.path.expanduser("~/.cache")
    return os.path.join(base, "tshell", "help-index.json")


def load():
    """Every saved server: WHERE -> {TOPIC: FIELDS}; {} when there is no usable file."""
    servers = {where: _index_of(entry) for where, entry in _saved_servers().items()}
    return {where: index for where, index in servers.items() if index}


def save(client):
    """Remember what CLIENT (a smanager.client.Client) has learned of its server's help index."""
    learned = dict(client._index)  # common.Endpoint's cache of `help -s` answers, by topic
    if not learned:
        return
    servers = _saved_servers()
    old = _index_of(servers.get(client.where))
    servers[client.where] = {"saved": time.time(), "index": merged(old, learned)}
    kept = sorted(servers.items(), key=lambda item: _saved_at(item[1]))[-MAX_SERVERS:]
    with contextlib.suppress(OSError):
        _write(cache_file(), {"servers": dict(kept)})


def merged(old, learned):
    """LEARNED's topics over OLD's, without the services the server no longer lists."""
    index = {**old, **learned}
    services = index.get("", {}).get("SERVICES")
    if services is None:
        return index
    return {topic: fields for topic, fields in index.items()
            if topic == "" or topic in services}


def _index_of(entry):
    """A saved entry's index, or {} for one in any other shape (a file edited by hand)."""
    index = entry.get("index") if isinstance(entry, dict) else None
    if not isinstance(index, dict):
        return {}
    return {topic: fields for topic, fields in index.items()
            if isinstance(fields, dict) and all(
                isinstance(names, list) and all(isinstance(name, str) for name in names)
                for names in fields.values())}


def _saved_servers():
    try:
        with open(cache_file(), encoding="utf-8") as file:
            servers = json.load(file).get("servers")
    except (OSError, ValueError, AttributeError):  # none, unreadable, not JSON, not an object
        return {}
    return servers if isinstance(servers, dict) else {}


def _saved_at(entry):
    saved = entry.get("saved") if isinstance(entry, dict) else None
    return saved if isinstance(saved, (int, float)) else 0


def _write(path, content):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".help-index.", dir=directory)  # mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(content, file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
