"""The service author's API has no traps: what a newcomer writes works as it reads.

Each service is a fixture file under tests/fixtures/author_api/, loaded by a
real Manager and asked through its one entry, Manager.answer().
"""

import inspect
import logging
import typing

import pytest
from helpers import FIXTURES, run_line, started_manager

from smanager import Session, SService
from smanager.client import AsyncClient, Client
from smanager.config import Config


def manager_of(name, **settings):
    return started_manager(FIXTURES / "author_api" / name, **settings)


async def value_of(manager, line):
    outcome = await run_line(manager, line)
    assert outcome.error is None, outcome.error
    return outcome.value


# -- optional parameters ------------------------------------------------------------

async def test_optional_int_and_float_parameters_are_converted_like_plain_ones():
    async with manager_of("optional") as manager:
        assert await value_of(manager, "counter add 2 0.5 times=3 label=x") == \
            {"a": 2, "b": 0.5, "times": 3, "label": "x"}
        assert await value_of(manager, "counter add") == \
            {"a": None, "b": None, "times": None, "label": None}


async def test_an_optional_int_that_is_not_a_number_gets_the_usage():
    async with manager_of("optional") as manager:
        outcome = await run_line(manager, "counter add two")
        assert outcome.error == ("A must be a whole number, not 'two'; usage: counter add [A] "
                                 "[B] [times=TIMES] [label=LABEL]")


# -- options --------------------------------------------------------------------------

async def test_options_are_set_before_init_runs():
    async with manager_of("options", options={"settings": {"greeting": "moin"}}) as manager:
        assert await value_of(manager, "settings greeting") == "moin"


async def test_each_service_has_its_own_options_copy():
    table = {"greeting": "moin"}
    async with manager_of("options", options={"settings": table}) as manager:
        assert await value_of(manager, "settings options") == \
            {"greeting": "moin", "seen_by": "settings"}
        assert await value_of(manager, "other options") == {}
    assert table == {"greeting": "moin"}, "the config's own table was changed"


def test_a_service_made_outside_the_server_has_empty_read_only_options():
    class Loose(SService):
        pass

    loose = Loose()
    assert dict(loose.options) == {}
    with pytest.raises(TypeError):
        loose.options["x"] = 1  # would otherwise land in a dict every service shares


# -- which classes are services -------------------------------------------------------------

async def test_a_base_class_in_the_same_file_is_not_loaded_as_a_service(caplog):
    caplog.set_level(logging.INFO, "smanager.loader")
    async with manager_of("bases") as manager:
        assert sorted(manager.catalog.services) == ["hammer", "saw"]
        assert manager.catalog.failures == {}
        assert await value_of(manager, "hammer kind") == "hammer"
        assert await value_of(manager, "saw teeth") == 24
    assert "tools.py: Tool is a base of other classes there, not a service" in caplog.messages


async def test_a_private_subclass_does_not_make_its_parent_a_base():
    async with manager_of("private_subclass") as manager:
        assert list(manager.catalog.services) == ["counter"]


# -- the public surface is typed ------------------------------------------------------------

PUBLIC = [SService.run_in_background, SService.start, SService.stop, SService.cleanup,
          SService.client_disconnected, Config.updated,
          Client.__init__, Client.call, Client.run, Client.stream, Client.services,
          Client.commands, AsyncClient.__init__, AsyncClient.call, AsyncClient.run,
          AsyncClient.stream, AsyncClient.services, AsyncClient.commands]


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__qualname__)
def test_the_public_surface_has_type_hints(function):
    hints = typing.get_type_hints(function)  # also: every hint resolves
    params = [name for name in inspect.signature(function).parameters if name != "self"]
    assert [name for name in params if name not in hints] == []
    assert "return" in hints or function.__name__ == "__init__"


def test_session_and_config_fields_are_typed():
    public = {name: hint for name, hint in typing.get_type_hints(Session).items()
              if not name.startswith("_")}
    assert public == {"peer": str, "connection_id": int, "data": dict[str, typing.Any]}
    assert typing.get_type_hints(Session.user.fget)["return"] == str | None
    assert typing.get_type_hints(Session.level.fget)["return"] is str
    assert typing.get_type_hints(Config)["services"] == list[str]


def test_the_service_docstring_says_where_commands_run():
    doc = inspect.getdoc(SService)
    assert "worker thread" in doc and "event loop" in doc and "concurrent" in doc
