"""How a class becomes remote commands.

1. A method ``cmd_<name>`` is the command ``<service> <name>``.
2. A method ``toplevel_cmd_<name>`` is the command ``<name>``, and also
   ``<service> <name>``.
3. Nothing else is ever dispatched: tables are built once, from the class, when
   it is loaded; a request only looks names up in them.  A name that would begin
   with ``_`` is never a command.
4. Names are case-insensitive: table keys are lower-case.
5. A docstring's first line is the short help, the whole docstring the long
   help; the synopsis (``capture_at SECONDS``) comes from the signature.
6. A parameter named ``session`` receives the connection's Session and is never
   filled from the request.
7. Arguments are split like a shell, then bound to the signature (see
   signature.py): in order, or ``name=value`` for that parameter; ``*args``
   takes the rest, ``**kwargs`` any other ``name=value``.  An int, float or
   bool annotation (also ``int | None`` or ``Optional[int]``), or a default of
   that type, converts the text.
8. ``def`` runs in a worker thread, ``async def`` on the event loop, and an
   ``async def`` that yields streams its chunks.
9. Parameters named in ``@filtered(...)`` are secrets: the audit trail writes
   their values as ``FILTERED``.  ``@filtered(by=function)`` is for a command
   whose secrets depend on the request (``scripts run NAME password=...``):
   ``function(instance, words)`` names the words of a request that hold one.
10. ``@level("read")`` or ``@level("admin")`` sets the level a command needs;
    the default is ``operate`` (see auth/levels.py).
"""

import inspect
import types
import typing

from ..auth import levels
from .signature import CONVERTERS, Command, Kind, Param

__all__ = ["Command", "Kind", "Param", "command_from_function", "commands_of", "filtered"]

SERVICE_PREFIX = "cmd_"
TOPLEVEL_PREFIX = "toplevel_cmd_"
SESSION_PARAMETER = "session"


def filtered(*names, by=None):
    """Mark a command's secret parameters: the audit trail never writes their values.

        @filtered("password")
        def cmd_set_password(self, user, password): ...

    ``by``: for secrets only the request tells, ``by(instance, words)`` gives the
    words (of those after the command's name) that hold one; a ``name=value``
    word is written ``name=FILTERED``, any other ``FILTERED`` (every word, if it
    raises).
    """
    def mark(function):
        function.filtered_params = frozenset(names)
        function.secret_words = by
        return function
    return mark


def commands_of(cls):
    """The command table of a class: lower-case name -> Command (rules 1-4)."""
    table = {}
    for attribute in sorted(dir(cls)):
        if attribute.startswith(TOPLEVEL_PREFIX):
            name, toplevel = attribute[len(TOPLEVEL_PREFIX):], True
        elif attribute.startswith(SERVICE_PREFIX):
            name, toplevel = attribute[len(SERVICE_PREFIX):], False
        else:
            continue
        function = inspect.getattr_static(cls, attribute)
        if isinstance(function, (staticmethod, classmethod)) or not callable(function):
            continue
        name = name.lower()
        if name and not name.startswith("_") and name.isprintable() and " " not in name:
            table[name] = command_from_function(name, function, toplevel)
    return table


def command_from_function(name, function, toplevel=False):
    """Describe one function as a Command (rules 5-8)."""
    if inspect.isasyncgenfunction(function):
        kind = Kind.STREAM
    elif inspect.iscoroutinefunction(function):
        kind = Kind.ASYNC
    else:
        kind = Kind.BLOCKING
    try:
        signature = inspect.signature(function, eval_str=True)
    except (NameError, TypeError, ValueError):
        signature = inspect.signature(function)
    positional, keyword_only, rest, wants_session, extra = [], [], None, False, False
    parameters = list(signature.parameters.values())
    for param in parameters[1:]:  # skip self
        if param.name == SESSION_PARAMETER:
            wants_session = True
            continue
        if param.kind is param.VAR_KEYWORD:
            extra = True
            continue
        spec = Param(param.name, _value_type(param), param.default is param.empty)
        if param.kind is param.VAR_POSITIONAL:
            rest = Param(param.name, spec.kind, False)
        elif param.kind is param.KEYWORD_ONLY:
            keyword_only.append(spec)
        else:
            positional.append(spec)
    return Command(name, function, kind, toplevel, inspect.cleandoc(function.__doc__ or ""),
                   tuple(positional), tuple(keyword_only), rest, wants_session,
                   frozenset(getattr(function, "filtered_params", ())),
                   _level_of(function), extra,
                   getattr(function, "secret_words", None),
                   frozenset({parameters[0].name if parameters else "self", SESSION_PARAMETER}))


def _level_of(function):
    """The level @level set; ValueError (the service fails to load) for a bad one."""
    needed = getattr(function, "required_level", levels.DEFAULT)
    return needed if isinstance(needed, levels.Level) else levels.parse(str(needed))


def _value_type(param):
    """int, float or bool if the annotation (``int``, ``int | None``,
    ``Optional[int]``) or else the default says so; str otherwise."""
    for candidate in (_without_none(param.annotation), type(param.default)):
        if candidate in CONVERTERS:
            return candidate
    return str


def _without_none(annotation):
    """``int | None`` and ``Optional[int]`` -> int; anything else as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return annotation
