"""Users, levels and logging in: the pure parts, the core without sockets,
the admin subcommand, and the clients that log in."""

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURE_SERVICES, ROOT, TIMEOUT, ask_core, started_manager

from smanager.auth import levels, users
from smanager.auth import scram as passwords
from smanager.auth.access import Access
from smanager.auth.levels import Level
from smanager.auth.login import Backoff
from smanager.auth.peer import Peer
from smanager.cli import users as users_cli
from smanager.client import AsyncClient, Client, LoginFailed
from smanager.config import bundled_services_dir
from smanager.core.commands import command_from_function, commands_of
from smanager.wire.protocol import SEPARATOR

FAST = passwords.MIN_ITERATIONS  # PBKDF2 iterations for tests: the least allowed
SEP = SEPARATOR + "\n"


def make_users(path, **levels_by_name):
    """A users file where each user's password is its name and "-pw"."""
    users.save(path, {name: users.User(name, levels.parse(level),
                                       passwords.Verifier.for_password(f"{name}-pw", FAST))
                      for name, level in levels_by_name.items()})
    return str(path)


@pytest.fixture
def users_file(tmp_path):
    return make_users(tmp_path / "users", alice="admin", bob="operate", carol="read")


# -- passwords ------------------------------------------------------------------------

def test_a_verifier_checks_its_password_and_survives_the_file():
    verifier = passwords.Verifier.for_password("correct horse", FAST)
    again = passwords.Verifier.decode(verifier.encode())
    assert again == verifier
    assert again.check_password("correct horse")
    assert not again.check_password("correct hors")
    assert "correct horse" not in verifier.encode()


def test_passwords_typed_in_either_unicode_form_are_the_same():
    verifier = passwords.Verifier.for_password("caf\u00e9", FAST)
    assert verifier.check_password("cafe\u0301")


def login_proof(verifier, user, password, server_nonce="s" * 24):
    """A client's proof for a challenge from ``verifier``: (ClientLogin, nonce, proof)."""
    login = passwords.ClientLogin(user, password)
    nonce = login.nonce + server_nonce
    return login, nonce, login.proof(verifier.challenge(nonce))


def test_a_proof_logs_in_once_for_its_nonce_and_user():
    verifier = passwords.Verifier.for_password("pw", FAST)
    _, nonce, proof = login_proof(verifier, "alice", "pw")
    assert verifier.check_proof("alice", nonce, proof)
    assert not verifier.check_proof("alice", nonce + "x", proof)  # another nonce
    assert not verifier.check_proof("mallory", nonce, proof)  # another user
    _, nonce2, wrong = login_proof(verifier, "alice", "pW")
    assert not verifier.check_proof("alice", nonce2, wrong)
    for junk in ("", "!!!", "AAAA", proof[:-4], "é"):
        assert not verifier.check_proof("alice", nonce, junk)


def test_only_the_real_server_can_sign_the_login():
    verifier = passwords.Verifier.for_password("pw", FAST)
    login, nonce, _ = login_proof(verifier, "alice", "pw")
    signature = verifier.server_signature("alice", nonce)
    assert login.server_is_real(f"logged in as alice (admin); server signature {signature}")
    impostor = passwords.Verifier.for_password("pw", FAST)  # same password, other salt
    assert not login.server_is_real(impostor.server_signature("alice", nonce))
    assert not login.server_is_real("logged in as alice (admin)")
    assert not passwords.ClientLogin("a", "pw").server_is_real(signature)  # no challenge yet


@pytest.mark.parametrize(("text", "message"), [
    ("md5:10000:AAAA:AAAA:AAAA", "not a pbkdf2-sha256 verifier"),
    ("pbkdf2-sha256:1000:AAAA:AAAA:AAAA", "of 10,000 to 10,000,000 iterations"),
    ("pbkdf2-sha256:99999999:AAAA:AAAA:AAAA", "of 10,000 to 10,000,000 iterations"),
    ("pbkdf2-sha256:10000:A!:AAAA:AAAA", "salt and keys must be base64"),
    ("pbkdf2-sha256:10000:AAAA:AAAA:AAAA", "not SHA-256 digests"),
    ("pbkdf2-sha256:10000:AAAA:AAAA", "not enough values"),
])
def test_a_verifier_that_is_not_one_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        passwords.Verifier.decode(text)


