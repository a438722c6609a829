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
7. Arguments are split like a shell, then bound to the signature: in order, or
   ``name=value`` for that keyword parameter; ``*args`` takes the rest.  An int,
   float or bool annotation (also ``int | None`` or ``Optional[int]``), or a
   default of that type, converts the text.
8. ``def`` runs in a worker thread, ``async def`` on the event loop, and an
   ``async def`` that yields streams its chunks.
9. Parameters named in ``@filtered(...)`` are secrets: the audit trail writes
   their values as ``FILTERED``.
10. ``@level("read")`` or ``@level("admin")`` sets the level a command needs;
    the default is ``operate`` (see auth/levels.py).
"""

import enum
import inspect
import math
import types
import typing
from dataclasses import dataclass

from ..auth import levels
from ..wire.errors import ArgumentError

SERVICE_PREFIX = "cmd_"
TOPLEVEL_PREFIX = "toplevel_cmd_"
SESSION_PARAMETER = "session"
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n"})


def filtered(*names):
    """Mark a command's secret parameters: the audit trail never writes their values.

        @filtered("password")
        def cmd_set_password(self, user, password): ...
    """
    def mark(function):
        function.filtered_params = frozenset(names)
        return function
    return mark


class Kind(enum.Enum):
    BLOCKING = "runs in a worker thread"
    ASYNC = "runs on the event loop"
    STREAM = "streams chunks as they are produced"


def _to_bool(text):
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _to_finite_float(text):
    value = float(text)
    if not math.isfinite(value):  # "nan" would make a sleep or a limit meaningless
        raise ValueError(text)
    return value


_CONVERTERS = {int: int, float: _to_finite_float, bool: _to_bool}
_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false"}


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter a request can fill."""

    name: str
    kind: type  # int, float, bool or str
    required: bool

    @property
    def metavar(self):
        return self.name.upper()

    def convert(self, text):
        converter = _CONVERTERS.get(self.kind)
        if converter is None:
            return text
        try:
            return converter(text)
        except ValueError:
            raise ArgumentError(
                f"{self.metavar} must be {_TYPE_WORDS[self.kind]}, not {text!r}") from None


@dataclass(frozen=True, slots=True)
class Command:
    """A remote command: what to call, how to bind its words, and its help."""

    name: str
    function: object  # the plain function; called with the service instance first
    kind: Kind
    toplevel: bool
    doc: str
    positional: tuple  # Params filled in order
    keyword_only: tuple  # Params only filled by name=value
    rest: Param | None  # *args
    wants_session: bool
    secret: frozenset = frozenset()  # parameter names from @filtered
    level: levels.Level = levels.DEFAULT  # the level a connection needs to run it

    @property
    def summary(self):
        return self.doc.partition("\n")[0]

    @property
    def synopsis(self):
        parts = [self.name]
        parts += [p.metavar if p.required else f"[{p.metavar}]" for p in self.positional]
        if self.rest is not None:
            parts.append(f"[{self.rest.metavar}...]")
        for p in self.keyword_only:
            parts.append(f"{p.name}={p.metavar}" if p.required else f"[{p.name}={p.metavar}]")
        return " ".join(parts)

    def bind(self, words, session=None):
        """Request words -> (args, kwargs) for the function, or ArgumentError."""
        named, loose = {}, []
        for word in words:
            key, equals, value = word.partition("=")
            param = self._by_name(key) if equals else None
            if param is None:
                loose.append(word)
            elif param.name in named:
                raise ArgumentError(f"{param.metavar} given twice")
            else:
                named[param.name] = self._convert(param, value)
        if len(loose) > len(self.positional) and self.rest is None:
            raise ArgumentError(f"too many arguments ({len(loose)} given)")
        args = []
        for index, param in enumerate(self.positional):
            if index < len(loose):
                if param.name in named:
                    raise ArgumentError(f"{param.metavar} given twice")
                args.append(self._convert(param, loose[index]))
            elif param.required and param.name not in named:
                raise ArgumentError(f"missing {param.metavar}")
        for param in self.keyword_only:
            if param.required and param.name not in named:
                raise ArgumentError(f"missing {param.metavar}")
        if self.rest is not None:
            args += [self._convert(self.rest, word) for word in loose[len(self.positional):]]
        if self.wants_session:
            named[SESSION_PARAMETER] = session
        return args, named

    def _convert(self, param, text):
        try:
            return param.convert(text)
        except ArgumentError:
            if param.name not in self.secret:
                raise
            raise ArgumentError(f"{param.metavar} must be {_TYPE_WORDS[param.kind]}") from None

    def filtered(self, words, mask):
        """Request words with every secret parameter's value replaced by ``mask``.

        A word in order is masked if it would fill a secret parameter, or
        would have if the parameters given by name were skipped.  A request
        that does not bind has every word masked: who knows where its
        secret went (``login user=s3cret``).
        """
        try:
            self.bind(words)
        except ArgumentError:
            return [mask] * len(words)
        named = {word.partition("=")[0] for word in words
                 if "=" in word and self._by_name(word.partition("=")[0]) is not None}
        unnamed = [param for param in self.positional if param.name not in named]
        shown, loose = [], 0
        for word in words:
            key, equals, _ = word.partition("=")
            if equals and key in named:
                shown.append(f"{key}={mask}" if key in self.secret else word)
                continue
            fills = [params[loose] if loose < len(params) else self.rest
                     for params in (self.positional, unnamed)]
            loose += 1
            hidden = any(param is None or param.name in self.secret for param in fills)
            shown.append(mask if hidden else word)
        return shown

    def _by_name(self, key):
        for param in self.positional + self.keyword_only:
            if param.name == key:
                return param
        return None


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
    positional, keyword_only, rest, wants_session = [], [], None, False
    for param in list(signature.parameters.values())[1:]:  # skip self
        if param.name == SESSION_PARAMETER:
            wants_session = True
            continue
        if param.kind is param.VAR_KEYWORD:
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
                   _level_of(function))


def _level_of(function):
    """The level @level set; ValueError (the service fails to load) for a bad one."""
    needed = getattr(function, "required_level", levels.DEFAULT)
    return needed if isinstance(needed, levels.Level) else levels.parse(str(needed))


def _value_type(param):
    """int, float or bool if the annotation (``int``, ``int | None``,
    ``Optional[int]``) or else the default says so; str otherwise."""
    for candidate in (_without_none(param.annotation), type(param.default)):
        if candidate in _CONVERTERS:
            return candidate
    return str


def _without_none(annotation):
    """``int | None`` and ``Optional[int]`` -> int; anything else as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return annotation
