"""``smanager users``: the admin subcommand that keeps the users file."""

import io
import subprocess
import sys

import pytest
from helpers import FAST, ROOT, TIMEOUT, make_users

from smanager.auth import users
from smanager.cli import users as users_cli


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


@pytest.mark.parametrize("action", [["list"], ["remove", "dave"], ["level", "dave", "read"],
                                    ["password", "dave", "--password-stdin"]])
def test_a_users_file_that_does_not_exist_is_an_error_but_for_add(tmp_path, action):
    path = tmp_path / "missing"
    said = f"smanager users: error: {path} does not exist; 'smanager users add NAME' creates it\n"
    assert users_command("--users-file", str(path), *action, password="pw\n") == (2, "", said)
    assert not path.exists()


def test_a_users_file_that_cannot_be_read_or_written_is_named_in_the_error(tmp_path):
    assert users_command("--users-file", str(tmp_path), "list") == \
        (2, "", f"smanager users: error: {tmp_path}: Is a directory\n")
    nowhere = tmp_path / "nowhere" / "users"
    assert users_command("--users-file", str(nowhere), "add", "dave", "--password-stdin",
                         "--iterations", str(FAST), password="pw\n") == \
        (2, "", f"smanager users: error: cannot write {nowhere}: No such file or directory\n")


def test_the_admin_subcommand_finds_the_file_in_the_config(tmp_path):
    config = tmp_path / "smanager.toml"
    config.write_text('users_file = "people"\n')
    args = users_cli.build_parser().parse_args(["--config", str(config), "list"])
    # Relative to the config file, as every path in it is.
    assert users_cli.users_file(args) == str((tmp_path / "people").resolve())
    out = io.StringIO()
    users_cli.run(args, make_users(tmp_path / "people", dave="read"), out)
    assert out.getvalue() == "dave read\n"
