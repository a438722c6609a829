"""Loading, starting, restarting and stopping services (no sockets)."""

import logging
import os

import pytest
from helpers import FIXTURES, SEP, ask_core, fixture_source

from smanager import SService
from smanager.config import ConfigError
from smanager.core.lifecycle import start_service, stop_service
from smanager.core.manager import Manager
from smanager.service import State


def write(directory, filename, source):
    (directory / filename).write_text(source)


def journal(directory, filename, cls, version="v1"):
    """tests/fixtures/journal as class CLS answering VERSION, written to DIRECTORY/FILENAME."""
    source = fixture_source("journal").replace("Journal", cls)
    write(directory, filename, source.replace('"v1"', f'"{version}"'))


def events(manager, name):
    return __import__("sys").modules[type(manager.catalog.services[name].instance).__module__].EVENTS


@pytest.fixture
async def started(tmp_path):
    journal(tmp_path, "a_first.py", "First")
    journal(tmp_path, "b_second.py", "Second")
    manager = Manager([tmp_path], hook_timeout=1.0)
    await manager.start()
    yield manager, tmp_path
    await manager.stop()


async def test_services_start_in_order_and_stop_in_reverse(started):
    manager, _ = started
    first, second = events(manager, "first"), events(manager, "second")
    await manager.stop()
    assert first == ["start First", "stop First", "background stopped First", "cleanup First"]
    assert second[0] == "start Second"
    assert manager.catalog.services == {}


async def test_restart_loads_edited_code(started):
    manager, directory = started
    assert await ask_core(manager, "first version") == "v1\n" + SEP
    journal(directory, "a_first.py", "First", version="v2")
    assert await ask_core(manager, "restart") == "restarted: first second\n" + SEP
    assert await ask_core(manager, "first version") == "v2\n" + SEP


async def test_restart_loads_an_edit_the_bytecode_cache_would_miss(tmp_path, monkeypatch):
    """Python's bytecode cache trusts a file whose size and mtime (in whole
    seconds) are unchanged: an edit that keeps both must still be loaded."""
    monkeypatch.setattr("sys.dont_write_bytecode", False)  # as on most servers
    journal(tmp_path, "a_first.py", "First", version="v1")
    stamp = (tmp_path / "a_first.py").stat().st_mtime_ns
    manager = Manager([tmp_path], hook_timeout=1.0)
    await manager.start()
    try:
        assert await ask_core(manager, "first version") == "v1\n" + SEP
        journal(tmp_path, "a_first.py", "First", version="v2")  # the same size
        os.utime(tmp_path / "a_first.py", ns=(stamp, stamp))
        assert await ask_core(manager, "restart") == "restarted: first\n" + SEP
        assert await ask_core(manager, "first version") == "v2\n" + SEP
    finally:
        await manager.stop()
    assert not (tmp_path / "__pycache__").exists()  # nothing written beside the admin's files


async def test_restart_one_service(started):
    manager, directory = started
    old_second = manager.catalog.services["second"].instance
    journal(directory, "a_first.py", "First", version="v2")
    assert await ask_core(manager, "restart FIRST") == "restarted: first\n" + SEP
    assert await ask_core(manager, "first version") == "v2\n" + SEP
    assert manager.catalog.services["second"].instance is old_second
    assert list(manager.catalog.services) == ["first", "second"]


async def test_broken_new_code_keeps_the_old_instance_running(started):
    manager, directory = started
    write(directory, "a_first.py", "def broken(:\n")
    reply = await ask_core(manager, "restart")
    assert reply.startswith("first: kept running the old code: SyntaxError: invalid syntax")
    assert await ask_core(manager, "first version") == "v1\n" + SEP
    assert manager.catalog.services["first"].instance.state is State.RUNNING
    reply = await ask_core(manager, "restart first")
    assert reply.startswith("first: kept running the old code: SyntaxError")


async def test_restart_picks_up_a_new_file_and_drops_a_removed_one(started):
    manager, directory = started
    journal(directory, "c_third.py", "Third")
    (directory / "b_second.py").unlink()
    assert await ask_core(manager, "restart") == "restarted: first third\n" + SEP
    assert list(manager.catalog.services) == ["first", "third"]


async def test_a_file_that_fails_to_import_does_not_stop_the_others(tmp_path, caplog):
    journal(tmp_path, "good.py", "Good")
    write(tmp_path, "bad.py", "import no_such_module_here\n")
    manager = Manager([tmp_path])
    with caplog.at_level(logging.ERROR):
        await manager.start()
    try:
        assert list(manager.catalog.services) == ["good"]
        assert "cannot load services from bad.py" in caplog.text
        help_text = await ask_core(manager, "help")
        assert ("Failed to load:\n    bad: failed to load: ModuleNotFoundError: "
                "No module named 'no_such_module_here'\n\n") in help_text
        assert (await ask_core(manager, "help -s")).count("\n") == 4  # still three lines + separator
        assert await ask_core(manager, "help bad") == (
            "bad: failed to load: ModuleNotFoundError: No module named "
            "'no_such_module_here'\n" + SEP)
        # Fixed on disk, then restarted by name.
        journal(tmp_path, "bad.py", "Bad")
        assert await ask_core(manager, "restart bad") == "restarted: bad\n" + SEP
        assert "Failed to load" not in await ask_core(manager, "help")
    finally:
        await manager.stop()


