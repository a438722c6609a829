"""Tab completion in bash: the script ``smanager completion bash`` prints, sourced
in a real bash that asks the real programs, and the words they answer with."""

import os
import shutil
import socket
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest
from helpers import ROOT, TIMEOUT, on_terminal

from smanager.cli.completion import words as smanager_words
from smanager.tshell import helpcache
from smanager.tshell.bashcomplete import for_readline, split_line

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# Call the completion function as bash does on Tab: COMP_LINE and COMP_POINT
# set, $1 the program, $2 the word readline replaces.  compopt only works inside
# a real completion, so a stand-in records what it was asked.
CALL = """source "$1"
compopt() { COMPOPT="$*"; }
COMP_LINE=$2 COMP_POINT=$3
_smanager_complete "${2%% *}" "$4" ""
printf 'compopt=%s\\n' "$COMPOPT"
for word in "${COMPREPLY[@]}"; do printf '%s\\n' "$word"; done
"""

SYSTEMSTATUS = ["disk", "echo", "help", "hostname", "load", "memory", "uptime"]
INDEX = {"": {"TOP": ["hostname"], "SERVICES": ["proc", "systemstatus"],
              "COMMANDS": ["help", "kill", "restart"]},
         "systemstatus": {"COMMANDS": SYSTEMSTATUS}}


@pytest.fixture
def shell(tmp_path):
    """smanager and tshell on PATH as commands, from this checkout; the
    completion script they print; a cache of the test's own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, run in (("smanager", "-m smanager"), ("tshell", f'"{ROOT / "tshell.py"}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {run} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    printed = subprocess.run(["smanager", "completion", "bash"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
    script = tmp_path / "completion.bash"
    script.write_text(printed.stdout)
    return SimpleNamespace(env=env, script=script, cwd=tmp_path)


def complete(shell, line, word=None):
    """What bash completes LINE (the cursor at its end) with: (COMPREPLY, compopt's
    arguments).  WORD is the one readline replaces, by default LINE's last."""
    word = line.rsplit(" ", 1)[-1] if word is None else word
    done = subprocess.run([BASH, "-c", CALL, "bash", str(shell.script), line,
                           str(len(line)), word],
                          env=shell.env, cwd=shell.cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, check=True)
    first, *replies = done.stdout.splitlines()
    return replies, first.removeprefix("compopt=")


def save_index(where, index):
    helpcache.save(SimpleNamespace(where=where, _index=index))


# -- smanager: its parsers' words ----------------------------------------------------------------

@needs_bash
@pytest.mark.parametrize("line, word, replies, compopt", [
    ("smanager ", "", ["check-config", "completion", "users"], ""),
    ("smanager --log-l", None, ["--log-level"], ""),
    ("smanager --log-level ", "", ["DEBUG", "INFO", "WARNING", "ERROR"], ""),
    ("smanager --log-level=d", "d", ["DEBUG"], ""),  # bash ends the word at '='
    ("smanager users ", "", ["list", "add", "password", "level", "remove"], ""),
    ("smanager users add bob --level ", "", ["read", "operate", "admin"], ""),
    ("smanager users level bob a", None, ["admin"], ""),
    ("smanager users level zoë ", "", ["read", "operate", "admin"], ""),
    ("smanager completion ", "", ["bash"], ""),
    ("smanager --config ", "", [], "-o default"),  # readline completes file names
    ("smanager check-config --tls-cert ", "", [], "-o default"),
    ("smanager --services ", "", [], "-o dirnames"),
    ("smanager --port ", "", [], ""),
])
def test_smanager_completes_from_its_own_flags(shell, line, word, replies, compopt):
    assert complete(shell, line, word) == (replies, compopt)


def test_a_flag_given_once_is_not_offered_again_unless_it_may_be_repeated():
    assert smanager_words(["--port", "1"], "--po").words == []
    assert smanager_words(["--services", "a"], "--se").words == \
        ["--send-timeout", "--services"]


