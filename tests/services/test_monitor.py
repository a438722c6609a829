"""monitor through the core: real collectors reading /proc, a real store on disk, real
alerts; every wait bounded.  Sockets, netcat, JSON mode and tshell are in
test_monitor_real.py."""

import asyncio
import json
import os
import time

import pytest
from helpers import SEP, TIMEOUT, ask_core, run_line, started_manager, until

from smanager.config import bundled_services_dir


def options(tmp_path, **settings):
    return {"monitor": {"state_dir": str(tmp_path / "state"), **settings}}


def monitor_manager(tmp_path, extra=None, **settings):
    return started_manager(bundled_services_dir(), options={**options(tmp_path, **settings),
                                                            **(extra or {})})


def the_monitor(manager):
    return manager.catalog.services["monitor"].instance.monitoring


async def body(manager, line):
    text = await ask_core(manager, line)
    assert text.endswith("\n" + SEP), text
    return text[: -len(SEP) - 1]


async def flushed(manager):
    await asyncio.to_thread(the_monitor(manager).store.flush)


async def test_a_fresh_install_runs_cpu_mem_load_disk_and_net_and_answers_monitor_last(tmp_path):
    async with monitor_manager(tmp_path) as manager:
        listed = await body(manager, "monitor list")
        for name in ("cpu", "mem", "load", "disk", "net"):
            assert f"\n{name} " in listed, listed
        assert f"store: {tmp_path / 'state' / 'metrics.db'}" in listed
        await body(manager, "monitor collect load")
        last = await body(manager, "monitor last load.*")
        names = [line.split()[0] for line in last.splitlines()[1:]]
        assert names[:3] == ["load.load1", "load.load15", "load.load5"]


async def test_monitor_last_agrees_with_proc_loadavg(tmp_path):
    async with monitor_manager(tmp_path) as manager:
        given = json.loads(json.dumps((await run_line(manager, "monitor collect load")).value.value))
        with open("/proc/loadavg") as file:
            load1 = float(file.read().split()[0])
        assert abs(given["load.load1"] - load1) <= 0.5


async def test_a_configured_collector_of_a_default_name_replaces_the_default(tmp_path):
    collectors = {"load": {"collector": "mem", "interval": 3600}}
    async with monitor_manager(tmp_path, collectors=collectors) as manager:
        given = (await run_line(manager, "monitor collect load")).value.value
        assert "load.total_bytes" in given or any(k.startswith("load.") for k in given)
        assert "load.load1" not in given
        assert "load  mem   3600s" in await body(manager, "monitor list")


async def test_defaults_false_runs_only_what_is_configured(tmp_path):
    async with monitor_manager(tmp_path, defaults=False) as manager:
        assert (await body(manager, "monitor list")).startswith("no collectors\nstore: ")


async def test_push_then_last_and_get_from_the_store(tmp_path):
    async with monitor_manager(tmp_path, defaults=False) as manager:
        now = int(time.time()) // 60 * 60
        for offset, value in ((-180, 1), (-170, 3), (-120, 10), (-60, 20)):
            assert await body(manager, f"monitor push backup.age {value} {now + offset}") == "OK"
        assert (await body(manager, "monitor last backup.*")).splitlines()[1].split()[:2] \
            == ["backup.age", "20.00"]
        await flushed(manager)
        got = (await run_line(manager, "monitor get backup.age since=1h step=1m agg=max")).value.value
        assert got["tier"] == "1m" and [value for _, value in got["points"]] == [3, 10, 20]
        text = await body(manager, "monitor get backup.age since=1h step=1m agg=count")
        assert [line.split()[-1] for line in text.splitlines()] == ["2.00", "1.00", "1.00"]


