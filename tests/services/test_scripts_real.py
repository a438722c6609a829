"""scripts end to end with a real smanager process and real clients: secrets
kept out of every record and of the script's environment, levels per script,
100 runs at once against max_concurrent 4, a background run tailed and killed
from other sessions, Ctrl-C in telnet stopping a foreground run, and a netcat
one-liner.

Every server is ``python -m smanager --config FILE`` (the server_process
fixture stops it); every wait is bounded, and conftest.py checks that nothing
a script started outlives its test.
"""

import asyncio
import json
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from helpers import (
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    make_users,
    need,
    on_terminal,
    supervised,
    until,
)

from smanager.client import AsyncClient

SECRET, TOKEN = "hunter2-s3cret", "tok-9f8e7d"


def sh(block, body):
    """A /bin/sh script: its jojo block (lines without the '# '), then BODY."""
    lines = "".join(f"# {line}\n" for line in ["-- jojo --", *block, "-- jojo --"])
    return f"#!/bin/sh\n{lines}{body}"


def write_scripts(tmp_path, **bodies):
    folder = tmp_path / "scripts"
    folder.mkdir(exist_ok=True)
    for name, text in bodies.items():
        path = folder / f"{name}.sh"
        path.write_text(text)
        path.chmod(0o755)


def write_config(tmp_path, *top, **scripts):
    """smanager.toml: TOP lines, then [service.scripts] over tmp_path/scripts; its path."""
    table = {"dir": str(tmp_path / "scripts"), "state_dir": str(tmp_path / "state"), **scripts}
    lines = [*top, "[service.scripts]", *[f"{key} = {json.dumps(value)}"
                                          for key, value in table.items()]]
    path = tmp_path / "smanager.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


async def say(port, *lines, seconds=TIMEOUT):
    """The reply to the last of LINES, on one new connection, without the separator."""
    client = await LineClient.connect(port)
    try:
        for line in lines:
            reply = await client.ask(line, seconds)
    finally:
        await client.close()
    assert reply.endswith(SEP), reply
    return reply[: -len(SEP)]


def running_runs(tmp_path):
    """{pid: script} of every script run alive now (SMANAGER_PROGRAM=scripts:NAME)
    from TMP_PATH's scripts (not another test's, running beside this one)."""
    return {pid: program for pid, (program, _) in supervised().items()
            if program.startswith("scripts:") and _runs_from(pid, tmp_path)}


def _runs_from(pid, tmp_path):
    try:
        return str(tmp_path).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def fifo(path):
    """A fifo a script can wait on (read -r _ < FIFO); held open read-write by the
    test, so writing a line never blocks.  Returns its write end."""
    os.mkfifo(path)
    return os.open(path, os.O_RDWR)


# -- secrets ---------------------------------------------------------------------------------

async def test_a_secret_never_reaches_the_log_audit_history_or_the_scripts_environment(
        tmp_path, server_process):
    gate = tmp_path / "gate"
    held = fifo(gate)
    write_scripts(tmp_path, login=sh(
        ["description: uses a password and a token",
         "param: user - who (required)",
         "param: password - read on stdin (secret)",
         "param: token - old style, in the environment",
         "filtered_params: token",
         "param: gate"],
        'read -r line\n'
        '[ "$line" = "PASSWORD=' + SECRET + '" ] && echo "stdin ok"\n'
        '[ -z "$PASSWORD" ] && echo "not in the environment"\n'
        '[ "$TOKEN" = "' + TOKEN + '" ] && echo "token in the environment"\n'
        'read -r _ < "$GATE"\n'))
    users = make_users(tmp_path / "users", alice="operate")
    config = write_config(tmp_path, f"users_file = {json.dumps(users)}",
                          f"audit_log = {json.dumps(str(tmp_path / 'audit.log'))}",
                          'log_level = "DEBUG"')
    try:
        smanager = server_process("--config", config)
        client = await LineClient.connect(smanager.port)
        await client.ask("login alice alice-pw")
        await client.send(f"scripts run login user=bob password={SECRET} token={TOKEN} "
                          f"gate={gate}\n".encode())
        assert await until(lambda: running_runs(tmp_path))
        [pid] = running_runs(tmp_path)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert SECRET.encode() not in environ and b"USER=bob" in environ
        os.write(held, b"go\n")
        reply = await client.reply_text()
        assert reply == ("stdin ok\nnot in the environment\n"
                         "token in the environment\nexit status 0\n" + SEP)
        shown = await client.ask("scripts log 1")
        assert "password=FILTERED token=FILTERED" in shown and SECRET not in shown, shown
        await client.close()
    finally:
        os.close(held)
    smanager.stop()
    written = {"audit": (tmp_path / "audit.log").read_text(), "log": "".join(smanager.log)}
    written["history"] = "\n".join(
        repr(row) for row in sqlite3.connect(tmp_path / "state" / "state.db").execute(
            "SELECT * FROM runs"))
    written["history"] += "".join(path.read_text()
                                  for path in (tmp_path / "state").rglob("*.json"))
    assert "scripts run login user=bob" in written["audit"]
    assert "run 1: login by alice" in written["log"]
    assert "password=FILTERED" in written["audit"] and "password=FILTERED" in written["log"]
    assert "FILTERED" in written["history"]
    for where, text in written.items():
        assert SECRET not in text, where
    # filtered_params hides a value in writing, though old scripts read it from $TOKEN:
    assert TOKEN not in written["audit"] and TOKEN not in written["history"]


