"""The audit trail: one line per command whatever path it took, secrets FILTERED
(in the trail and out of the server's own log), characters that could forge a
row escaped, rotation by size."""

import logging
import os
import re
import stat
import time
import types
from pathlib import Path

import pytest
from helpers import (
    SEP,
    SEP_LINE,
    LineClient,
    reset,
    running_server,
    short_dir,
    the_testsvc,
    until,
    with_fixtures,
)

from smanager.auth.audit import Audit
from smanager.config import ConfigError
from smanager.core.builtins import Builtins
from smanager.core.commands import command_from_function, commands_of, filtered

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


class Vault:
    secret_names = {"pin", "key"}  # what only the service knows, per request


@filtered(by=lambda vault, words: [word for word in words[1:]
                                   if word.partition("=")[0] in vault.secret_names])
def cmd_run(self, *name_and_params):
    """Runs something with parameters only the service knows"""


def secret_words_of_broken_service(vault, words):
    raise RuntimeError("a bug in the service")


@pytest.mark.parametrize(("words", "shown"), [
    (["open", "pin=1234", "door=front"], ["open", "pin=FILTERED", "door=front"]),
    (["open", "key=k", "pin=1"], ["open", "key=FILTERED", "pin=FILTERED"]),
    (["open"], ["open"]),
])
def test_secrets_only_the_request_tells_are_filtered_as_the_service_names_them(words, shown):
    command = command_from_function("run", cmd_run)
    assert command.filtered(words, "FILTERED", Vault()) == shown


def test_a_service_that_fails_to_name_its_secrets_has_every_word_filtered():
    command = command_from_function("run", filtered(by=secret_words_of_broken_service)(
        lambda self, *words: None))
    assert command.filtered(["open", "pin=1234"], "F", Vault()) == ["F", "F"]


def test_a_login_line_that_does_not_bind_is_written_down_masked():
    login = commands_of(Builtins)["login"]
    assert login.filtered(["alice", "s3cret"], "F") == ["alice", "F"]
    assert login.filtered(["alice", "user=s3cret"], "F") == ["F", "F"]
    assert login.filtered(["s3cret"], "F") == ["F"]
    assert login.filtered(["alice", "s3cret", "more"], "F") == ["F", "F", "F"]


def rows(trail):
    return [line for line in Path(trail).read_text(encoding="utf-8").split("\n") if line]


async def test_each_command_is_one_line_with_its_outcome(tmp_path):
    trail = tmp_path / "audit.log"
    async with running_server(services=with_fixtures("vault"), audit_log=str(trail)) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send("testsvc add 1 2\n\nnosuch\nvault login alice hunter2\n"
                              "vault many bob t1 t2 otp=123\ntestsvc count 2\n'unbalanced")
            for _ in range(6):
                await client.reply()
            assert await client.ask("testsvc sleep 0.01") == "slept 0.01\n" + SEP
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


async def forty_commands(trail, backups):
    """Forty commands through a server whose trail rotates at 400 bytes."""
    async with running_server(audit_log=str(trail), audit_log_max_bytes=400,
                              audit_log_backups=backups) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send("testsvc add 1 1\n" * 40)
            for _ in range(40):
                await client.reply()
        finally:
            await client.close()


async def test_the_trail_rotates_by_size(tmp_path):
    await forty_commands(tmp_path / "audit.log", backups=2)
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


async def test_a_command_whose_client_resets_still_leaves_an_audit_line(tmp_path):
    """Guards a fault since fixed, which was:
    worker.py _finish(), pipeline.py lost(): when the connection is lost while a command
    runs, the worker is cancelled and the CancelledError is re-raised before
    _audit() is reached.  The command goes on regardless (a thread, a shielded
    restart), yet the trail never mentions it: a client can run anything without
    a trace by resetting the connection right after sending it (over TLS merely
    half-closing does it, since asyncio closes a TLS connection at EOF).  Every
    line that began must be written, e.g. with error="connection lost"."""
    trail = tmp_path / "audit.log"
    async with running_server(audit_log=str(trail)) as server:
        service = the_testsvc(server)
        client = await LineClient.connect(server.address[1])
        await client.send("testsvc block 0.3")
        assert await until(lambda: service.active == 1)  # the thread runs
        reset(client)
        assert await until(lambda: not server.connections)
        assert await until(lambda: service.active == 0)  # and it ran to its end
    assert any('"testsvc block 0.3"' in row for row in rows(trail)), rows(trail)


