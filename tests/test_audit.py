"""The audit trail: one line per command, secrets FILTERED, rotation by size."""

import re

import pytest
from conftest import FIXTURE_SERVICES, SEP_LINE, LineClient, running_server

from smanager.config import ConfigError
from smanager.core.commands import command_from_function, filtered

SECRETS = '''from smanager import SService, filtered


class Vault(SService):
    """Commands with secrets"""

    @filtered("password")
    async def cmd_login(self, user, password, *, otp=""):
        """Checks a password"""
        return "welcome" if password == "hunter2" else "nope"

    @filtered("otp", "tokens")
    async def cmd_many(self, user, *tokens, otp=""):
        """Takes tokens"""
        return len(tokens)
'''
LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) user=- (ok|error=\"[^\"]*\") "
                  r"(\d+\.\dms) (\".*\")")


@filtered("password")
def cmd_login(self, user, password, *extra, otp=""):
    """Logs in"""


@pytest.mark.parametrize(("words", "shown"), [
    (["alice", "hunter2"], ["alice", "FILTERED"]),
    (["password=hunter2", "alice"], ["password=FILTERED", "alice"]),
    (["alice", "hunter2", "x", "otp=1"], ["alice", "FILTERED", "x", "otp=1"]),
    (["user=alice", "hunter2"], ["FILTERED", "FILTERED"]),  # binds to nothing: all hidden
])
def test_secret_parameters_are_filtered_however_they_are_given(words, shown):
    command = command_from_function("login", cmd_login)
    assert command.secret == {"password"}
    assert command.filtered(words, "FILTERED") == shown


async def test_each_command_is_one_line_with_its_outcome(tmp_path):
    (tmp_path / "vault.py").write_text(SECRETS)
    trail = tmp_path / "audit.log"
    async with running_server(services=[str(FIXTURE_SERVICES), str(tmp_path)],
                              audit_log=str(trail)) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send("testsvc add 1 2\n\nnosuch\nvault login alice hunter2\n"
                              "vault many bob t1 t2 otp=123\ntestsvc count 2\n'unbalanced")
            for _ in range(6):
                await client.reply()
            assert await client.ask("testsvc sleep 0.01") == "slept 0.01\n" + SEP_LINE.decode()
        finally:
            await client.close()
    rows = [LINE.fullmatch(line) for line in trail.read_text().splitlines()]
    assert all(rows), trail.read_text()
    assert [(row[3], row[5]) for row in rows] == [
        ("ok", '"testsvc add 1 2"'),
        ('error="unknown command \'nosuch\' (try \'help\')"', '"nosuch"'),
        ("ok", '"vault login alice FILTERED"'),
        ("ok", '"vault many bob FILTERED FILTERED otp=FILTERED"'),
        ("ok", '"testsvc count 2"'),
        ('error="unbalanced quotes"', '"\'unbalanced"'),
        ("ok", '"testsvc sleep 0.01"'),
    ]
    assert {row[2] for row in rows} == {rows[0][2]} and rows[0][2].startswith("127.0.0.1:")
    assert "hunter2" not in trail.read_text() and "t1" not in trail.read_text()


async def test_the_trail_rotates_by_size(tmp_path):
    trail = tmp_path / "audit.log"
    async with running_server(audit_log=str(trail), audit_log_max_bytes=400,
                              audit_log_backups=2) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send("testsvc add 1 1\n" * 40)
            for _ in range(40):
                await client.reply()
        finally:
            await client.close()
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((tmp_path / name).stat().st_size <= 400 for name in files)


async def test_the_trail_can_go_to_stderr(capsys):
    async with running_server(audit_log="-") as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.ask("testsvc add 2 2")
        finally:
            await client.close()
    assert LINE.fullmatch(capsys.readouterr().err.strip().splitlines()[-1])


async def test_an_audit_log_that_cannot_be_opened_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot open audit log"):
        async with running_server(audit_log=str(tmp_path / "missing" / "audit.log")):
            pass