# -- levels ----------------------------------------------------------------------------------

async def test_a_script_asks_its_own_level_of_whoever_runs_it(tmp_path, server_process):
    write_scripts(tmp_path,
                  peek=sh(["level: read"], "echo looked\n"),
                  poke=sh([], "echo poked\n"),
                  wipe=sh(["level: admin"], "echo wiped\n"))
    users = make_users(tmp_path / "users", reader="read", op="operate")
    smanager = server_process("--config", write_config(
        tmp_path, f"users_file = {json.dumps(users)}"))
    reader = ("login reader reader-pw",)
    assert await say(smanager.port, *reader, "scripts run peek") == "looked\nexit status 0\n"
    assert await say(smanager.port, *reader, "scripts run poke") == (
        "ERROR: script poke needs the operate level; reader has read\n")
    assert await say(smanager.port, "login op op-pw", "scripts run wipe") == (
        "ERROR: script wipe needs the admin level; op has operate\n")
    assert await say(smanager.port, "login op op-pw", "scripts run poke") == (
        "poked\nexit status 0\n")
    assert (await say(smanager.port, *reader, "scripts list")).count("\n") == 4  # sees all three


# -- many at once ----------------------------------------------------------------------------

async def test_100_runs_at_once_run_4_at_a_time_the_rest_queue_and_all_finish(
        tmp_path, server_process):
    gate, marks = tmp_path / "gate", tmp_path / "running"
    marks.mkdir()
    held = fifo(gate)
    write_scripts(tmp_path, slow=sh(
        ["param: gate", "param: marks"],
        'touch "$MARKS/$SMANAGER_RUN"\n'
        'ls "$MARKS" | wc -l\n'  # how many run now, itself included
        'read -r _ < "$GATE"\n'
        'rm "$MARKS/$SMANAGER_RUN"\n'))
    smanager = server_process("--config", write_config(tmp_path,
                                                       "max_connections_per_address = 200"))
    pid = smanager.process.pid
    fds_idle = len(os.listdir(f"/proc/{pid}/fd"))
    clients = [await LineClient.connect(smanager.port) for _ in range(100)]
    try:
        for client in clients:
            await client.send(f"scripts run slow gate={gate} marks={marks}\n".encode())
        assert await until(lambda: len(os.listdir(marks)) == 4)
        async with AsyncClient("127.0.0.1", smanager.port, timeout=TIMEOUT) as asker:
            for _ in range(200):  # until the server has read all 100 requests
                statuses = [row["status"] for row in await asker.run("scripts", "runs", "n=200")]
                if len(statuses) == 100:
                    break
                await asyncio.sleep(0.02)
        assert (statuses.count("running"), statuses.count("queued")) == (4, 96)
        assert len(os.listdir(marks)) == 4
        threads = int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        # A pidfd and three pipes per running script, a socket per client: no more.
        assert fds <= fds_idle + 100 + 4 * 4 + 4 and threads <= 4, (fds, threads)
        os.write(held, b"go\n" * 100)
        replies = await asyncio.gather(*(client.reply_text(3 * TIMEOUT) for client in clients))
    finally:
        os.close(held)
        for client in clients:
            await client.close()
    counts = [int(reply.split("\n")[0]) for reply in replies]
    assert all(reply.endswith("exit status 0\n" + SEP) for reply in replies)
    assert max(counts) == 4 and min(counts) >= 1


# -- background, tail, kill, Ctrl-C ----------------------------------------------------------

