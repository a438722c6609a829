"""The cmd_/toplevel_cmd_ conventions and argument binding (no sockets)."""

import pytest
from helpers import FIXTURES, SEP, ask_core, run_line, started_manager

from smanager import SService, filtered
from smanager.core.commands import Kind, commands_of
from smanager.wire.errors import ArgumentError


class Sample(SService):
    """A sample service

    With a longer description.
    """

    def cmd_plain(self):
        """Runs in a thread

        More text.
        """

    async def cmd_later(self):
        """Runs on the loop"""

    async def cmd_stream(self):
        """Streams"""
        yield 1

    def toplevel_cmd_TOP(self):
        """A toplevel command"""

    def cmd_capture_at(self, seconds: float):
        """Sets the interval"""

    def cmd_mixed(self, name, count: int = 1, *rest, loud: bool = False, session=None):
        """Mixed parameters"""

    def cmd_by_default(self, size=10, ratio=0.5, flag=False):
        """Types from defaults"""

    def cmd_needs_kw(self, *, level: int):
        """Keyword only"""

    def cmd_nodoc(self):
        pass

    # Never commands:
    def _cmd_private(self):
        pass

    def cmd__hidden(self):
        pass

    cmd_not_callable = "text"

    @staticmethod
    def cmd_static():
        pass

    def helper(self):
        pass


TABLE = commands_of(Sample)


def test_only_the_conventions_become_commands():
    assert sorted(TABLE) == ["by_default", "capture_at", "later", "mixed", "needs_kw",
                             "nodoc", "plain", "stream", "top"]


def test_kinds():
    assert TABLE["plain"].kind is Kind.BLOCKING
    assert TABLE["later"].kind is Kind.ASYNC
    assert TABLE["stream"].kind is Kind.STREAM


def test_toplevel_names_are_lower_case_and_marked():
    assert TABLE["top"].toplevel and not TABLE["plain"].toplevel


def test_docstrings():
    assert TABLE["plain"].summary == "Runs in a thread"
    assert TABLE["plain"].doc == "Runs in a thread\n\nMore text."
    assert TABLE["nodoc"].summary == ""


@pytest.mark.parametrize("name, synopsis", [
    ("capture_at", "capture_at SECONDS"),
    ("plain", "plain"),
    ("mixed", "mixed NAME [COUNT] [REST...] [loud=LOUD]"),
    ("needs_kw", "needs_kw level=LEVEL"),
    ("by_default", "by_default [SIZE] [RATIO] [FLAG]"),
])
def test_synopsis_comes_from_the_signature(name, synopsis):
    assert TABLE[name].synopsis == synopsis


@pytest.mark.parametrize("name, words, args, kwargs", [
    ("capture_at", ["5"], [5.0], {}),
    ("capture_at", ["seconds=2.5"], [], {"seconds": 2.5}),
    ("mixed", ["bob"], ["bob"], {"session": "S"}),
    ("mixed", ["bob", "3", "x", "y"], ["bob", 3, "x", "y"], {"session": "S"}),
    ("mixed", ["bob", "loud=yes"], ["bob"], {"loud": True, "session": "S"}),
    ("mixed", ["count=4", "bob"], ["bob"], {"count": 4, "session": "S"}),
    ("mixed", ["bob", "2", "a=b"], ["bob", 2, "a=b"], {"session": "S"}),  # not a parameter
    ("by_default", ["7", "0.25", "off"], [7, 0.25, False], {}),
    ("needs_kw", ["level=3"], [], {"level": 3}),
])
def test_binding(name, words, args, kwargs):
    assert TABLE[name].bind(words, session="S") == (args, kwargs)


@pytest.mark.parametrize("name, words, problem", [
    ("capture_at", [], "missing SECONDS"),
    ("capture_at", ["soon"], "SECONDS must be a number, not 'soon'"),
    ("capture_at", ["1", "2"], "too many arguments (2 given)"),
    ("mixed", ["bob", "many"], "COUNT must be a whole number, not 'many'"),
    ("mixed", ["bob", "loud=maybe"], "LOUD must be true or false, not 'maybe'"),
    ("mixed", ["bob", "name=alice"], "NAME given twice"),
    ("mixed", ["count=1", "count=2", "x"], "COUNT given twice"),
    ("needs_kw", [], "missing LEVEL"),
    ("plain", ["x"], "too many arguments (1 given)"),
])
def test_binding_errors(name, words, problem):
    with pytest.raises(ArgumentError) as caught:
        TABLE[name].bind(words)
    assert str(caught.value) == problem