@needs_bash
def test_completion_prints_the_bash_script_and_refuses_another_shell(shell):
    done = subprocess.run([sys.executable, "-m", "smanager", "completion", "zsh"], env=shell.env,
                          cwd=shell.cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("smanager completion: error: argument shell: invalid choice: 'zsh' "
                           "(choose from 'bash')\n")
    assert "complete -F _smanager_complete smanager tshell" in shell.script.read_text()


# -- tshell: its flags, and servers and commands from the saved index ----------------------------

@needs_bash
def test_tshell_completes_commands_from_the_saved_index(shell, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", shell.env["XDG_CACHE_HOME"])
    save_index("web1:10000", INDEX)
    save_index("web2:10001", {"": {"SERVICES": ["scripts"]}})
    assert complete(shell, "tshell ") == (["web1", "web2:10001"], "")
    assert complete(shell, "tshell web2:1", word="1") == (["10001"], "")  # bash ends it at ':'
    assert complete(shell, "tshell web1 -c 'sys", word="sys")[0] == \
        [f"systemstatus {command}" for command in SYSTEMSTATUS]  # the quote stays open
    assert complete(shell, "tshell web1 -c sys")[0] == \
        [f"'systemstatus {command}'" for command in SYSTEMSTATUS]
    assert complete(shell, "tshell web1 --command=\"systemstatus u", word="systemstatus u") == \
        (["systemstatus uptime"], "")
    assert complete(shell, "tshell web1 -c 'help s", word="help s")[0] == ["help systemstatus"]
    assert complete(shell, "tshell web1 -c 'k", word="k")[0] == ["kill"]
    assert complete(shell, "tshell web1 -c 'proc ", word="proc ")[0] == []  # never asked
    assert complete(shell, "tshell --hosts web1,web2:10001 -c 's", word="s")[0] == \
        ["scripts", "systemstatus"]
    assert complete(shell, "tshell --hosts web2:10001,w")[0] == \
        ["web2:10001,web1", "web2:10001,web2:10001"]
    assert complete(shell, "tshell ./") == ([], "-o default")  # a Unix socket's path


@needs_bash
def test_with_no_saved_index_there_is_nothing_to_offer(shell):
    assert complete(shell, "tshell ") == ([], "")
    assert complete(shell, "tshell web1 -c '", word="") == ([], "")


@needs_bash
def test_tab_never_connects_not_even_to_a_server_that_listens(shell, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", shell.env["XDG_CACHE_HOME"])
    with socket.create_server(("127.0.0.1", 0)) as listener:
        where = f"127.0.0.1:{listener.getsockname()[1]}"
        save_index(where, {"": {"SERVICES": ["systemstatus"]}})  # its commands: never saved
        assert complete(shell, f"tshell {where} -c 'systemstatus ", word="systemstatus ")[0] \
            == []
        assert complete(shell, f"tshell {where} -c 'sys", word="sys")[0] == ["systemstatus"]
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


@needs_bash
async def test_an_interactive_session_saves_what_tab_then_completes_from(shell, server_thread):
    port = server_thread.start()
    where = f"127.0.0.1:{port}"
    env = {**shell.env, "TERM": "dumb", "NO_COLOR": "1", "INPUTRC": os.devnull,
           "TSHELL_HISTORY": str(shell.cwd / "history")}
    async with on_terminal("tshell", where, env=env, cwd=shell.cwd) as (process, terminal):
        await terminal.expect(f"{where}> ".encode())
        terminal.type(b"systemstatus \t\t")  # the shell asks for systemstatus's commands
        await terminal.expect(b"uptime")
        terminal.type(b"\x15quit\r")
        assert await process.wait() == 0
    server_thread.stop(port)  # what follows needs no server
    assert complete(shell, f"tshell {where} -c 'systemstatus up", word="systemstatus up") == \
        (["systemstatus uptime"], "")
    assert stat.S_IMODE(os.stat(shell.cwd / "cache" / "tshell" / "help-index.json").st_mode) \
        == 0o600


@needs_bash
async def test_readline_closes_the_quote_only_once_the_command_is_whole(shell, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", shell.env["XDG_CACHE_HOME"])
    save_index("web1:10000", INDEX)
    (shell.cwd / "smanager.toml").touch()
    env = {**shell.env, "TERM": "dumb", "INPUTRC": os.devnull, "PS1": "$ ",
           "HISTFILE": str(shell.cwd / "bash_history")}  # not the user's
    async with on_terminal(BASH, "--norc", "--noprofile", "-i", env=env,
                           cwd=shell.cwd) as (process, terminal):
        terminal.type(f"source {shell.script}\r".encode())
        # Typed ahead: readline reads each key after the last Tab's completion.
        terminal.type(b"tshell web1 -c sys\tup\t\x01printf '[%s]' \r")
        await terminal.expect(b"[tshell][web1][-c][systemstatus uptime]")
        terminal.type(b"smanager --config smanager.t\t\x01printf '[%s]' \r")
        await terminal.expect(b"[smanager][--config][smanager.toml]")
        terminal.type(b"exit\r")
        assert await process.wait() == 0


# -- the pieces: reading the line, answering readline, the cache ---------------------------------

def test_the_line_is_read_as_the_shell_reads_it():
    assert split_line("tshell web1 -c \"systemstatus up") == (
        [("tshell", "tshell"), ("web1", "web1"), ("-c", "-c"),
         ('"systemstatus up', "systemstatus up")], '"')
    assert split_line(r"a\ b 'c d'e \"x ") == (
        [(r"a\ b", "a b"), ("'c d'e", "c de"), (r"\"x", '"x'), ("", "")], "")


@pytest.mark.parametrize("candidates, raw, bash_word, replies", [
    (["systemstatus uptime"], "sys", "sys", ["'systemstatus uptime'"]),
    (["systemstatus uptime"], "'systemstatus up", "systemstatus up", ["systemstatus uptime"]),
    (["--command=systemstatus uptime"], '--command="sys', "sys", ["systemstatus uptime"]),
    (["web1:10001", "web2:10001"], "web1:1", "1", ["10001"]),  # web2 would replace web1
    (["systemstatus uptime"], r"systemstatus\ u", r"systemstatus\ u", ["'systemstatus uptime'"]),
    (["it's"], "'i", "i", []),  # cannot go inside the quote it would end
])
def test_answers_are_what_readline_replaces_quoted_as_the_line_needs(
        candidates, raw, bash_word, replies):
    assert for_readline(candidates, raw, bash_word) == replies


def test_a_session_replaces_its_topics_and_the_cache_drops_services_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    save_index("web1:10000", INDEX)
    save_index("web1:10000", {"": {"SERVICES": ["systemstatus", "scripts"]}})
    assert helpcache.load() == {"web1:10000": {"": {"SERVICES": ["systemstatus", "scripts"]},
                                               "systemstatus": {"COMMANDS": SYSTEMSTATUS}}}
    save_index("web1:10000", {"": {"SERVICES": ["scripts"]}})
    assert helpcache.load() == {"web1:10000": {"": {"SERVICES": ["scripts"]}}}


def test_the_cache_keeps_the_servers_saved_last(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(helpcache, "MAX_SERVERS", 2)
    for name in ("a", "b", "c"):
        save_index(f"{name}:10000", {"": {"SERVICES": [name]}})
    assert sorted(helpcache.load()) == ["b:10000", "c:10000"]


@pytest.mark.parametrize("content", ["not json", "[]", '{"servers": 3}',
                                     '{"servers": {"a:1": {"index": {"": {"TOP": "x"}}}}}'])
def test_a_cache_file_in_another_shape_is_an_empty_cache_and_is_replaced(
        tmp_path, monkeypatch, content):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "tshell").mkdir()
    (tmp_path / "tshell" / "help-index.json").write_text(content)
    assert helpcache.load() == {}
    save_index("web1:10000", INDEX)
    assert helpcache.load() == {"web1:10000": INDEX}


def test_a_cache_that_cannot_be_written_stands_in_nobodys_way(tmp_path, monkeypatch):
    (tmp_path / "tshell").write_text("a file where the directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    save_index("web1:10000", INDEX)  # no exception
    assert helpcache.load() == {}
