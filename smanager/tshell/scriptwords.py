"""Completing the ``scripts`` service's words: script names, then their parameters.

- After ``scripts run``, ``scripts show`` or ``scripts runs`` (or ``run``, ``show``,
  ``runs`` under ``use scripts``): the names of the scripts, as the server spells
  them (case counts, as it does for the server).
- After ``scripts run NAME``: ``PARAM=`` for each parameter NAME declares, and
  ``bg=``, less those already typed; nothing while a value is being typed, or
  for a NAME the server does not run.
- The index comes from the server once, in JSON mode (``scripts list``), and is
  kept for the session, until the shell sends ``scripts reload`` or a
  ``restart`` (``sent()``).  A server without a ``scripts`` service, one whose
  ``scripts list`` fails or answers in another shape, gives no words; a lost
  connection raises the client's ClientError, for the Completer to swallow, and
  is asked again next time.
"""

NAMED_BY = ("run", "show", "runs")  # the scripts commands whose first word is a script's name


class ScriptWords:
    """A client's script index, for completion."""

    def __init__(self, client):
        self.client = client
        self._params = None  # script name -> its parameters' names, once asked

    def sent(self, line):
        """The shell sent LINE: after a reload or a restart, ask again."""
        words = [word.lower() for word in line.split()]
        if words[:1] == ["restart"] or words == ["scripts", "reload"]:
            self._params = None

    def candidates(self, words, partial, use=None):
        """The words completing PARTIAL after WORDS (as typed), or None when
        WORDS are not about a script (the Completer's own rules apply)."""
        if use == "scripts" and words and words[0].lower() in NAMED_BY:
            words = ["scripts", *words]
        if len(words) < 2 or words[0].lower() != "scripts" or words[1].lower() not in NAMED_BY:
            return None
        if len(words) == 2:
            return sorted(name for name in self._index() if name.startswith(partial))
        if words[1].lower() != "run" or "=" in partial or words[2] not in self._index():
            return []
        typed = {word.partition("=")[0] for word in words[3:]}
        keys = [*self._index()[words[2]], "bg"]
        return sorted(f"{key}=" for key in keys if key not in typed and key.startswith(partial))

    def _index(self):
        if self._params is None:
            self._params = self._ask() if "scripts" in self.client.services() else {}
        return self._params

    def _ask(self):
        reply = self.client.call("scripts list")
        return {script["name"]: [param["name"] for param in _named(script.get("params"))]
                for script in _named(reply.value if reply.ok else None)}


def _named(items):
    """The dicts with a string "name" in ITEMS, a list (nothing from another shape)."""
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)]
