"""Fleet control: one command on many servers at once, and which of them answer."""

import asyncio
import json
import time

import pytest
from helpers import MEETING, blackhole, closed_port, run_tshell_main, tshell

from smanager.client import Reply, fleet, parse_address


def meeting_room(expected):
    return {"arrived": 0, "inside": 0, "peak": 0, "expected": expected,
            "all_here": asyncio.Event()}


def start_meeting_servers(server_thread, count, room):
    return [server_thread.start(services=[MEETING], no_default_services=True,
                                command_timeout=10.0, service={"meeting": {"room": room}})
            for _ in range(count)]


# -- pure parts --------------------------------------------------------------------------------

def test_a_hosts_file_allows_comments_and_blank_lines():
    text = "# web tier\nweb1\n\n  web2:10001   # rack 3\n[::1]:10002\n#web3\n"
    assert fleet.read_hosts_file(text) == ["web1", "web2:10001", "[::1]:10002"]


def test_hosts_are_parsed_and_deduplicated_in_order():
    assert fleet.parse_hosts(["b", "a:1", "b:10000", "a:1"]) == [("b", 10000), ("a", 1)]
    with pytest.raises(ValueError):
        fleet.parse_hosts(["good", "bad:port"])


@pytest.mark.parametrize("junk", ["web1 web2", "web1,web2", "http://web1:10000", "web1:10000:1"])
def test_junk_in_a_hosts_file_is_refused_as_an_argument(junk):
    """Guards a fault since fixed, which was:
    client/common.py parse_address takes any text with 2+ colons as a bare IPv6
    address and any text at all as a host name, so a junk line is looked up in DNS
    and reported as a host that did not answer, instead of as a bad argument."""
    with pytest.raises(ValueError):
        fleet.parse_hosts(fleet.read_hosts_file(f"good1\n{junk}\n"))


def test_results_are_shown_line_by_line_with_the_host():
    ok = fleet.HostResult("web1:10000", Reply("uptime", True, "a\nb"))
    empty = fleet.HostResult("web2:10000", Reply("x", True, None))
    failed = fleet.HostResult("web3:10000", Reply("x", False, error="kaput"))
    down = fleet.HostResult("web4:10000", problem="cannot connect to web4:10000: refused")
    assert [fleet.as_text(r) for r in (ok, empty, failed, down)] == [
        "web1:10000: a\nweb1:10000: b\n", "web2:10000:\n", "web3:10000: ERROR: kaput\n",
        "web4:10000: cannot connect to web4:10000: refused\n"]
    assert fleet.failure_summary([ok, failed, down]) == \
        "2 of 3 hosts failed: web3:10000 (error reply), web4:10000 (no answer)"
    assert fleet.failure_summary([ok, empty]) is None


# -- tshell --hosts against real servers -------------------------------------------------

def test_one_command_on_several_hosts_in_a_stable_order(server_thread):
    ports = [server_thread.start() for _ in range(3)]
    down = closed_port()
    hosts = [f"127.0.0.1:{ports[2]}", f"127.0.0.1:{down}", f"127.0.0.1:{ports[0]}",
             f"localhost:{ports[1]}"]
    status, out, err = tshell("--hosts", ",".join(hosts), "-c", "systemstatus echo up")
    assert status == 2  # a host could not be reached
    assert out == (f"{hosts[0]}: up\n"
                   f"{hosts[1]}: cannot connect to {hosts[1]}: Connection refused\n"
                   f"{hosts[2]}: up\n{hosts[3]}: up\n")
    assert err == f"tshell: 1 of 4 hosts failed: {hosts[1]} (no answer)\n"


def test_an_error_reply_on_one_host_is_status_1(server_thread, tmp_path):
    good, other = server_thread.start(), server_thread.start(no_default_services=True)
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(f"# two hosts\n127.0.0.1:{good}\n127.0.0.1:{other}  # no bundled\n")
    status, out, err = tshell("--hosts-file", str(hosts_file), "-c", "systemstatus echo x")
    assert status == 1
    assert out == (f"127.0.0.1:{good}: x\n127.0.0.1:{other}: ERROR: unknown command "
                   "'systemstatus' (try 'help')\n")
    assert err == f"tshell: 1 of 2 hosts failed: 127.0.0.1:{other} (error reply)\n"


def test_json_prints_one_object_per_host(server_thread):
    port, down = server_thread.start(), closed_port()
    status, out, _ = tshell("--hosts", f"127.0.0.1:{port},127.0.0.1:{down}", "--json",
                            "-c", "testsvc data")
    rows = [json.loads(line) for line in out.splitlines()]
    for row in rows:
        assert row.pop("seconds") >= 0
    assert (status, rows) == (2, [
        {"host": f"127.0.0.1:{port}", "ok": True, "reached": True,
         "result": {"b": [1, 2], "a": None}},
        {"host": f"127.0.0.1:{down}", "ok": False, "reached": False,
         "error": f"cannot connect to 127.0.0.1:{down}: Connection refused"}])


