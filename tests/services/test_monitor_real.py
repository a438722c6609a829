"""monitor end to end: a real smanager process, real netcat and tshell, real scripts
run by alerts, and proc's real children measured.  Every wait is bounded."""

import asyncio
import json
import os
import socket
import subprocess
import urllib.request

from helpers import (
    SEP,
    TIMEOUT,
    LineClient,
    ask_core,
    json_lines,
    make_users,
    need,
    started_manager,
    tshell,
    until,
)

from smanager.config import bundled_services_dir


def write_config(tmp_path, text=""):
    path = tmp_path / "smanager.toml"
    path.write_text(f'[service.monitor]\nstate_dir = "{tmp_path / "state"}"\n{text}')
    return str(path)


async def say(port, *lines):
    client = await LineClient.connect(port)
    try:
        for line in lines:
            reply = await client.ask(line)
    finally:
        await client.close()
    assert reply.endswith(SEP), reply
    return reply[: -len(SEP)]


async def test_a_cron_job_pushes_with_a_netcat_one_liner(tmp_path, server_process):
    need("nc.openbsd")
    server = server_process("--config", write_config(tmp_path))
    done = subprocess.run(
        f"echo -n 'monitor push backup.age 3600' | nc.openbsd -N 127.0.0.1 {server.port}",
        shell=True, capture_output=True, timeout=TIMEOUT, text=True)
    assert done.returncode == 0 and done.stdout.endswith("OK\n" + SEP), done
    assert (await say(server.port, "monitor last backup.age")).splitlines()[1].split()[:2] \
        == ["backup.age", "3600.00"]


async def test_json_mode_answers_with_structured_values(tmp_path, server_process):
    server = server_process("--config", write_config(tmp_path, "defaults = false\n"))
    client = await LineClient.connect(server.port)
    try:
        await client.send("mode json")
        await client.send("monitor push a.b 2.5 ")
        await client.send("monitor last a.*")
        await client.send("monitor alert add a.b > 2")
        await client.send("monitor alerts")
        replies = await json_lines(client, 5)
    finally:
        await client.close()
    assert replies[1] == {"ok": True, "text": "OK", "result": {
        "name": "a.b", "value": 2.5, "at": replies[1]["result"]["at"]}}
    (row,) = replies[2]["result"]
    assert (row["name"], row["value"], row["stale"]) == ("a.b", 2.5, False)
    assert replies[3]["result"]["rule"] == "a.b > 2 for=1 repeat=1h action=log"
    assert [alert["state"] for alert in replies[4]["result"]] == ["OK"]


async def test_tshell_hosts_prints_one_row_per_host(tmp_path, server_process):
    ports = []
    for number in (1, 2):
        folder = tmp_path / f"host{number}"
        folder.mkdir()
        ports.append(server_process("--config", write_config(folder)).port)
        await say(ports[-1], "monitor collect load")
    status, out, err = tshell("--hosts", ",".join(f"127.0.0.1:{port}" for port in ports),
                              "-c", "monitor last load.load1")
    assert status == 0, err
    rows = out.splitlines()
    assert [row.split(":")[1] for row in rows if "load.load1" in row] == [str(p) for p in ports]


async def test_an_alert_runs_its_script_with_the_alert_in_its_environment(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    seen = tmp_path / "seen"
    notify = scripts / "notify.sh"
    notify.write_text("#!/bin/sh\n# -- jojo --\n# description: tell someone\n"
                      "# param: metric\n# param: state\n# param: value\n# -- jojo --\n"
                      f'echo "$METRIC $STATE $VALUE" >> {seen}\n')
    notify.chmod(0o755)
    options = {"monitor": {"state_dir": str(tmp_path / "state"), "defaults": False,
                           "alerts": ["disk.used > 90 action=script:notify"]},
               "scripts": {"dir": str(scripts), "state_dir": str(tmp_path / "state")}}
    async with started_manager(bundled_services_dir(), options=options) as manager:
        await ask_core(manager, "monitor push disk.used 95")
        assert await until(lambda: seen.exists() and seen.read_text().endswith("\n"))
        assert seen.read_text() == "disk.used FIRING 95.0\n"


async def test_the_programs_collector_measures_procs_children(tmp_path):
    options = {"monitor": {"state_dir": str(tmp_path / "state"), "defaults": False,
                           "collectors": {"progs": {"collector": "programs", "interval": 3600}}},
               "proc": {"state_dir": str(tmp_path / "proc"),
                        "programs": {"sleeper": {"command": ["sh", "-c", "sleep 300 & sleep 300"]}}}}
    async with started_manager(bundled_services_dir(), options=options) as manager:
        proc = manager.catalog.services["proc"].instance
        assert await until(lambda: proc.supervisor.programs["sleeper"].state.name == "RUNNING")
        assert await until(lambda: len(_group(proc)) == 3)  # sh and its two sleeps
        text = await ask_core(manager, "monitor collect progs")
        values = dict(line.split() for line in text.splitlines()[:-1])
        assert values["progs.sleeper.processes"] == "3.00"
        assert float(values["progs.sleeper.rss_bytes"]) > 100_000


def _group(proc):
    pgid = proc.supervisor.programs["sleeper"].run.pgid
    members = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.getpgid(int(name)) == pgid:
                members.append(name)
        except OSError:
            pass
    return members


async def test_reading_needs_read_pushing_and_alerting_operate_adding_collectors_admin(
        tmp_path, server_process):
    users = make_users(tmp_path / "users", reader="read", op="operate")
    server = server_process("--config", _with_users(tmp_path, users))
    reader, op = "login reader reader-pw", "login op op-pw"
    assert (await say(server.port, reader, "monitor alerts")).startswith("no alerts")
    assert (await say(server.port, reader, "monitor alert list")).startswith("no alerts")
    assert "ERROR" in await say(server.port, reader, "monitor push a.b 1")
    assert await say(server.port, reader, "monitor alert add a.b > 1") == (
        "ERROR: alert add needs the operate level; reader has read\n")
    assert await say(server.port, op, "monitor push a.b 1") == "OK\n"
    assert (await say(server.port, op, "monitor alert add a.b > 1")).startswith("alert 1: ")
    assert "ERROR" in await say(server.port, op, "monitor add x exec command=true")
    assert "ERROR" in await say(server.port, op, "monitor remove x")


def _with_users(tmp_path, users):
    path = tmp_path / "smanager.toml"
    path.write_text(f"users_file = {json.dumps(users)}\n[service.monitor]\n"
                    f'state_dir = "{tmp_path / "state"}"\ndefaults = false\n')
    return str(path)


async def test_samples_reach_the_prometheus_textfile_and_scrape_endpoint(tmp_path, server_process):
    need("promtool")
    textfile = tmp_path / "smanager.prom"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()[1]
    server = server_process("--config", write_config(tmp_path, (
        "defaults = false\n[service.monitor.export.prometheus]\n"
        f'textfile = "{textfile}"\nlisten = "127.0.0.1:{listen}"\nevery = 0.2\n')))
    await say(server.port, "monitor push backup.age 3600")
    assert await until(lambda: textfile.exists() and "backup_age" in textfile.read_text())
    assert "smanager_backup_age 3600" in textfile.read_text()
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=TIMEOUT).read())
    assert b"smanager_backup_age 3600" in body
    for text in (textfile.read_bytes(), body):
        checked = subprocess.run(["promtool", "check", "metrics"], input=text,
                                 capture_output=True, timeout=TIMEOUT)
        assert checked.returncode == 0, checked
