"""Help text, in the seed's layout.  Pure: it reads a Catalog and returns text.

    help                       everything (services, toplevel and built-in commands)
    help -s                    the same as three lines: TOP:, SERVICES:, COMMANDS:
    help SERVICE               one service's commands (also: SERVICE help, SERVICE)
    help -s SERVICE            the same as two lines: COMMANDS:, TOP:
    help SERVICE COMMAND       a command's synopsis and whole docstring
    help COMMAND               the same for a toplevel or built-in command

Listings use each docstring's first line; services are listed by name, and a
service's commands with ``help`` first, then its own, then its toplevel ones.
"""

from ..wire import errors
from ..wire.protocol import SEPARATOR, Preformatted

TITLE = "SManager"
SERVICE_RULE = "-" * 40
INDENT = "    "
SERVICE_HELP_SUMMARY = "Print the help dialogue for this service"


def _entry(name, summary, indent=INDENT):
    return f"{indent}{name}: {summary}" if summary else f"{indent}{name}"


def _toplevel_by_service(catalog):
    """Reachable toplevel commands, grouped by service name, each group sorted."""
    entries = sorted(catalog.toplevel.items(), key=lambda item: (item[1][0].name, item[0]))
    return [(name, command) for name, (_, command) in entries]


def full(catalog):
    lines = [SEPARATOR, TITLE, SEPARATOR, "Toplevel exposed commands:"]
    lines += [_entry(name, cmd.summary) for name, cmd in _toplevel_by_service(catalog)]
    lines += [SEPARATOR, "Services:"]
    lines += [_entry(name, catalog.services[name].doc.partition("\n")[0])
              for name in sorted(catalog.services)]
    lines += ["Commands:"]
    lines += [_entry(name, cmd.summary) for name, cmd in catalog.listed_builtins().items()]
    if catalog.failures:
        lines += [SEPARATOR, "Failed to load:"]
        failures = sorted(catalog.failures.items())
        lines += [_entry(name, failure.reason) for name, failure in failures]
    return Preformatted("\n".join(lines) + "\n\n")  # the seed's layout ends in a blank line


def terse(catalog):
    return "\n".join([
        "TOP: " + " ".join(name for name, _ in _toplevel_by_service(catalog)),
        "SERVICES: " + " ".join(sorted(catalog.services)),
        "COMMANDS: " + " ".join(catalog.listed_builtins()),
    ]) + "\n"


def _service_commands(loaded):
    own = sorted((n, c) for n, c in loaded.commands.items() if not c.toplevel)
    top = sorted((n, c) for n, c in loaded.commands.items() if c.toplevel)
    return own + top


def service(loaded):
    lines = [SERVICE_RULE, loaded.title]
    if loaded.doc:
        lines.append(loaded.doc)
    lines += [SERVICE_RULE, _entry("help", SERVICE_HELP_SUMMARY, "")]
    lines += [_entry(name, cmd.summary, "") for name, cmd in _service_commands(loaded)]
    return Preformatted("\n".join(lines) + "\n\n")


def service_terse(loaded, catalog):
    reachable = [name for name, cmd in _service_commands(loaded)
                 if cmd.toplevel and catalog.toplevel.get(name, (None,))[0] is loaded]
    return "\n".join([
        "COMMANDS: " + " ".join(["help"] + [name for name, _ in _service_commands(loaded)]),
        "TOP: " + " ".join(reachable),
    ]) + "\n"


def usage(command, service_name=None):
    """How to type a command: ``capture_at SECONDS`` or ``systemstatus disk [PATH]``."""
    if service_name is None or command.toplevel:
        return command.synopsis
    return f"{service_name} {command.synopsis}"


def command(cmd, service_name=None):
    text = usage(cmd, service_name)
    if cmd.doc:
        text += "\n" + "\n".join(INDENT + line if line else "" for line in cmd.doc.split("\n"))
    return text + "\n"


def for_topic(catalog, words):
    """Help for the words after ``help``; CommandError for an unknown topic."""
    words = [word.lower() for word in words]
    terse_form = bool(words) and words[0] == "-s"
    if terse_form:
        words = words[1:]
    if not words:
        return catalog.terse_help if terse_form else catalog.full_help
    topic = words[0]
    loaded = catalog.services.get(topic)
    if loaded is not None:
        if len(words) == 1:
            return service_terse(loaded, catalog) if terse_form else service(loaded)
        if words[1] == "help":
            return command(catalog.builtins["help"])
        cmd = loaded.commands.get(words[1])
        if cmd is None:
            raise errors.CommandError(errors.unknown_service_command(topic, words[1]))
        return command(cmd, topic)
    if topic in catalog.failures:
        return f"{topic}: {catalog.failures[topic].reason}\n"
    if topic in catalog.builtins:
        return command(catalog.builtins[topic])
    if topic in catalog.toplevel:
        return command(catalog.toplevel[topic][1])
    raise errors.CommandError(errors.unknown_topic(topic))