@pytest.mark.parametrize("line, error", [
    ("monitor push x.y lots", "VALUE must be a number, not 'lots'"),
    ("monitor push x.y nan", "VALUE must be a number, not 'nan'"),
    ("monitor push 'a b' 1", "bad metric name 'a b'"),
    ("monitor push x.y 1 12", "TIMESTAMP must be within the raw retention"),
    ("monitor get x.y since=soon", "since and until must be a duration"),
    ("monitor get x.y agg=median", "agg must be one of avg, min, max, sum, count"),
    ("monitor get x.y step=0s", "step must be whole seconds, at least 1s"),
    ("monitor collect nosuch", "no collector nosuch (there are: "),
    ("monitor watch", "missing NAME; usage: monitor watch NAME [MORE...] [every=EVERY]"),
    ("monitor alert add x >> 3", "'>>' is not an operator"),
    ("monitor alert rm 99", "no alert 99"),
    ("monitor add q nosuchkind", "collector q: no collector kind 'nosuchkind'"),
    ("monitor add q mem interval=soon", "interval must be a number"),
])
async def test_bad_words_get_one_line_and_nothing_changes(tmp_path, line, error):
    async with monitor_manager(tmp_path) as manager:
        text = await body(manager, line)
        assert text.startswith("ERROR: ") and error in text and text.count("\n") == 0, text
        assert "q " not in await body(manager, "monitor list")


async def test_spark_draws_the_pushed_values_with_min_max_and_last(tmp_path):
    async with monitor_manager(tmp_path, defaults=False) as manager:
        now = int(time.time())
        for age, value in ((300, 1), (200, 5), (100, 9)):
            await body(manager, f"monitor push q.depth {value} {now - age}")
        await flushed(manager)
        line = await body(manager, "monitor spark q.depth since=10m width=10")
        assert line.startswith("q.depth ") and line.endswith("min 1.00 max 9.00 last 9.00 (10m)")
        assert "▁" in line and "█" in line


async def test_an_alert_fires_after_for_samples_clears_below_clear_and_subscribers_hear_it(tmp_path):
    async with monitor_manager(tmp_path, defaults=False) as manager:
        assert (await body(manager, "monitor alert add disk.full > 90 for=2 clear=80")) \
            == "alert 1: disk.full > 90 for=2 clear=80 repeat=1h action=log"
        outcome = await run_line(manager, "monitor subscribe")
        events = aiter(outcome.stream)
        assert (await anext(events)).value == {"subscribed": True}
        for value in (95, 96):
            await body(manager, f"monitor push disk.full {value}")
        async with asyncio.timeout(TIMEOUT):
            fired = (await anext(events)).value
        assert (fired["state"], fired["previous"], fired["value"]) == ("FIRING", "OK", 96)
        assert "FIRING" in await body(manager, "monitor alerts")
        await body(manager, "monitor push disk.full 85")  # above clear: still firing
        assert the_monitor(manager).alerts.alerts[1].state.state == "FIRING"
        await body(manager, "monitor push disk.full 70")
        async with asyncio.timeout(TIMEOUT):
            assert (await anext(events)).value["state"] == "OK"
        await outcome.stream.aclose()
        assert not the_monitor(manager).subscribers


async def test_alerts_and_added_collectors_outlive_a_restart_but_configured_ones_stay_put(tmp_path):
    async with monitor_manager(tmp_path, defaults=False, alerts=["load.load1 > 50"]) as manager:
        assert (await body(manager, "monitor add tasks procs interval=3600")).startswith(
            "collector tasks (procs) added, every 3600 s")
        await body(manager, "monitor alert add tasks.processes > 100000")
        assert (await body(manager, "monitor alert rm 1")).startswith("ERROR: alert 1 is in the config")
    saved = json.loads((tmp_path / "state" / "monitor.json").read_text())
    assert saved == {"collectors": {"tasks": {"collector": "procs", "interval": 3600}},
                     "alerts": ["tasks.processes > 100000"]}
    async with monitor_manager(tmp_path, defaults=False, alerts=["load.load1 > 50"]) as manager:
        alerts = (await run_line(manager, "monitor alert list")).value.value
        assert [(row["id"], row["metric"], row["configured"]) for row in alerts] == [
            (1, "load.load1", True), (2, "tasks.processes", False)]
        assert "tasks  procs  3600s" in await body(manager, "monitor list")
        await body(manager, "monitor remove tasks")
        await body(manager, "monitor alert rm 2")
    assert json.loads((tmp_path / "state" / "monitor.json").read_text()) == {
        "collectors": {}, "alerts": []}


