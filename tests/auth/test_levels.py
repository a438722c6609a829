"""Levels: what each command needs (operate unless marked), built-ins included."""

import pytest

from smanager.auth import levels
from smanager.auth.levels import Level
from smanager.core.builtins import Builtins
from smanager.core.commands import command_from_function, commands_of


def test_commands_need_operate_unless_marked():
    class Service:
        def cmd_plain(self):
            """plain"""

        @levels.level("read")
        def cmd_look(self):
            """look"""

        @levels.level("admin")
        def cmd_wipe(self):
            """wipe"""

    table = commands_of(Service)
    assert {name: table[name].level for name in table} == \
        {"look": Level.READ, "plain": Level.OPERATE, "wipe": Level.ADMIN}
    with pytest.raises(ValueError, match="level must be one of read, operate, admin"):
        levels.level("root")


def test_a_level_set_by_hand_must_be_one():
    def cmd_odd(self):
        """odd"""
    cmd_odd.required_level = "admin"
    assert command_from_function("odd", cmd_odd).level is Level.ADMIN
    cmd_odd.required_level = 99
    with pytest.raises(ValueError, match="level must be one of"):
        command_from_function("odd", cmd_odd)


def test_the_builtins_levels():
    table = commands_of(Builtins)
    assert {name: str(command.level) for name, command in table.items()} == {
        "auth": "none", "challenge": "none", "exit": "none", "help": "read", "kill": "admin",
        "login": "none", "mode": "none", "quit": "none", "restart": "admin",
        "status": "read"}
