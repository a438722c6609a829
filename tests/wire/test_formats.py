"""Reply formats: JSON mode makes every reply one line of JSON; text mode is the
seed's format (no sockets)."""

import datetime
import json
import math

import pytest
from helpers import SEP_LINE

from smanager.core.runner import Outcome
from smanager.wire import formats, protocol
from smanager.wire.formats import Json, Text
from smanager.wire.protocol import Shown


@pytest.mark.parametrize(("value", "line"), [
    ("up 3 days\n", '{"ok": true, "result": "up 3 days"}\n'),
    ("two\nlines", '{"ok": true, "result": "two\\nlines"}\n'),
    ("", '{"ok": true, "result": ""}\n'),
    (None, '{"ok": true, "result": null}\n'),
    (42, '{"ok": true, "result": 42}\n'),
    (1.5, '{"ok": true, "result": 1.5}\n'),
    (True, '{"ok": true, "result": true}\n'),
    ({"a": [1, 2], "b": None}, '{"ok": true, "result": {"a": [1, 2], "b": null}}\n'),
    ((1, "x"), '{"ok": true, "result": [1, "x"]}\n'),
    (b"raw\xffbytes", '{"ok": true, "result": "raw\ufffdbytes"}\n'),
    ("é ✓", '{"ok": true, "result": "é ✓"}\n'),
    ("-" * 50, '{"ok": true, "result": "' + "-" * 50 + '"}\n'),
])
def test_a_reply_is_one_json_line_that_keeps_its_structure(value, line):
    assert Json.reply(Outcome(value)).decode() == line


def test_values_json_cannot_hold_are_sent_as_their_text():
    assert json.loads(Json.reply(Outcome(math.nan)))["result"] == "nan"
    assert json.loads(Json.reply(Outcome({1, 2})))["result"] == "{1, 2}"
    when = datetime.date(2026, 11, 22)
    assert json.loads(Json.reply(Outcome({"when": when})))["result"] == {"when": "2026-11-22"}
    loop = []
    loop.append(loop)
    assert json.loads(Json.reply(Outcome(loop)))["result"] == "[[...]]"


def test_an_error_is_one_line_without_the_text_prefix():
    line = Json.reply(Outcome(error="kaput\nsecond line\x1b[31m"))
    assert line == b'{"ok": false, "error": "kaput second line?[31m"}\n'


def test_a_stream_is_chunk_lines_then_a_final_line():
    assert Json.chunk({"n": 1}) == b'{"chunk": {"n": 1}}\n'
    assert Json.chunk("tick\n") == b'{"chunk": "tick"}\n'
    assert Json.end() == b'{"ok": true, "result": null}\n'
    assert Json.end("interrupted") == b'{"ok": false, "error": "interrupted"}\n'


def test_text_mode_is_the_seed_format():
    assert Text.reply(Outcome("hi")) == b"hi\n" + SEP_LINE
    assert Text.chunk(3) == b"3\n"
    assert Text.end() == SEP_LINE


def test_a_shown_value_is_its_table_in_text_mode_and_its_rows_with_the_table_in_json_mode():
    shown = Shown([{"name": "web", "pid": 12}], "NAME  PID\nweb   12\n")
    assert Text.reply(Outcome(value=shown)) == b"NAME  PID\nweb   12\n" + SEP_LINE
    assert json.loads(Json.reply(Outcome(value=shown))) == {
        "ok": True, "result": [{"name": "web", "pid": 12}], "text": "NAME  PID\nweb   12"}
    assert json.loads(Json.chunk(shown)) == {"chunk": [{"name": "web", "pid": 12}],
                                             "text": "NAME  PID\nweb   12"}
    assert json.loads(Json.end(result=shown))["text"] == "NAME  PID\nweb   12"


@pytest.mark.parametrize("text", ["hi", "", "a\n", "two\nlines\n\n", 'quote " and \\ back',
                                  "tab\tnul\x00esc\x1b", "ünïcødé ✓", "lone \ud800 surrogate"])
def test_a_text_reply_in_json_mode_is_the_same_line_the_general_path_writes(text):
    general = (json.dumps({"ok": True, "result": text.rstrip("\n")}, ensure_ascii=False)
               + "\n").encode("utf-8", "replace")
    assert Json.reply(Outcome(value=text)) == general
    assert json.loads(Json.reply(Outcome(value=text)).decode("utf-8", "replace"))["ok"] is True


GENERAL_PATHS = {  # what each format writes for any value, without its fast path for a str
    Text: lambda value: protocol.render_text(protocol.to_text(value)),
    Json: lambda value: formats._line({"ok": True}, "result", value),
}


@pytest.mark.parametrize("format", [Text, Json])
@pytest.mark.parametrize("value", ["hi", "", "\n", "two\nlines\n\n", "-" * 50, "a\n" + "-" * 60,
                                   "caf\u00e9", "lone \udc80 surrogate", "x" * 70000])
def test_a_str_value_is_written_as_the_general_path_writes_it(format, value):
    """The runner hands a str done at once on as it is, and the pipeline renders it with
    ``format.value``: byte for byte what the general path gives, and what the reply holding
    it gives."""
    assert format.value(value) == GENERAL_PATHS[format](value) == format.reply(Outcome(value))