async def test_a_collector_from_collectors_dir_runs_and_its_counters_become_rates(tmp_path):
    folder = tmp_path / "collectors"
    folder.mkdir()
    (folder / "queue.py").write_text(
        "from smanager import Collector\n"
        "class Queue(Collector):\n"
        "    '''jobs'''\n"
        "    counters = {'done'}\n"
        "    total = 0\n"
        "    def collect(self):\n"
        "        Queue.total += 50\n"
        "        return {'waiting': 7, 'done': Queue.total}\n")
    (folder / "broken.py").write_text("import nosuchmodule\n")
    collectors = {"jobs": {"collector": "queue", "interval": 3600}}
    async with monitor_manager(tmp_path, defaults=False, collectors=collectors,
                               collectors_dir=str(folder)) as manager:
        first = (await run_line(manager, "monitor collect jobs")).value.value
        assert first == {"jobs.waiting": 7.0}  # no rate from one total
        listed = await body(manager, "monitor list")
        assert "problem: broken.py: ModuleNotFoundError: No module named 'nosuchmodule'" in listed


async def test_a_broken_monitor_table_fails_monitor_alone_with_one_line(tmp_path):
    async with monitor_manager(tmp_path, retension={"raw": "1d"}) as manager:
        assert "monitor" not in manager.catalog.services
        reason = manager.catalog.failures["monitor"].reason
        assert 'unknown key "retension" (did you mean "retention"?)' in reason
        assert "proc" in manager.catalog.services


async def test_a_second_server_on_the_same_state_dir_keeps_its_samples_apart(tmp_path):
    async with monitor_manager(tmp_path, defaults=False) as first:
        async with monitor_manager(tmp_path, defaults=False) as second:
            listed = await body(second, "monitor list")
            assert "store: memory of this run only (state directory" in listed
            assert f"is in use by another smanager (pid {os.getpid()})" in listed
            await body(second, "monitor push only.second 1")
            temporary = os.path.dirname(the_monitor(second).store.path)
        assert not os.path.exists(temporary)
        assert "only.second" not in await body(first, "monitor last")


async def test_a_corrupt_metrics_database_is_moved_aside_and_monitoring_goes_on(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "metrics.db").write_bytes(b"this is not sqlite" * 100)
    async with monitor_manager(tmp_path, defaults=False) as manager:
        assert await body(manager, "monitor push x.y 1") == "OK"
        await flushed(manager)
    assert any(name.startswith("metrics.db.corrupt") or ".bad" in name or "corrupt" in name
               for name in os.listdir(tmp_path / "state")), os.listdir(tmp_path / "state")


async def test_watch_streams_the_latest_values_until_the_client_stops(tmp_path):
    async with monitor_manager(tmp_path, defaults=False) as manager:
        await body(manager, "monitor push a.b 4")
        outcome = await run_line(manager, "monitor watch a.* every=0.1")
        chunks = aiter(outcome.stream)
        async with asyncio.timeout(TIMEOUT):
            first = await anext(chunks)
            await body(manager, "monitor push a.b 5")
            assert await until(lambda: the_monitor(manager).latest["a.b"][0] == 5)
            while (chunk := await anext(chunks)).value["values"] != {"a.b": 5.0}:
                pass
        assert first.value["values"] == {"a.b": 4.0} and chunk.text.endswith("a.b 5.00")
        await outcome.stream.aclose()
