"""What a command takes, and how a request's words are bound to it.

1. A word ``name=value`` whose name is one of the command's parameters fills
   that parameter.  So a value that contains ``=`` is passed by name:
   ``path=a=b`` gives PATH the text ``a=b``.
2. Any other word fills the next parameter in order; ``*args`` takes what is
   left over.
3. A word ``name=value`` whose name is not a parameter is a mistake, reported
   with the parameters the command takes (a name that differs only in case
   is named as the likely one) -- unless the command takes ``**kwargs``
   (the pair goes there, as text; never as ``self`` or ``session``) or
   ``*args`` (the word is text, for it).
   A word is always plain text if its part before ``=`` is not an identifier
   (a URL, ``a-b=1``), if it ends in ``=`` (base64 padding), or if the
   command has secret parameters (a password may contain ``=``, and no
   error may echo a piece of it).
4. A parameter given twice, a required one missing, or too many words is a
   mistake too.  Every mistake is an ArgumentError: one line, the usage added
   by the caller.
"""

import enum
import math
from dataclasses import dataclass

from ..auth import levels
from ..wire.errors import ArgumentError, shown

_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n"})


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


CONVERTERS = {int: int, float: _to_finite_float, bool: _to_bool}
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
        converter = CONVERTERS.get(self.kind)
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
    extra: bool = False  # it takes **kwargs: any other name=value goes there
    secret_words: object = None  # (instance, words) -> the words holding secrets, from @filtered(by=)
    reserved: frozenset = frozenset({"self", "session"})  # never filled from a request

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
        if self.extra:
            parts.append("[NAME=VALUE...]")
        return " ".join(parts)

    def bind(self, words, session=None):
        """Request words -> (args, kwargs) for the function, or ArgumentError."""
        named, loose = {}, []
        for word in words:
            role, param = self._role(word)
            key, _, value = word.partition("=")
            if role == "loose":
                loose.append(word)
            elif param is not None and param.name in named:
                raise ArgumentError(f"{param.metavar} given twice")
            elif param is not None:
                named[param.name] = self._convert(param, value)
            elif key in named:  # **kwargs
                raise ArgumentError(f"{key} given twice")
            else:
                named[key] = value
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
            named["session"] = session
        return args, named

    def _role(self, word):
        """("named", its Param), ("extra", None) for **kwargs, or ("loose", None)
        for a word in order (rules 1-3); ArgumentError for an unknown name."""
        key, equals, _ = word.partition("=")
        if not equals or not key.isidentifier():
            return "loose", None
        param = self._by_name(key)
        if param is not None:
            return "named", param
        if self.secret or word.endswith("="):  # rule 3: never guess at a secret
            return "loose", None
        likely = [p.name for p in self._params() if p.name.lower() == key.lower()]
        if likely:
            raise ArgumentError(f"unknown parameter {shown(key)} (did you mean {likely[0]}?)")
        if self.extra and key not in self.reserved:
            return "extra", None
        if self.rest is not None:
            return "loose", None
        names = ", ".join(p.name for p in self._params()) or "none"
        raise ArgumentError(f"unknown parameter {shown(key)} (it takes: {names})")

    def _convert(self, param, text):
        try:
            return param.convert(text)
        except ArgumentError:
            if param.name not in self.secret:
                raise
            raise ArgumentError(f"{param.metavar} must be {_TYPE_WORDS[param.kind]}") from None

    def filtered(self, words, mask, instance=None):
        """Request words with every secret parameter's value replaced by ``mask``.

        A word in order is masked if it would fill a secret parameter, or
        would have if the parameters given by name were skipped.  A request
        that does not bind has every word masked: who knows where its
        secret went (``login user=s3cret``).  With ``secret_words``, the
        words it names (asked of ``instance``, the command's service) are
        masked too: ``name=mask`` for a ``name=value`` word (every word, if
        it fails).
        """
        try:
            self.bind(words)
            roles = [self._role(word) for word in words]
        except ArgumentError:
            return [mask] * len(words)
        try:
            told = set(self.secret_words(instance, tuple(words))) if self.secret_words else set()
        except Exception:  # noqa: BLE001 - a service's bug must not write its secrets down
            return [mask] * len(words)
        named = {param.name for role, param in roles if role == "named"}
        unnamed = [param for param in self.positional if param.name not in named]
        shown_words, loose = [], 0
        for word, (role, _) in zip(words, roles):
            key, equals, _ = word.partition("=")
            if role != "loose":
                hidden = key in self.secret or word in told
                shown_words.append(f"{key}={mask}" if hidden else word)
                continue
            fills = [params[loose] if loose < len(params) else self.rest
                     for params in (self.positional, unnamed)]
            loose += 1
            if any(param is None or param.name in self.secret for param in fills):
                shown_words.append(mask)
            elif word in told:
                shown_words.append(f"{key}={mask}" if equals and key.isidentifier() else mask)
            else:
                shown_words.append(word)
        return shown_words

    def _params(self):
        return self.positional + self.keyword_only

    def _by_name(self, key):
        for param in self._params():
            if param.name == key:
                return param
        return None