async def test_a_unix_socket_client_keeps_the_audit_line_format(tmp_path):
    """Guards a fault since fixed, which was:
    audit.py record(): the client field is peer.address, which is the two words
    "unix socket" for a Unix socket client, so the line no longer splits into
    its documented fields (when, client, user, outcome, time, command).  The
    client must be one word (say "unix" or a quoted string)."""
    trail = tmp_path / "audit.log"
    with short_dir() as directory:
        path = directory / "s.sock"
        async with running_server(unix_socket=str(path), tcp=False, audit_log=str(trail)):
            client = await LineClient.connect_unix(path)
            try:
                assert await client.ask("testsvc add 1 2") == "3\n" + SEP
            finally:
                await client.close()
    [row] = rows(trail)
    assert LINE.fullmatch(row), row


async def test_an_argument_error_keeps_the_secret_out_of_the_trail(tmp_path):
    """Guards a fault since fixed, which was:
    audit.py record() / commands.py Param.convert(): the command is FILTERED,
    but the error is written as is, and a conversion error quotes the value:
    error="PIN must be a whole number, not '12ab34'; ...".  The secret a user
    mistyped is in the trail in clear (in text and JSON mode).  Secret
    parameters must not be echoed in the error (or the error must be masked)."""
    trail = tmp_path / "audit.log"
    settings = {"services": with_fixtures("vault"), "audit_log": str(trail)}
    async with running_server(**settings) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert (await client.ask("vault unlock alice 12ab34")).startswith("ERROR: PIN must")
            await client.send("mode json")
            await client.reader.readline()
            await client.send("vault unlock alice pin=x9y8z7")
            assert b'"ok": false' in await client.reader.readline()
        finally:
            await client.close()
    text = trail.read_text()
    assert len(rows(trail)) == 3
    assert "12ab34" not in text and "x9y8z7" not in text, text


async def test_a_secret_in_a_line_that_does_not_parse_stays_out_of_the_trail(tmp_path):
    """Guards a fault since fixed, which was:
    audit.py shown(): on a ParseError the raw line is written whole.  A password
    with a quote in it (it's-me) or an invalid UTF-8 byte makes the line
    unparseable, and the secret lands in the trail.  The words could still be
    split on whitespace and masked with the command's filter (or everything
    after the command name replaced)."""
    trail = tmp_path / "audit.log"
    settings = {"services": with_fixtures("vault"), "audit_log": str(trail)}
    async with running_server(**settings) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert await client.ask("vault login alice it's-hunter2") == \
                "ERROR: unbalanced quotes\n" + SEP
            assert await client.ask(b"vault login alice hunter3\xfe\n") == \
                "ERROR: line is not valid UTF-8\n" + SEP
        finally:
            await client.close()
    assert len(rows(trail)) == 2
    assert "hunter2" not in trail.read_text() and "hunter3" not in trail.read_text(), rows(trail)