@pytest.mark.parametrize(("challenge", "message"), [
    ("nonsense", "not a challenge"),
    ("md5 10000 AAAA {nonce}", "will not answer a md5 challenge"),
    ("pbkdf2-sha256 1000 AAAA {nonce}", "of 1000 iterations"),  # cheap to crack offline
    ("pbkdf2-sha256 2147483648 AAAA {nonce}", "of 2147483648 iterations"),  # a hang
    ("pbkdf2-sha256 10000 AAAA someone-elses-nonce", "does not carry this client's nonce"),
    ("pbkdf2-sha256 10000 AAAA {client}", "does not carry this client's nonce"),
])
def test_a_client_answers_only_challenges_it_trusts(challenge, message):
    login = passwords.ClientLogin("alice", "pw")
    challenge = challenge.format(nonce=login.nonce + "s" * 24, client=login.nonce)
    with pytest.raises(ValueError, match=message):
        login.proof(challenge)


def test_a_decoy_looks_the_same_every_time_and_matches_nothing():
    secret = b"s" * 32
    first = passwords.decoy(secret, "ghost", [FAST, 20_000])
    assert first == passwords.decoy(secret, "ghost", [20_000, FAST])
    assert first != passwords.decoy(secret, "other", [FAST, 20_000])
    assert first.iterations in (FAST, 20_000)
    assert not first.check_password("")
    counts = {passwords.decoy(secret, f"u{n}", [FAST, 20_000]).iterations for n in range(40)}
    assert counts == {FAST, 20_000}  # not always the first user's count


# -- the users file ---------------------------------------------------------------------

def test_the_users_file_round_trips_and_is_private(tmp_path, users_file):
    text = Path(users_file).read_text()
    assert text.startswith("# smanager users")
    assert [line.split()[:2] for line in text.splitlines()[1:]] == \
        [["alice", "admin"], ["bob", "operate"], ["carol", "read"]]
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
    assert users.parse(text) == users.load(users_file)
    assert users.load(tmp_path / "missing") == {}


@pytest.mark.parametrize(("text", "message"), [
    ("alice admin\n", "line 1: not enough values"),
    ("# c\n\nalice boss pbkdf2-sha256:10000:AAAA:AAAA:AAAA\n", "line 3: level must be one of"),
    ("al ice admin x y\n", "line 1: too many values"),
    ("al/ice admin x\n", "line 1: a user name is 1-64"),
])
def test_a_bad_users_file_names_its_line(text, message):
    with pytest.raises(ValueError, match=message):
        users.parse(text)


def test_the_same_user_twice_is_refused(users_file):
    line = Path(users_file).read_text().splitlines()[1]
    with pytest.raises(ValueError, match="line 2: alice is there twice"):
        users.parse(f"{line}\n{line}\n")


def test_the_server_sees_a_changed_file_and_keeps_the_last_good_one(tmp_path, users_file,
                                                                      caplog):
    watched = users.UsersFile(users_file)
    assert set(watched.users) == {"alice", "bob", "carol"}
    assert watched.refresh() is False  # unchanged: not read again
    make_users(tmp_path / "users", alice="read")
    assert watched.refresh() is True
    assert watched.users["alice"].level is Level.READ
    with open(users_file, "a") as handle:
        handle.write("garbage\n")
    assert watched.refresh() is False
    assert watched.users["alice"].level is Level.READ
    assert "keeping the users read before" in caplog.text


