"""Who may run what: levels, the allowance before login, login and auth, and
users removed or added while the server runs (the core, without sockets)."""

import pytest
from helpers import (
    FAST,
    FIXTURE_SERVICES,
    FIXTURES,
    SEP,
    ask_core,
    make_users,
    started_manager,
)

from smanager.auth import scram as passwords
from smanager.auth.access import Access
from smanager.auth.levels import Level
from smanager.auth.peer import Peer
from smanager.config import bundled_services_dir


@pytest.fixture
async def closed(users_file):
    access = Access(users_file)
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES,
                               access=access) as manager:
        yield manager


def peer_of(manager, login=None, certificate=None):
    peer = Peer("test:1", "test", certificate)
    peer.login = login
    manager.access.greet(peer, manager.catalog)
    return peer


async def test_with_no_users_everyone_may_run_everything():
    async with started_manager(bundled_services_dir()) as manager:
        peer = peer_of(manager)
        assert (peer.level, peer.on_probation) == (Level.ADMIN, False)
        assert await ask_core(manager, "login alice x", peer) == \
            "ERROR: no users are configured: every command is open to this connection\n" + SEP
        assert "COMMANDS: help kill restart\n" in await ask_core(manager, "help -s", peer)


async def test_a_connection_that_has_not_logged_in_may_only_get_help(closed):
    peer = peer_of(closed)
    assert (peer.level, peer.on_probation) == (Level.NONE, True)
    assert await ask_core(closed, "help -s", peer) == \
        "TOP: \nSERVICES: \nCOMMANDS: help login\n" + SEP
    assert await ask_core(closed, "systemstatus uptime", peer) == \
        "ERROR: 'systemstatus uptime' needs a login first: login USER PASSWORD\n" + SEP
    assert await ask_core(closed, "hostname", peer) == \
        "ERROR: 'hostname' needs a login first: login USER PASSWORD\n" + SEP
    assert await ask_core(closed, "kill", peer) == \
        "ERROR: 'kill' needs a login first: login USER PASSWORD\n" + SEP
    assert await ask_core(closed, "help systemstatus", peer) == \
        "ERROR: no help for 'systemstatus' (try 'help')\n" + SEP
    assert await ask_core(closed, "mode text", peer) == "text\n" + SEP


async def test_each_level_runs_what_it_reaches_and_is_told_what_it_does_not(closed, caplog):
    carol, bob = peer_of(closed, "carol"), peer_of(closed, "bob")
    assert await ask_core(closed, "systemstatus echo hi", carol) == \
        "ERROR: 'systemstatus echo' needs the operate level; carol has read\n" + SEP
    assert await ask_core(closed, "systemstatus echo hi", bob) == "hi\n" + SEP
    assert await ask_core(closed, "restart", bob) == \
        "ERROR: 'restart' needs the admin level; bob has operate\n" + SEP
    assert "user=bob denied 'restart' (needs admin)" in caplog.text
    assert (await ask_core(closed, "help -s", carol)).startswith(
        "TOP: hostname\nSERVICES: monitor proc scrapman scripts systemstatus\nCOMMANDS: help login\n")
    assert await ask_core(closed, "help -s systemstatus", carol) == \
        "COMMANDS: help disk load memory uptime hostname\nTOP: hostname\n" + SEP


async def test_help_lists_only_what_the_level_may_run(closed):
    alice, bob = peer_of(closed, "alice"), peer_of(closed, "bob")
    assert (await ask_core(closed, "help -s", alice)).endswith(
        "COMMANDS: help kill login restart\n" + SEP)
    assert (await ask_core(closed, "help -s", bob)).endswith("COMMANDS: help login\n" + SEP)
    assert await ask_core(closed, "help kill", bob) == \
        "ERROR: no help for 'kill' (try 'help')\n" + SEP


async def test_a_read_level_sees_only_the_services_commands_marked_read(tmp_path):
    directory = FIXTURES / "mixed_levels"  # mixed: look is marked read, touch is not
    access = Access(make_users(tmp_path / "users", reader="read"))
    async with started_manager(directory, access=access) as manager:
        reader = peer_of(manager, "reader")
        assert await ask_core(manager, "help -s mixed", reader) == \
            "COMMANDS: help look\nTOP: \n" + SEP
        assert await ask_core(manager, "mixed look", reader) == "seen\n" + SEP
        assert await ask_core(manager, "help mixed touch", reader) == \
            "ERROR: unknown command 'touch' for mixed (try 'mixed help')\n" + SEP