async def test_a_service_whose_start_fails_is_reported():
    manager = Manager([FIXTURES / "start_fails"])  # sulky.py: start() raises OSError
    await manager.start()
    try:
        assert list(manager.catalog.services) == ["good"]
        assert manager.catalog.failures["sulky"].reason == (
            "failed to start: OSError: port 80 is taken")
        # Asked for by name, it says why, not "unknown command".
        assert await ask_core(manager, "sulky anything") == (
            "ERROR: sulky failed to start: OSError: port 80 is taken\n" + SEP)
    finally:
        await manager.stop()


async def test_names_that_cannot_be_used():
    # names.py: Help, Twice, Again (named "twice") and Spaced (named "two words")
    manager = Manager([FIXTURES / "bad_names"])
    await manager.start()
    try:
        assert list(manager.catalog.services) == ["twice"]
        failures = {k: v.reason for k, v in manager.catalog.failures.items()}
        assert failures == {
            "help": "not loaded: that name is a built-in command",
            "twice": "not loaded: another service already has that name",
            "two words": "not loaded: a service name is letters, digits, '_', '.', '-' (64 at most)",
        }
    finally:
        await manager.stop()


async def test_a_hook_that_hangs_is_bounded():
    class Stubborn(SService):
        async def stop(self):
            import asyncio
            await asyncio.sleep(3600)

    service = Stubborn()
    assert await start_service(service, timeout=0.05) is None
    await stop_service(service, timeout=0.05)
    assert service.state is State.STOPPED


async def test_a_start_that_hangs_fails():
    class Slow(SService):
        async def start(self):
            import asyncio
            await asyncio.sleep(3600)

    service = Slow()
    assert await start_service(service, timeout=0.05) == "start() timed out"
    assert service.state is State.FAILED


def test_states_change_only_along_the_table():
    service = SService()
    with pytest.raises(RuntimeError, match="cannot go from new to running"):
        service._change_state(State.RUNNING)


HANDOVER = '''
from smanager import SService, StartRefused

LOG = []


class Keeper(SService):
    """Hands a token to its next instance across restarts"""

    async def start(self):
        if self.options.get("refuse"):
            raise StartRefused("the state directory is in use")
        self.token = self.kept.pop("token", None) or object()
        LOG.append(("start", id(self.token)))

    async def stop(self):
        LOG.append(("stop", self.restarting))
        if self.restarting:
            self.kept["token"] = self.token

    async def cmd_token(self):
        """Which token it holds"""
        return str(id(self.token))
'''


async def test_a_restarting_service_can_hand_what_it_holds_to_its_next_instance(tmp_path):
    write(tmp_path, "keeper.py", HANDOVER)
    manager = Manager([tmp_path], hook_timeout=1.0)
    await manager.start()
    try:
        log = __import__("sys").modules[
            type(manager.catalog.services["keeper"].instance).__module__].LOG
        before = await ask_core(manager, "keeper token")
        await manager.restart("keeper")
        assert await ask_core(manager, "keeper token") == before
        assert ("stop", True) in log
        log = __import__("sys").modules[  # the new code's own module
            type(manager.catalog.services["keeper"].instance).__module__].LOG
    finally:
        await manager.stop()
    assert log[-1] == ("stop", False)  # the server stopping: nothing is kept


async def test_a_service_that_refuses_to_start_stops_the_server_with_its_one_line(tmp_path):
    write(tmp_path, "keeper.py", HANDOVER)
    manager = Manager([tmp_path], hook_timeout=1.0, options={"keeper": {"refuse": True}})
    with pytest.raises(ConfigError, match="^keeper: the state directory is in use$"):
        await manager.start()
    assert manager.catalog.services == {}


async def test_a_service_may_give_itself_a_longer_hook_time_limit(tmp_path):
    write(tmp_path, "slowstop.py", '''
import asyncio
from smanager import SService
from smanager.config import ConfigError


class SlowStop(SService):
    """Takes 0.3 s to stop, with a limit of its own"""

    hook_timeout = 2.0
    stopped = False

    async def stop(self):
        await asyncio.sleep(0.3)
        type(self).stopped = True
''')
    manager = Manager([tmp_path], hook_timeout=0.1)
    await manager.start()
    cls = type(manager.catalog.services["slowstop"].instance)
    await manager.stop()
    assert cls.stopped
