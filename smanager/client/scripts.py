"""PyMoJo's surface over smanager's ``scripts`` service, on the blocking Client.

    from smanager.client import Client, Scripts

    class Echojo(Scripts):
        def echo(self, text):
            return self.run("echo", {"text": text})

    with Client("web1", 10000) as server:
        print(Echojo(server).echo("hello world")["stdout"])   # ['hello world']

The rules, PyMoJo's where it had one:

- ``Scripts(client)`` asks for the script index once (``scripts list``) and
  caches it: a dict name -> metadata (Pyjojo's fields plus smanager's: lock_mode,
  timeout, level, and each parameter's required, pattern, default, secret).
  A server without the ``scripts`` service raises CommandFailed here.
- ``get_script(name)`` answers from the cache, None for a name not in it.
  ``use_cache=False`` asks the server (``scripts show NAME``) and puts the answer
  in the cache; a name the server does not run (unknown, unusable, or any other
  error answer, as PyMoJo treated every non-200) gives None and leaves the cache.
- ``get_scripts()`` asks the server for the whole index and does not touch the
  cache (PyMoJo's ``__get_scripts``); ``get_script_names()`` is the cache's names.
- ``run(name, params={})`` returns the result in Pyjojo's shape: ``retcode``,
  ``stdout`` (a list of lines), ``stderr`` (split output only), ``return_values``,
  and smanager's ``run`` id (``truncated``, ``timed_out_after`` or ``error`` when
  they apply).  Values go through ``str()``.  An error answer (an unknown script,
  a parameter not declared, a busy lock, a level too low) raises CommandFailed,
  its message one line.  ``bg=true`` in params returns ``{"run": ID}`` at once.
- ``run`` waits for each line of output at most ``timeout`` seconds: by default
  the script's own timeout (the server ends the run then) plus STOP_MARGIN, or the
  server's default timeout for a script not in the cache.  A run queued longer
  than that (``lock: wait``, ``max_concurrent``) is given up: TimedOut, and the
  client's Ctrl-C takes it out of the queue.
- ``reload()`` runs ``scripts reload`` (the admin level), then refreshes the
  cache; it returns reload's answer: scripts, added, removed, unusable.
- Connection problems raise as every Client request does (CannotConnect,
  TimedOut, ConnectionLost).  A value holding a line break is refused by the
  client (ValueError) before anything is sent.
"""

from .blocking import Client
from .common import CommandFailed, join

SERVER_TIMEOUT = 300.0  # a script's timeout when its block sets none (jojo.py)
STOP_MARGIN = 60.0  # seconds past it: the server's TERM, 5 s, KILL, and the way back


class Scripts:
    """A server's scripts, with PyMoJo's methods; subclass it to name a deployment's
    scripts (see the module's docstring)."""

    def __init__(self, client: Client):
        self.client = client
        self.scripts = self.get_scripts()  # the cache: name -> metadata

    def get_scripts(self) -> dict[str, dict]:
        """Every script the server runs, name -> metadata, asked now (the cache stays)."""
        return {script["name"]: script for script in self.client.run("scripts", "list")}

    def get_script_names(self) -> list[str]:
        """The cached scripts' names, sorted."""
        return sorted(self.scripts)

    def get_script(self, name: str, use_cache: bool = True) -> dict | None:
        """A script's metadata, from the cache or (use_cache=False) from the
        server, into the cache; None for a script there is not."""
        if use_cache:
            return self.scripts.get(name)
        reply = self.client.call(join("scripts", "show", name))
        if not reply.ok:
            return None
        self.scripts[name] = reply.value
        return reply.value

    def run(self, name: str, params: dict | None = None, *,
            timeout: float | None = None) -> dict:
        """Run a script to its end; its result (see the module's docstring)."""
        words = [f"{key}={value!s}" for key, value in (params or {}).items()]
        if timeout is None:
            script_timeout = self.scripts.get(name, {}).get("timeout") or SERVER_TIMEOUT
            timeout = max(self.client.timeout, script_timeout + STOP_MARGIN)
        reply = self.client.call(join("scripts", "run", name, *words),
                                 timeout=timeout, on_chunk=_ignore)
        if not reply.ok:
            raise CommandFailed(reply)
        return reply.value

    def reload(self) -> dict:
        """Rescan the server's script directories, then refresh the cache."""
        reloaded = self.client.run("scripts", "reload")
        self.scripts = self.get_scripts()
        return reloaded


def _ignore(chunk):
    """The output lines as they come: the result carries them all."""