async def test_the_unauthenticated_allowance_is_configurable(users_file):
    access = Access(users_file, ["systemstatus", "hostname"])
    async with started_manager(bundled_services_dir(), access=access) as manager:
        assert await ask_core(manager, "help", peer_of(manager)) == \
            "ERROR: 'help' needs a login first: login USER PASSWORD\n" + SEP
    access = Access(users_file, ["help", "systemstatus", "hostname"])
    async with started_manager(bundled_services_dir(), access=access) as manager:
        peer = peer_of(manager)
        assert await ask_core(manager, "systemstatus echo hi", peer) == "hi\n" + SEP
        assert await ask_core(manager, "help -s", peer) == \
            "TOP: hostname\nSERVICES: systemstatus\nCOMMANDS: help login\n" + SEP


async def test_the_allowance_holds_at_every_level_and_only_for_the_command_named(users_file):
    access = Access(users_file, ["help", "systemstatus echo", "hostname"])
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES,
                               access=access) as manager:
        carol, anonymous = peer_of(manager, "carol"), peer_of(manager)
        assert await ask_core(manager, "systemstatus echo hi", carol) == "hi\n" + SEP
        assert await ask_core(manager, "systemstatus echo hi", anonymous) == "hi\n" + SEP
        assert (await ask_core(manager, "hostname", anonymous)).count("\n") == 2
        # testsvc's own hostname is hidden by systemstatus's: naming one is not the other
        assert await ask_core(manager, "testsvc hostname", anonymous) == \
            "ERROR: 'testsvc hostname' needs a login first: login USER PASSWORD\n" + SEP


async def test_the_remembered_line_lane_checks_the_level(closed):
    alice, carol = peer_of(closed, "alice"), peer_of(closed, "carol")
    for _ in range(3):
        assert closed.answer(b"systemstatus echo hi", alice) == "hi"  # a str: done at once
    assert b"systemstatus echo hi" in closed.catalog.calls
    denied = closed.answer(b"systemstatus echo hi", carol)
    assert denied.error == "'systemstatus echo' needs the operate level; carol has read"


async def test_login_and_auth_give_the_users_level(closed, caplog):
    peer = peer_of(closed)
    assert await ask_core(closed, "login bob bob", peer) == "ERROR: login failed\n" + SEP
    assert await ask_core(closed, "login bob bob-PW", peer) == "ERROR: login failed\n" + SEP
    assert await ask_core(closed, "login nobody nobody-pw", peer) == \
        "ERROR: login failed\n" + SEP
    assert await ask_core(closed, "login bob bob-pw", peer) == \
        "ERROR: too many failed logins from test; try again in 1 s\n" + SEP
    assert "refused 1 login attempt(s) without checking them (latest from test)" in caplog.text
    closed.logins.backoff.failures.clear()
    assert await ask_core(closed, "login bob bob-pw", peer) == \
        "logged in as bob (operate)\n" + SEP
    assert (peer.level, peer.on_probation, peer.user) == (Level.OPERATE, False, "bob")
    other = peer_of(closed)
    assert await ask_core(closed, "auth AAAA", other) == \
        "ERROR: no challenge to answer: send 'challenge USER' first\n" + SEP
    login = passwords.ClientLogin("alice", "alice-pw")
    challenge = (await ask_core(closed, f"challenge alice {login.nonce}", other)).splitlines()[0]
    assert challenge.startswith(f"pbkdf2-sha256 {FAST} ")
    proof = login.proof(challenge)
    reply = (await ask_core(closed, f"auth {proof}", other)).splitlines()[0]
    assert reply.startswith("logged in as alice (admin); server signature ")
    assert login.server_is_real(reply)
    assert await ask_core(closed, f"auth {proof}", other) == \
        "ERROR: no challenge to answer: send 'challenge USER' first\n" + SEP


async def test_a_client_certificate_naming_a_user_needs_no_password(closed):
    assert peer_of(closed, certificate="alice").level is Level.ADMIN
    stranger = peer_of(closed, certificate="mallory")
    assert (stranger.level, stranger.on_probation) == (Level.NONE, True)


async def test_a_removed_user_loses_their_level_and_no_users_never_opens_the_server(
        tmp_path):
    path = tmp_path / "users"
    access = Access(make_users(path, alice="admin", bob="operate"))
    async with started_manager(bundled_services_dir(), access=access) as manager:
        anonymous, bob = peer_of(manager), peer_of(manager, "bob")
        assert access.closed and (anonymous.level, anonymous.on_probation) == (Level.NONE, True)
        assert bob.level is Level.OPERATE
        make_users(path, alice="admin")
        access.refresh()
        assert (bob.level, bob.login) == (Level.NONE, None)
        make_users(path)  # the last user removed
        access.refresh()
        assert access.closed and peer_of(manager).level is Level.NONE
        path.unlink()
        access.refresh()
        assert access.closed and peer_of(manager).level is Level.NONE


@pytest.mark.parametrize("content", [None, ""])
def test_a_users_file_naming_nobody_at_start_is_refused_not_open(tmp_path, content):
    path = tmp_path / "users"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError):
        Access(str(path))
