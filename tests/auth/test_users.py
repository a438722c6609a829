"""The users file: its format, its privacy, and how the server follows its changes."""

import os
import stat
from pathlib import Path

import pytest
from helpers import make_users

from smanager.auth import users
from smanager.auth.levels import Level


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