# -- levels -------------------------------------------------------------------------------

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
    from smanager.core.builtins import Builtins
    table = commands_of(Builtins)
    assert {name: str(command.level) for name, command in table.items()} == {
        "auth": "none", "challenge": "none", "exit": "none", "help": "read", "kill": "admin",
        "login": "none", "mode": "none", "quit": "none", "restart": "admin"}


# -- back-off ------------------------------------------------------------------------

def test_backoff_lets_a_few_failures_through_then_doubles_up_to_its_cap():
    now = [1000.0]
    backoff = Backoff(max_delay=5.0, clock=lambda: now[0])
    waits = []
    for _ in range(7):
        waits.append(backoff.wait("10.0.0.1"))
        backoff.failed("10.0.0.1")
    assert waits == [0, 0, 0, 1.0, 2.0, 4.0, 5.0]
    assert backoff.wait("10.0.0.2") == 0
    now[0] += 2.0
    assert backoff.wait("10.0.0.1") == 3.0


def test_a_success_takes_back_only_its_own_failure():
    now = [1000.0]
    backoff = Backoff(max_delay=5.0, clock=lambda: now[0])
    for _ in range(3):
        backoff.failed("10.0.0.1")
    now[0] += 1.0
    counted = backoff.failed("10.0.0.1")  # an attempt begins: a failure until it is not
    backoff.succeeded("10.0.0.1", counted)
    assert backoff.failures["10.0.0.1"] == (3, 1000.0)  # as before: the wait not restarted
    assert backoff.wait("10.0.0.1") == 0
    counted = backoff.failed("10.0.0.1")
    now[0] += 0.5
    backoff.failed("10.0.0.1")  # another guess failed meanwhile
    backoff.succeeded("10.0.0.1", counted)
    assert backoff.failures["10.0.0.1"] == (4, 1001.5)


def test_backoff_counts_an_ipv6_64_as_one_address_and_never_overflows():
    now = [0.0]
    backoff = Backoff(max_delay=60.0, clock=lambda: now[0])
    for number in range(2000):
        backoff.failed(f"2001:db8::{number:x}")
    assert list(backoff.failures) == ["2001:db8::/64"]
    assert backoff.wait("2001:db8::ffff") == 60.0
    assert backoff.wait("2001:db8:0:1::1") == 0


def test_backoff_forgets_quiet_addresses_and_stays_bounded(monkeypatch):
    monkeypatch.setattr("smanager.auth.login.MAX_ADDRESSES", 100)
    now = [0.0]
    backoff = Backoff(max_delay=60.0, clock=lambda: now[0])
    for number in range(500):
        backoff.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(backoff.failures) == 100
    for _ in range(4):
        backoff.failed("192.0.2.1")
    now[0] += 901
    assert backoff.wait("192.0.2.1") == 0


# -- the core: who may run what ---------------------------------------------------------

@pytest.fixture
async def closed(users_file):
    access = Access(users_file)
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES,
                               access=access) as manager:
        yield manager


def peer_of(manager, login=None, certificate=None):
    peer = Peer("test:1", "test", certificate)
    peer.login = login
    manager.access.greet(peer)
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
        "TOP: hostname\nSERVICES: scrapman systemstatus\nCOMMANDS: help login\n")
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
    directory = tmp_path / "svc"
    directory.mkdir()
    (directory / "mixed.py").write_text(
        "from smanager import SService, level\n"
        "class Mixed(SService):\n"
        "    '''half open'''\n"
        "    @level('read')\n"
        "    def cmd_look(self):\n        '''look'''\n        return 'seen'\n"
        "    def cmd_touch(self):\n        '''touch'''\n        return 'done'\n")
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


async def test_the_remembered_line_lane_checks_the_level(closed):
    alice, carol = peer_of(closed, "alice"), peer_of(closed, "carol")
    for _ in range(3):
        assert closed.answer(b"systemstatus echo hi", alice).value == "hi"
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