def test_session_is_never_filled_from_the_line():
    args, kwargs = TABLE["mixed"].bind(["bob", "1", "session=evil"], session="real")
    assert kwargs["session"] == "real" and "session=evil" in args


def test_tables_are_per_class_and_inherited():
    class Child(Sample):
        def cmd_extra(self):
            """More"""

    assert "extra" in commands_of(Child) and "plain" in commands_of(Child)
    assert "extra" not in TABLE


class DirSize(SService):
    """Sizes of directories"""

    def cmd_size(self, path=".", human: bool = False):
        """Size of PATH"""

    def cmd_note(self, *words):
        """Takes any words"""

    def cmd_tag(self, name, **labels):
        """Takes any name=value"""

    @filtered("password")
    def cmd_login(self, user, password):
        """Takes a secret"""


DIRSIZE = commands_of(DirSize)


@pytest.mark.parametrize("words, error", [
    (["path=/x", "extra=1"], "unknown parameter 'extra' (it takes: path, human)"),
    (["Human=true"], "unknown parameter 'Human' (did you mean human?)"),
    (["/x", "PATH=/y"], "unknown parameter 'PATH' (did you mean path?)"),
    (["session=x"], "unknown parameter 'session' (it takes: path, human)"),
])
def test_a_name_that_is_not_a_parameter_is_an_error_naming_the_parameters(words, error):
    with pytest.raises(ArgumentError) as caught:
        DIRSIZE["size"].bind(words)
    assert str(caught.value) == error


def test_a_value_containing_an_equals_sign_goes_by_name():
    assert DIRSIZE["size"].bind(["path=a=b"]) == ([], {"path": "a=b"})
    assert DIRSIZE["size"].bind(["human=yes", "path=/x"]) == ([], {"human": True, "path": "/x"})


def test_words_that_are_not_names_stay_text():
    assert DIRSIZE["size"].bind(["http://host/?a=b"]) == (["http://host/?a=b"], {})
    assert DIRSIZE["size"].bind(["a-b=1"]) == (["a-b=1"], {})
    assert DIRSIZE["size"].bind(["c2VjcmV0=="]) == (["c2VjcmV0=="], {})  # base64 padding


def test_a_secret_may_contain_an_equals_sign_and_is_never_echoed():
    login = DIRSIZE["login"]
    assert login.bind(["alice", "pa=ss"]) == (["alice", "pa=ss"], {})
    assert login.bind(["alice", "User=x"]) == (["alice", "User=x"], {})


def test_a_command_taking_star_args_keeps_name_value_words_as_text():
    assert DIRSIZE["note"].bind(["a=b", "c"]) == (["a=b", "c"], {})


def test_a_command_taking_kwargs_gets_unknown_names_there():
    assert DIRSIZE["tag"].bind(["web", "env=prod", "Env=x"]) == \
        (["web"], {"env": "prod", "Env": "x"})
    with pytest.raises(ArgumentError, match="did you mean name"):  # a typo, even here
        DIRSIZE["tag"].bind(["Name=web"])
    assert DIRSIZE["tag"].synopsis == "tag NAME [NAME=VALUE...]"
    with pytest.raises(ArgumentError, match="env given twice"):
        DIRSIZE["tag"].bind(["web", "env=a", "env=b"])


def test_an_unknown_name_masks_the_whole_line_in_the_audit():
    # It does not bind, so nobody can tell where a secret went.
    assert DIRSIZE["size"].filtered(["extra=s3cret"], "FILTERED") == ["FILTERED"]


async def test_a_call_its_signature_refuses_is_an_error_reply_not_a_dropped_connection():
    async with started_manager(FIXTURES / "odd_signatures") as manager:
        assert (await ask_core(manager, "odd only a=1")).startswith(
            "ERROR: odd only failed: TypeError: ")
        assert (await ask_core(manager, "odd lines n=2")).startswith(
            "ERROR: odd lines failed: TypeError: ")
        assert await ask_core(manager, "odd tag self=1") == (
            "ERROR: unknown parameter 'self' (it takes: none); usage: odd tag [NAME=VALUE...]\n"
            + SEP)


async def test_a_secret_beside_kwargs_still_fills_its_parameter():
    async with started_manager(FIXTURES / "odd_signatures") as manager:
        outcome = await run_line(manager, "odd unlock alice se=cret")
        assert outcome.value == {"user": "alice", "password": "se=cret", "more": {}}
        command = manager.catalog.services["odd"].commands["unlock"]
        assert command.filtered(["alice", "se=cret"], "F") == ["alice", "F"]
