"""tshell's interactive shell: a prompt, readline editing, history, completion, ``use``.

- The prompt names the server (and the service in use): ``web1:10000> ``.
- Tab completes built-ins, toplevel commands and services as the first
  word, a service's commands after its name, and topics after ``help``;
  script names and their parameters after ``scripts run`` (scriptwords.py).
- The greeting lists the services this connection may use: asked for with
  ``help -s`` once connected (and logged in), as the banner was sent before.
- ``use SERVICE`` sends a bare command of that service to it (``uptime``
  becomes ``systemstatus uptime``) until ``use`` alone; ``help``, ``help
  COMMAND`` and ``restart`` are about it too.  Anything else (another
  service, a toplevel or built-in command) goes as typed.
- Ctrl-C stops the running command (the server answers ``interrupted``) or
  clears the line being typed; ``quit``, ``exit`` or Ctrl-D leave.
- A server that restarted is reconnected to on the next command.
"""

import contextlib
import os

from ..client import ClientError, CommandFailed
from .scriptwords import ScriptWords

LOCAL_WORDS = ("quit", "exit", "use")
HISTORY_LENGTH = 1000
RED, RESET = "\033[31m", "\033[0m"


SECRET_COMMANDS = frozenset({"login", "auth"})  # what they carry must not reach the file


def _keep_out_of_history(line):
    words = line.split(None, 1)
    if not words or words[0].lower() not in SECRET_COMMANDS:
        return
    try:
        import readline
    except ImportError:
        return
    last = readline.get_current_history_length()
    if last:
        readline.remove_history_item(last - 1)


def default_history_file():
    return os.environ.get("TSHELL_HISTORY") or os.path.expanduser("~/.tshell_history")


class Completer:
    """Completion candidates from a client's help index.  Pure but for the index."""

    def __init__(self, client):
        self.client = client
        self.scripts = ScriptWords(client)

    def candidates(self, before_cursor, use=None):
        """Words that complete the last (partial) word of ``before_cursor``."""
        words = before_cursor.split()
        if before_cursor and not before_cursor[-1].isspace():
            partial = words.pop()
        else:
            partial = ""
        try:
            scripted = self.scripts.candidates(words, partial, use)
            if scripted is not None:  # names and parameters: as the server spells them
                return scripted
            options = self._options([word.lower() for word in words], use)
        except ClientError:  # no server to ask: nothing to offer
            return []
        return sorted({word for word in options if word.startswith(partial.lower())})

    def _options(self, words, use):
        client = self.client
        services = client.services()
        if not words:
            first = [*client.builtins(), *client.toplevel(), *services, *LOCAL_WORDS]
            return first + (client.commands(use) if use else [])
        head, rest = words[0], words[1:]
        if head == "use" and not rest:
            return services
        if head == "help":
            rest = [word for word in rest if word != "-s"]
            if not rest:
                return [*services, *client.toplevel(), *client.builtins(), "-s",
                        *(client.commands(use) if use else [])]
            return client.commands(rest[0]) if rest[0] in services and len(rest) == 1 else []
        if head in services and not rest:
            return client.commands(head)
        return []


def route(line, use, commands_of_use, known):
    """The line to send while ``use`` names a service.

    Its commands, and words the server does not know (so a typo gets the
    service's error), go to it; ``help`` and ``restart`` alone are about it,
    and so is ``help WORD`` when WORD would go to it; a built-in, a service,
    or a toplevel command it does not offer goes as typed.
    """
    if not use:
        return line
    words = line.split()
    first = words[0].lower()

    def goes_to_use(word):
        return word.lower() in commands_of_use or word.lower() not in known

    if first == "help":
        flag = words[1:2] if words[1:2] == ["-s"] else []
        topic = words[1 + len(flag):]
        if not topic or (len(topic) == 1 and goes_to_use(topic[0])):
            return " ".join(["help", *flag, use, *topic])
        return line
    if first == "restart" and len(words) == 1 and first not in commands_of_use:
        return f"restart {use}"
    return f"{use} {line}" if goes_to_use(first) else line