async def test_a_background_run_is_tailed_and_killed_from_other_sessions(
        tmp_path, server_process):
    write_scripts(tmp_path, ticker=sh([], "echo tick\nwhile :; do sleep 1000; done\n"))
    smanager = server_process("--config", write_config(tmp_path))
    started = await say(smanager.port, "scripts run ticker bg=true")
    assert re.fullmatch(r"RUN \d+\n", started)
    run = started.split()[1]
    watcher = await LineClient.connect(smanager.port)
    try:
        await watcher.send(f"scripts tail {run}\n".encode())
        assert await asyncio.wait_for(watcher.reader.readline(), TIMEOUT) == b"tick\n"
        assert await say(smanager.port, f"scripts kill {run}") == f"run {run}: killed by SIGTERM\n"
        tailed = await watcher.reply_text()
        assert re.fullmatch(r"\[scripts kill by 127\.0\.0\.1:\d+; stopped by SIGTERM\]\n"
                            r"killed by SIGTERM\n", tailed[: -len(SEP)]), tailed
    finally:
        await watcher.close()
    assert not running_runs(tmp_path)
    assert (await say(smanager.port, "scripts runs")).split("\n")[1].split()[-1] == "killed"


async def test_ctrl_c_in_telnet_stops_a_foreground_run_and_the_session_goes_on(
        tmp_path, server_process):
    need("telnet")
    write_scripts(tmp_path, hang=sh([], "echo waiting\nsleep 1000\n"))
    smanager = server_process("--config", write_config(tmp_path))
    async with on_terminal("telnet", "127.0.0.1", str(smanager.port)) as (_, terminal):
        await terminal.expect(SEP_LINE)  # the banner
        terminal.type(b"scripts run hang\r")
        await terminal.expect(b"waiting\n")
        terminal.type(b"\x03")  # Ctrl-C: telnet sends IAC IP
        await terminal.expect(b"ERROR: interrupted\n" + SEP_LINE)
        assert await until(lambda: not running_runs(tmp_path))
        terminal.type(b"scripts runs\r")
        await terminal.expect(SEP_LINE)
    row = (await say(smanager.port, "scripts runs")).split("\n")[1].split()
    assert row[1] == "hang" and row[-1] == "killed"


@pytest.mark.parametrize("flags", [[], ["-N"]])
async def test_a_netcat_one_liner_runs_a_pyjojo_script_and_exits(tmp_path, server_process, flags):
    need("nc")
    write_scripts(tmp_path, echo=sh(["param: text - text to echo"],
                                    'echo "$TEXT"\necho "jojo_return_value said=$TEXT"\n'))
    smanager = server_process("--config", write_config(tmp_path))
    nc = await asyncio.create_subprocess_exec(
        "nc", *flags, "127.0.0.1", str(smanager.port), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(nc.communicate(b"scripts run echo 'text=hi there'"),
                                        TIMEOUT)
    except BaseException:
        nc.kill()
        await nc.wait()
        raise
    assert out.decode().endswith(SEP_LINE.decode() + "hi there\nexit status 0\n"
                                 "return said=hi there\n" + SEP)


async def test_sighup_reads_the_directory_again_and_a_run_under_way_goes_on_to_be_tailed(
        tmp_path, server_process):
    gate = tmp_path / "gate"
    held = fifo(gate)
    write_scripts(tmp_path, waits=sh(["param: gate"], 'read -r _ < "$GATE"\necho done\n'))
    smanager = server_process("--config", write_config(tmp_path))
    try:
        watcher = await LineClient.connect(smanager.port)
        await watcher.send(f"scripts run waits gate={gate}\n".encode())
        assert await until(lambda: running_runs(tmp_path))
        write_scripts(tmp_path, added=sh([], "echo new\n"))
        smanager.process.send_signal(signal.SIGHUP)
        for _ in range(100):  # the server's log, up to the end of the restart
            line = await asyncio.wait_for(asyncio.to_thread(smanager.process.stderr.readline),
                                          TIMEOUT)
            if " restart: " in line or not line:
                break
        assert "restarted: " in line, line
        assert "added" in await say(smanager.port, "scripts list")
        # A stream ends with its service's instance; the run goes on, and is followed again.
        assert await watcher.reply_text() == "ERROR: scripts run ended: scripts is restarting\n" + SEP
        await watcher.send(b"scripts tail 1\n")
        os.write(held, b"go\n")
        assert await watcher.reply_text() == "done\nexit status 0\n" + SEP
        await watcher.close()
    finally:
        os.close(held)
