"""How a connection's replies are written: text for people and netcat, JSON for programs.

Every connection starts in text, the seed's format (see protocol.py), and
switches with ``mode json`` and back with ``mode text``; a switch applies from
its own reply on.  In JSON mode every message is one line of JSON (UTF-8,
never containing a newline) and there is no separator:

1. A reply is ``{"ok": true, "result": VALUE}`` or ``{"ok": false, "error": TEXT}``;
   TEXT is the message text mode shows after ``ERROR: ``.
2. A streaming command sends ``{"chunk": VALUE}`` per chunk, then its final
   line as in 1 (with ``"result": null``, or the value it ended with -- see
   protocol.Final -- or the error that ended it).
3. So every reply ends with exactly one line that has ``"ok"``.
4. VALUE keeps the command's structure: a dict is an object, a list an array,
   a number a number, None null.  Text is what text mode would show, less its
   final newline.  A value JSON cannot hold is sent as its text.  A Shown
   value sends its ``value`` there and, beside it, ``"text"``: what text mode
   shows for it (less its final newline), so a client can show people the
   table and programs the rows.
"""

import json

from . import errors, protocol

# default=str: what JSON has no type for (a date, a path) becomes its text, as
# text mode shows it; NaN is refused so the line stays strict JSON.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str).encode
_string = json.encoder.encode_basestring  # what _encode writes for a str (ensure_ascii off)


class Text:
    """The seed's format: body, then the separator."""

    name = "text"
    reply = staticmethod(protocol.render_reply)
    value = staticmethod(protocol.render_value)
    error = staticmethod(protocol.render_error)
    end = staticmethod(protocol.render_end)

    @staticmethod
    def chunk(value):
        return protocol.render_body(protocol.to_text(value))


class Json:
    """One JSON object per line (rules 1-4)."""

    name = "json"

    @staticmethod
    def reply(reply):
        if reply.error is not None:
            return Json.error(reply.error)
        return Json.value(reply.value)

    @staticmethod
    def value(value):
        if type(value) is str:  # the common reply, written without building an object:
            # byte for byte what _line writes, at a third of the cost
            return ('{"ok": true, "result": ' + _string(value.rstrip("\n")) + "}\n").encode(
                "utf-8", "replace")
        return _line({"ok": True}, "result", value)

    @staticmethod
    def error(message):
        return _line({"ok": False}, "error", errors.one_line(message))

    @staticmethod
    def chunk(value):
        return _line({}, "chunk", value)

    @staticmethod
    def end(error=None, result=None):
        if error:
            return Json.error(error)
        return _STREAM_END if result is None else _line({"ok": True}, "result", result)


def _line(fixed, key, value):
    """One JSON line: the ``fixed`` fields, then ``key`` with the command's value."""
    obj, text = dict(fixed), None
    if isinstance(value, protocol.Shown):
        value, text = value.value, _as_text(value.text)
    if isinstance(value, (str, bytes)):
        value = _as_text(value)
    obj[key] = value
    if text is not None:
        obj["text"] = text
    try:
        return (_encode(obj) + "\n").encode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - NaN, a cycle, a __str__ that fails: send its text
        obj[key] = _as_text(value)
        return (_encode(obj) + "\n").encode("utf-8", "replace")


def _as_text(value):
    return protocol.to_text(value).removesuffix("\n")


_STREAM_END = _line({"ok": True}, "result", None)
FORMATS = {format.name: format for format in (Text, Json)}
