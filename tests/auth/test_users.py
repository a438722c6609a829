"""The users file: its format, its privacy, and how the server follows its changes."""

import os
import stat
from pathlib import Path

import pytest
from helpers import MISSING, NOBODY, make_users

from smanager.auth import users
from smanager.auth.levels import Level


def test_the_users_file_round_trips_and_is_private(tmp_path, users_file):
    text = Path(users_file).read_text()
    assert text.startswith("# smanager users")
    assert [line.split()[:2] for line in text.splitlines()[1:]] == \
        [["alice", "admin"], ["bob", "operate"], ["carol", "read"]]
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
    assert users.parse(text) == users.load(users_file)
    with pytest.raises(FileNotFoundError):
        users.load(tmp_path / "missing")  # 'smanager users add' alone takes that for none


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




@pytest.mark.parametrize(("make", "message"), [
    (lambda path: None, MISSING),
    (lambda path: path.mkdir(), "Is a directory"),
    (lambda path: path.write_text("# nobody\n"), NOBODY),
    (lambda path: path.write_bytes(b"\xff\n"), "not UTF-8 text"),
], ids=["missing", "directory", "nobody", "not-text"])
def test_a_users_file_the_server_cannot_use_at_start_is_refused(tmp_path, make, message):
    path = tmp_path / "users"
    make(path)
    with pytest.raises(ValueError) as refused:
        users.UsersFile(str(path))
    assert str(refused.value) == message


def test_a_users_file_that_goes_away_or_empties_while_running_leaves_nobody_in(
        tmp_path, users_file, caplog):
    watched = users.UsersFile(users_file)
    os.unlink(users_file)
    assert watched.refresh() is True and watched.users == {}
    assert "is gone: no one can log in" in caplog.text
    assert watched.refresh() is False  # said once
    users.save(users_file, {})  # 'smanager users remove' of the last user
    assert watched.refresh() is True and watched.users == {}
    assert "names no users: no one can log in" in caplog.text
    make_users(tmp_path / "users", alice="read")
    assert watched.refresh() is True and set(watched.users) == {"alice"}