async def test_removing_a_user_takes_away_their_level_and_adding_one_closes_the_server(
        tmp_path):
    path = tmp_path / "users"
    access = Access(str(path))
    async with started_manager(bundled_services_dir(), access=access) as manager:
        early = peer_of(manager)
        assert early.level is Level.ADMIN and not access.closed
        make_users(path, alice="admin", bob="operate")
        access.refresh()
        assert access.closed and (early.level, early.on_probation) == (Level.NONE, True)
        bob = peer_of(manager, "bob")
        make_users(path, alice="admin")
        access.refresh()
        assert (bob.level, bob.login) == (Level.NONE, None)
        path.unlink()
        access.refresh()
        assert access.closed  # removing every user never opens the server again


# -- smanager users -----------------------------------------------------------------------

def users_command(*argv, password=None):
    """``python -m smanager users ...``: (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "smanager", "users", *argv], cwd=ROOT,
                          input=password, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)
    return done.returncode, done.stdout, done.stderr


def test_the_admin_subcommand_manages_users(tmp_path):
    path = str(tmp_path / "users")
    file = ["--users-file", path]
    assert users_command(*file, "add", "dave", "--level", "admin", "--password-stdin",
                         "--iterations", str(FAST), password="pw\n") == \
        (0, "add: dave: done\n", "")
    assert users.load(path)["dave"].verifier.check_password("pw")
    assert users_command(*file, "add", "dave", "--password-stdin", password="x\n") == \
        (1, "", "smanager users: dave is already a user; change it with 'password' or "
                "'level'\n")
    assert users_command(*file, "level", "dave", "read")[0] == 0
    assert users_command(*file, "password", "dave", "--password-stdin", "--iterations",
                         str(FAST), password="new\n")[0] == 0
    assert users.load(path)["dave"].verifier.check_password("new")
    assert users_command(*file, "list") == (0, "dave read\n", "")
    assert users_command(*file, "remove", "eve") == (1, "", "smanager users: no user eve\n")
    assert users_command(*file, "remove", "dave")[0] == 0
    assert users_command(*file, "list") == (0, "", "")


@pytest.mark.parametrize(("argv", "password", "status", "message"), [
    (["list"], None, 2, "which file? give --users-file FILE or --config FILE"),
    (["--users-file", "U", "add", "a b", "--password-stdin"], "x\n", 2, "a user name is 1-64"),
    (["--users-file", "U", "add", "x", "--password-stdin"], "\n", 1, "an empty password"),
    (["--users-file", "U", "add", "x", "--password-stdin", "--iterations", "5"], "x\n", 2,
     "--iterations must be at least 1000"),
    (["--users-file", "U", "level", "x", "boss"], None, 2, "invalid choice: 'boss'"),
])
def test_the_admin_subcommand_refuses_in_one_line(tmp_path, argv, password, status, message):
    argv = [str(tmp_path / "u") if word == "U" else word for word in argv]
    code, out, err = users_command(*argv, password=password)
    assert code == status and out == "" and message in err and err.count("\n") == 1


def test_the_admin_subcommand_finds_the_file_in_the_config(tmp_path):
    config = tmp_path / "smanager.toml"
    config.write_text('users_file = "people"\n')
    args = users_cli.build_parser().parse_args(["--config", str(config), "list"])
    assert users_cli.users_file(args) == "people"
    out = io.StringIO()
    users_cli.run(args, str(tmp_path / "none"), out)
    assert out.getvalue() == ""


# -- the clients log in without sending the password -----------------------------------------

def test_the_blocking_client_logs_in_and_again_after_a_restart(server_thread, users_file):
    port = server_thread.start(users_file=users_file)
    with Client("127.0.0.1", port, timeout=TIMEOUT, user="bob", password="bob-pw") as client:
        assert client.run("systemstatus", "echo", "hi") == "hi"
        assert client.commands("systemstatus")  # help as bob sees it
        assert client.call("kill").error == "'kill' needs the admin level; bob has operate"
        client.close()
        assert client.run("systemstatus", "echo", "again") == "again"  # logged in again
    with pytest.raises(LoginFailed, match="cannot log in as bob: login failed"):
        Client("127.0.0.1", port, timeout=TIMEOUT, user="bob", password="nope").connect()


async def test_the_async_client_logs_in(server_thread, users_file):
    port = server_thread.start(users_file=users_file)
    async with AsyncClient("127.0.0.1", port, timeout=TIMEOUT, user="alice",
                           password="alice-pw") as client:
        assert await client.builtins() == ["help", "kill", "login", "restart"]
    with pytest.raises(LoginFailed, match="login failed"):
        await AsyncClient("127.0.0.1", port, timeout=TIMEOUT, user="nobody",
                          password="x").connect()


def tshell(*args, env=None):
    done = subprocess.run([sys.executable, "tshell.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT * 3, stdin=subprocess.DEVNULL,
                          start_new_session=True, check=False,  # no terminal to ask on
                          env={**os.environ, "SMANAGER_PASSWORD": "", **(env or {})})
    return done.returncode, done.stdout, done.stderr


def test_tshell_logs_in_with_the_password_from_the_environment(server_thread, users_file):
    where = f"127.0.0.1:{server_thread.start(users_file=users_file)}"
    assert tshell("--user", "bob", where, "-c", "systemstatus echo hi",
                  env={"SMANAGER_PASSWORD": "bob-pw"}) == (0, "hi\n", "")
    assert tshell("--user", "bob", where, "-c", "help", env={"SMANAGER_PASSWORD": "x"}) == \
        (2, "", f"tshell: {where}: cannot log in as bob: login failed\n")
    assert tshell(where, "-c", "systemstatus echo hi") == \
        (1, "", "ERROR: 'systemstatus echo' needs a login first: login USER PASSWORD\n")
    assert tshell("--user", "bob", "--hosts", where, "-c", "systemstatus echo hi",
                  env={"SMANAGER_PASSWORD": "bob-pw"}) == (0, f"{where}: hi\n", "")


def test_tshell_without_a_password_or_a_terminal_says_how_to_give_one():
    env = dict(os.environ)
    env.pop("SMANAGER_PASSWORD", None)
    done = subprocess.run([sys.executable, "tshell.py", "--user", "bob", "-c", "help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("tshell: --user needs a password: set SMANAGER_PASSWORD")


# -- what the review found ------------------------------------------------------------------

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


def test_a_login_line_that_does_not_bind_is_written_down_masked():
    from smanager.core.builtins import Builtins
    login = commands_of(Builtins)["login"]
    assert login.filtered(["alice", "s3cret"], "F") == ["alice", "F"]
    assert login.filtered(["alice", "user=s3cret"], "F") == ["F", "F"]
    assert login.filtered(["s3cret"], "F") == ["F"]
    assert login.filtered(["alice", "s3cret", "more"], "F") == ["F", "F", "F"]


async def test_ctrl_c_during_a_login_still_counts_and_closes_the_connection(
        users_file, monkeypatch):
    import asyncio
    import threading

    from conftest import LineClient, running_server
    checking, release = threading.Event(), threading.Event()

    def held_check(self, password):  # the PBKDF2 thread, held until the test lets it go
        checking.set()
        release.wait(TIMEOUT)
        return False
    monkeypatch.setattr(passwords.Verifier, "check_password", held_check)
    async with running_server(users_file=users_file) as server:
        client = await LineClient.connect(server.address[1])
        try:
            await client.send(b"login alice wrong\r\n")
            assert await asyncio.to_thread(checking.wait, TIMEOUT)
            await client.send(b"\xff\xf4")  # Ctrl-C while the password is checked
            answer = await client.read_all()  # closed: a strict connection's first error
            assert answer == (b"ERROR: interrupted\n" + SEP.encode())
            assert server.manager.logins.backoff.failures["127.0.0.1"][0] == 1
            assert len(server.manager.logins._hashes) == 1  # its turn is held till it ends
        finally:
            release.set()
            await client.close()