def test_ping_lists_who_answers_and_their_services(server_thread):
    full, bare, down = server_thread.start(), server_thread.start(
        services=[MEETING], no_default_services=True), closed_port()
    status, out, err = tshell("--hosts", f"127.0.0.1:{full},127.0.0.1:{bare},127.0.0.1:{down}",
                              "--ping")
    rows = [line.split() for line in out.splitlines()]
    assert status == 2
    assert [row[:2] for row in rows] == [[f"127.0.0.1:{full}", "up"],
                                         [f"127.0.0.1:{bare}", "up"],
                                         [f"127.0.0.1:{down}", "DOWN"]]
    assert rows[0][4:] == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"] and rows[1][4:] == ["meeting"]
    assert out.splitlines()[2].endswith("Connection refused")
    assert "1 of 3 hosts failed" in err


def test_fifty_hosts_are_asked_at_once(server_thread):
    """Each call waits until all fifty have arrived: asked one after another,
    the first would wait for the rest until its time limit and fail."""
    room = meeting_room(expected=50)
    ports = start_meeting_servers(server_thread, 50, room)
    status, out, err = tshell("--hosts", ",".join(f"127.0.0.1:{p}" for p in ports),
                              "-c", "meeting meet", "--timeout", "20")
    assert (status, err) == (0, "")
    assert out == "".join(f"127.0.0.1:{port}: 50\n" for port in ports)
    assert room["peak"] == 50


async def test_parallel_bounds_how_many_hosts_are_asked_at_once(server_thread):
    room = meeting_room(expected=0)
    ports = start_meeting_servers(server_thread, 20, room)
    results = await fleet.run_everywhere([("127.0.0.1", p) for p in ports], "meeting pause 0.02",
                                         parallel=5, timeout=10)
    assert [r.reply.value for r in results] == [0.02] * 20
    assert 1 <= room["peak"] <= 5


async def test_a_host_that_hangs_is_cut_off_at_the_timeout(server_thread):
    port = server_thread.start()
    results = await fleet.run_everywhere([("127.0.0.1", port)], "testsvc sleep 5", timeout=0.2)
    assert results[0].problem in (f"127.0.0.1:{port}: no reply within 0.2 s",
                                  "no answer within 0.2 s")


def test_a_fleet_command_the_client_refuses_is_one_line_not_a_traceback(port):
    """Guards a fault since fixed, which was:
    fleet.py visit(): request_bytes' ValueError ('mode text') escapes gather()."""
    status, _out, err = run_tshell_main("--hosts", f"127.0.0.1:{port}", "-c", "mode text")
    assert status == 2
    assert "JSON mode" in err


def test_duplicate_hosts_are_asked_once(port):
    hosts = f"127.0.0.1:{port},127.0.0.1:{port}, 127.0.0.1:{port} "
    status, out, err = tshell("--hosts", hosts, "-c", "systemstatus echo once")
    assert (status, out, err) == (0, f"127.0.0.1:{port}: once\n", "")


async def test_an_ipv6_host_is_shown_in_brackets():
    port = closed_port()
    results = await fleet.run_everywhere([parse_address(f"[::1]:{port}")], "help", timeout=2)
    assert results[0].host == f"[::1]:{port}"
    assert not results[0].reached
    assert fleet.as_text(results[0]).startswith(f"[::1]:{port}: cannot connect to [::1]:{port}: ")


async def test_a_blackholed_host_costs_one_timeout_and_the_others_answer(server_thread):
    good = server_thread.start()
    with blackhole() as dark:
        started = time.monotonic()
        results = await fleet.run_everywhere([("127.0.0.1", dark), ("127.0.0.1", good)],
                                             "testsvc add 1", timeout=0.5)
        took = time.monotonic() - started
    assert results[0].problem in (f"127.0.0.1:{dark}: no connection within 0.5 s",
                                  "no answer within 0.5 s")
    assert results[1].reply.value == 2
    assert took < 5


def test_a_stream_on_many_hosts_keeps_its_chunks_per_host(server_thread):
    ports = [server_thread.start() for _ in range(2)]
    status, out, err = tshell("--hosts", ",".join(f"127.0.0.1:{p}" for p in ports), "--json",
                              "-c", "testsvc count 3")
    rows = [json.loads(row) for row in out.splitlines()]
    assert (status, err) == (0, "")
    assert [(row["host"], row["result"]) for row in rows] == \
        [(f"127.0.0.1:{p}", [1, 2, 3]) for p in ports]