async def test_the_trail_escapes_line_and_format_characters(tmp_path):
    """Guards a fault since fixed, which was:
    audit.py: the command and the user go through json.dumps(ensure_ascii=False),
    which leaves U+2028/U+2029, NEL (U+0085), other C1 controls and bidi
    overrides (U+202E) as they are.  A client can split its row in two for any
    reader that honours those line breaks (str.splitlines() does) and forge a
    row, or reorder what an admin's terminal shows; a certificate's name can do
    the same to the user field.  errors.py already strips such characters from
    echoed input; the trail should escape them (ensure_ascii=True would do)."""
    trail = tmp_path / "audit.log"
    forged = "\u2028 2026-11-22T14:03:07.412Z 10.0.0.9:1 user=root ok 0.1ms kill"
    async with running_server(audit_log=str(trail)) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.ask("systemstatus echo a\x85b\u202ec" + forged)
        finally:
            await client.close()
    direct = tmp_path / "direct.log"
    catalog = types.SimpleNamespace(resolve=lambda words: "unknown command")
    audit = Audit(str(direct), 10**6, 1, lambda: catalog)
    try:
        peer = types.SimpleNamespace(address="127.0.0.1:1", user="eve\u2028\u202eroot")
        audit.record(time.time(), b"help", peer, None)
    finally:
        audit.close()
    for text in (trail.read_text(encoding="utf-8"), direct.read_text(encoding="utf-8")):
        assert len(text.splitlines()) == text.count("\n") == 1, text.splitlines()
        assert not set(text) & {"\x85", "\u2028", "\u2029", "\u202e"}, ascii(text)


async def test_no_backups_still_bounds_the_trail(tmp_path):
    """Guards a fault since fixed, which was:
    audit.py: with --audit-log-backups 0 the RotatingFileHandler never rolls
    over (it only reopens the file, on every line), so --audit-log-max-bytes is
    ignored and the trail grows until the disk is full.  Either refuse 0 in the
    configuration or truncate the file at the limit."""
    trail = tmp_path / "audit.log"
    try:
        await forty_commands(trail, backups=0)
    except ConfigError:
        return  # refusing the setting is a fix too
    assert trail.stat().st_size <= 400, f"{trail.stat().st_size} bytes with a 400-byte limit"


async def test_each_path_writes_exactly_one_line(tmp_path):
    """Pin: JSON mode, pipelined lines, an interrupted command, a queued line
    dropped by Ctrl-C (never ran: not written), a one-shot client, and a command
    cut short by shutdown: one line each, in order, nothing twice."""
    trail = tmp_path / "audit.log"
    async with running_server(audit_log=str(trail), shutdown_timeout=0.3) as server:
        port = server.address[1]
        client = await LineClient.connect(port)
        await client.send("mode json\ntestsvc add 1 2\ntestsvc count 2\ntestsvc nosuch")
        lines = [await client.reader.readline() for _ in range(6)]
        assert lines[-1] == b'{"ok": false, "error": "unknown command \'nosuch\' for testsvc ' \
                            b'(try \'testsvc help\')"}\n'
        await client.send("mode text\ntestsvc sleep 5\ntestsvc add 3 3")
        assert await client.reply() == b"text\n" + SEP_LINE
        assert await until(lambda: server.connections and
                           all(c.pipeline.busy for c in server.connections))
        await client.send(b"\xff\xf4")  # Ctrl-C
        assert await client.reply() == b"ERROR: interrupted\n" + SEP_LINE
        oneshot = await LineClient.connect(port)
        await oneshot.send(b"testsvc add 5 5")  # no newline, no half-close
        assert await oneshot.read_all() == b"10\n" + SEP_LINE
        await oneshot.close()
        await client.send("testsvc sleep 5")
        assert await until(lambda: all(c.pipeline.busy for c in server.connections))
    await client.close()
    found = [(LINE.fullmatch(row)[3], LINE.fullmatch(row)[5]) for row in rows(trail)]
    assert found == [
        ("ok", '"mode json"'), ("ok", '"testsvc add 1 2"'), ("ok", '"testsvc count 2"'),
        ("error=\"unknown command FILTERED for testsvc (try 'testsvc help')\"",
         '"testsvc FILTERED"'),  # names no command: only its first word
        ("ok", '"mode text"'), ('error="interrupted"', '"testsvc sleep 5"'),
        ("ok", '"testsvc add 5 5"'), ('error="server is shutting down"', '"testsvc sleep 5"'),
    ]