class Shell:
    intro = "Connected to {where}. Services: {services}.\n" \
            "Type 'help', 'use SERVICE', Tab to complete; 'quit' or Ctrl-D to leave."

    def __init__(self, client, *, out, colour=False, history_file=None):
        self.client = client
        self.out = out
        self.colour = colour
        self.history_file = history_file
        self.use = None
        self.completer = Completer(client)

    @property
    def prompt(self):
        return f"{self.client.where} {self.use}> " if self.use else f"{self.client.where}> "

    def run(self):
        """Read commands until quit or Ctrl-D; the exit status."""
        self._say(self.intro.format(where=self.client.where,
                                    services=" ".join(self._services()) or "none"))
        with self._readline():
            while True:
                try:
                    line = input(self.prompt)
                except EOFError:
                    self._say("")
                    return 0
                except KeyboardInterrupt:
                    self._say("^C")
                    continue
                _keep_out_of_history(line)
                if not self.handle(line):
                    return 0

    def handle(self, line):
        """Act on one typed line; False when the shell should end."""
        line = line.strip()
        if not line:
            return True
        first, _, rest = line.partition(" ")
        if first.lower() in ("quit", "exit") and not rest.strip():
            return False
        try:
            if first.lower() == "use":
                self._use(rest.strip())
            else:
                commands = self._commands_of_use()
                self._send(route(line, self.use, commands, self._known()))
        except KeyboardInterrupt:
            self._error("interrupted")
        except ClientError as exc:
            self._error(f"{exc} (the next command reconnects)")
        except ValueError as exc:  # a line the client will not send
            self._error(str(exc))
        return True

    def _services(self):
        """What this connection may use.  Not the banner's list: that was sent
        before logging in, so it shows what anybody may see."""
        try:
            return self.client.services()
        except ClientError:  # `help` not allowed here, say: the banner is all there is
            return self.client.banner_services

    def _commands_of_use(self):
        if not self.use:
            return ()
        try:
            return self.client.commands(self.use)
        except CommandFailed:  # the server restarted without it
            gone, self.use = self.use, None
            self._error(f"{gone} is not running any more; 'use' ends")
            return ()

    def _known(self):
        if not self.use:
            return ()
        client = self.client
        return {*client.services(), *client.builtins(), *client.toplevel(), *LOCAL_WORDS}

    def _use(self, name):
        if not name:
            self.use = None
            return
        self.client.refresh()
        services = self.client.services()
        if name.lower() not in services:
            self._error(f"no service {name!r}; services: {' '.join(services) or 'none'}")
            return
        self.use = name.lower()

    def _send(self, line):
        reply = self.client.call(line, on_text=self._write)
        self._write(reply.text)
        self.completer.scripts.sent(line)
        if not reply.ok:
            self._error(reply.error)
        elif line.split()[0].lower() == "restart":
            self.client.refresh()  # commands may have come or gone

    def _write(self, text):
        self.out.write(text)
        self.out.flush()

    def _say(self, text):
        self._write(text + "\n")

    def _error(self, message):
        text = f"ERROR: {message}"
        self._say(f"{RED}{text}{RESET}" if self.colour else text)

    @contextlib.contextmanager
    def _readline(self):
        try:
            import readline
        except ImportError:  # no line editing here; input() still works
            yield
            return
        readline.set_completer_delims(" \t")
        readline.set_completer(self._complete)
        binding = "bind ^I rl_complete" if "libedit" in (readline.__doc__ or "") \
            else "tab: complete"
        readline.parse_and_bind(binding)
        with contextlib.suppress(OSError):
            readline.read_history_file(self.history_file)
        readline.set_history_length(HISTORY_LENGTH)
        try:
            yield
        finally:
            readline.set_completer(None)
            with contextlib.suppress(OSError):
                readline.write_history_file(self.history_file)

    def _complete(self, text, state):
        if state == 0:
            import readline
            before = readline.get_line_buffer()[:readline.get_endidx()]
            self._matches = self.completer.candidates(before, self.use)
        if state >= len(self._matches):
            return None
        match = self._matches[state]
        return match if match.endswith("=") else match + " "  # PARAM= is followed by its value