async def test_secrets_stay_out_of_the_servers_own_log(tmp_path, caplog):
    """Pin: nothing of a secret command reaches the ordinary log."""
    settings = {"services": with_fixtures("vault"), "audit_log": "-"}
    caplog.set_level(logging.DEBUG, logger="smanager")
    async with running_server(**settings) as server:
        client = await LineClient.connect(server.address[1])
        try:
            assert await client.ask("vault login alice hunter2") == "welcome\n" + SEP
            await client.ask("vault login")
        finally:
            await client.close()
    assert "hunter2" not in caplog.text


async def test_a_line_that_does_not_resolve_is_written_with_its_first_word_only(tmp_path):
    """Secrets in a line that names no command (the service failed to import,
    or its name or the command's is mistyped) stay out of the trail: only the
    first word is written, and the error does not echo a masked word."""
    trail, broken = tmp_path / "audit.log", tmp_path / "broken"
    broken.mkdir()
    (broken / "safe.py").write_text("raise ImportError('not today')\n")
    settings = {"services": with_fixtures("vault") + [str(broken)], "audit_log": str(trail)}
    async with running_server(**settings) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send("safe unlock alice s3cret-1\nvualt unlock alice s3cret-2\n"
                              "vault unlokc alice s3cret-3\nvault s3cret-4\n"
                              "safe open 'it''s s3cret-5\nvault unlock alice 1234\n")
            for _ in range(6):
                await client.reply()
        finally:
            await client.close()
    found = [(LINE.fullmatch(row)[3], LINE.fullmatch(row)[5]) for row in rows(trail)]
    assert found[0][1] == '"safe FILTERED FILTERED FILTERED"'  # its error says why it failed
    assert found[1:] == [
        ("error=\"unknown command 'vualt' (try 'help')\"",
         '"vualt FILTERED FILTERED FILTERED"'),
        ("error=\"unknown command FILTERED for vault (try 'vault help')\"",
         '"vault FILTERED FILTERED FILTERED"'),
        ("error=\"unknown command FILTERED for vault (try 'vault help')\"",
         '"vault FILTERED"'),
        ('error="unbalanced quotes"', '"safe FILTERED FILTERED FILTERED"'),
        ("ok", '"vault unlock alice FILTERED"'),
    ]
    assert "s3cret" not in trail.read_text() and "unlokc" not in trail.read_text()


def test_the_trail_masks_what_does_not_resolve_without_a_server(tmp_path):
    catalog = types.SimpleNamespace(resolve=lambda words: f"unknown command '{words[0]}'")
    audit = Audit(str(tmp_path / "audit.log"), 10**6, 1, lambda: catalog)
    try:
        assert audit.shown(b"vault unlock alice s3cret") == "vault FILTERED FILTERED FILTERED"
        assert audit.shown(b"solo") == "solo"
        assert audit.shown(b"  \n") == ""
    finally:
        audit.close()


async def test_the_trail_and_its_rotated_files_are_private(tmp_path):
    """Created 0600 whatever the umask, never readable by others, not even briefly:
    the file is opened with its mode, not chmodded after."""
    trail = tmp_path / "audit.log"
    before = os.umask(0o022)
    try:
        async with running_server(audit_log=str(trail), audit_log_max_bytes=200,
                                  audit_log_backups=2) as server:
            assert stat.S_IMODE(trail.stat().st_mode) == 0o600  # before any line
            client = await LineClient.connect(server.address[1])
            try:
                await client.send("testsvc add 1 1\n" * 10)
                for _ in range(10):
                    await client.reply()
            finally:
                await client.close()
    finally:
        os.umask(before)
    files = sorted(tmp_path.iterdir())
    assert [path.name for path in files] == ["audit.log", "audit.log.1", "audit.log.2"]
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == \
        dict.fromkeys(["audit.log", "audit.log.1", "audit.log.2"], 0o600)
