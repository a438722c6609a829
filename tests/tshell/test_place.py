"""tshell --place: the command runs on the least loaded host only, hosts that
give no load are skipped in a line each, a failure is never tried elsewhere.

Real servers with proc, each on a ServerThread of its own: os.getloadavg is
replaced by one that answers per thread, so each host has the load its test
gives it.  Every session a test starts is removed, and every server stopped.
"""

import json
import os
import sys
import threading

import pytest
from helpers import (
    TIMEOUT,
    ServerThread,
    blackhole,
    closed_port,
    make_users,
    run_tshell_main,
)

from smanager.client import Client
from smanager.client.placement import Candidate, is_load, least_loaded
from smanager.tshell.arguments import build_parser

SLEEPER = {"command": [sys.executable, "-c", "import time; time.sleep(1000)"],
           "start_secs": 0.2}
CPUS = 4


class Hosts:
    """proc servers, one ServerThread each; ``start`` gives a host's HOST:PORT."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp_path, self.threads, self.loads = tmp_path, [], {}
        monkeypatch.setattr(os, "getloadavg", self._loadavg)
        monkeypatch.setattr(os, "cpu_count", lambda: CPUS)

    def _loadavg(self):
        load = self.loads[threading.get_ident()]  # a KeyError: a thread no test set up
        return load, load, load

    def start(self, load=0.5, templates=None, **settings):
        """A server with proc and these templates (sleeper unless given)."""
        servers = ServerThread()
        self.threads.append(servers)
        self.loads[servers.thread.ident] = load
        state_dir = self.tmp_path / f"state{len(self.threads)}"
        settings["service"] = {"proc": {
            "state_dir": str(state_dir),
            "templates": {"sleeper": SLEEPER} if templates is None else templates}}
        return f"127.0.0.1:{servers.start(**settings)}"

    def start_without_proc(self):
        servers = ServerThread()
        self.threads.append(servers)
        return f"127.0.0.1:{servers.start(no_default_services=True)}"

    def close(self):
        for servers in self.threads:  # stopping a server stops its programs
            servers.close()


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    started = Hosts(tmp_path, monkeypatch)
    yield started
    started.close()


def call(where, line, **options):
    host, port = where.rsplit(":", 1)
    with Client(host, int(port), timeout=TIMEOUT, **options) as client:
        return client.call(line)


def sessions(where):
    return [row["name"] for row in call(where, "proc list").value]


def remove(where, *session_ids):
    for session_id in session_ids:
        assert call(where, f"proc rm {session_id}").ok


def test_the_session_starts_on_the_least_loaded_host_and_nowhere_else(hosts):
    busy, idle, busier = hosts.start(load=3.0), hosts.start(load=0.4), hosts.start(load=8.0)
    status, out, err = run_tshell_main("--hosts", f"{busy},{idle},{busier}",
                                       "--place", "proc run sleeper")
    assert (status, out, err) == (0, f"{idle}: sleeper-1\n", "")
    assert (sessions(busy), sessions(idle), sessions(busier)) == ([], ["sleeper-1"], [])
    remove(idle, "sleeper-1")


def test_json_prints_the_host_the_load_it_was_chosen_by_and_the_result(hosts):
    busy, idle = hosts.start(load=2.0), hosts.start(load=1.0)
    status, out, err = run_tshell_main("--hosts", f"{busy},{idle}", "--json",
                                       "--place", "proc run sleeper")
    assert (status, err) == (0, "")
    placed = json.loads(out)
    assert placed["host"] == idle
    assert placed["load"] == {"load1": 1.0, "cpus": CPUS, "score": 0.25, "running": 0}
    assert placed["result"]["id"] == "sleeper-1" and placed["result"]["pid"] > 0
    assert out.count("\n") == 1
    remove(idle, "sleeper-1")


def test_ties_go_to_fewer_running_programs_then_to_the_host_given_first(hosts):
    first, second = hosts.start(load=1.0), hosts.start(load=1.0)
    assert call(first, "proc run sleeper").value["id"] == "sleeper-1"
    place = ("--hosts", f"{first},{second}", "--place", "proc run sleeper")
    assert run_tshell_main(*place) == (0, f"{second}: sleeper-1\n", "")
    assert run_tshell_main(*place) == (0, f"{first}: sleeper-2\n", "")  # 1 running each
    assert (sessions(first), sessions(second)) == (["sleeper-1", "sleeper-2"], ["sleeper-1"])
    remove(first, "sleeper-1", "sleeper-2")
    remove(second, "sleeper-1")


def test_hosts_that_give_no_load_are_skipped_in_a_line_each(hosts):
    dead, no_proc = f"127.0.0.1:{closed_port()}", hosts.start_without_proc()
    busy, idle = hosts.start(load=6.0), hosts.start(load=5.0)
    with blackhole() as dark_port:
        dark = f"127.0.0.1:{dark_port}"
        status, out, err = run_tshell_main(
            "--hosts", f"{dead},{idle},{dark},{no_proc},{busy}", "--timeout", "1.5",
            "--place", "proc run sleeper")
    assert (status, out) == (0, f"{idle}: sleeper-1\n")
    assert err.splitlines() == [
        f"tshell: skipped {dead}: cannot connect to {dead}: Connection refused",
        f"tshell: skipped {dark}: no answer within 1.5 s",
        f"tshell: skipped {no_proc}: proc load: unknown command 'proc' (try 'help')"]
    assert sessions(busy) == []
    remove(idle, "sleeper-1")


def test_a_host_that_refuses_the_login_is_skipped(hosts, tmp_path, monkeypatch):
    strangers = make_users(tmp_path / "strangers", alice="admin")
    knows_bob = make_users(tmp_path / "knows-bob", bob="operate")
    refuses = hosts.start(load=0.1, users_file=strangers)
    accepts = hosts.start(load=2.0, users_file=knows_bob)
    monkeypatch.setenv("SMANAGER_PASSWORD", "bob-pw")
    status, out, err = run_tshell_main("--user", "bob", "--hosts", f"{refuses},{accepts}",
                                       "--place", "proc run sleeper")
    assert (status, out) == (0, f"{accepts}: sleeper-1\n")
    assert err.startswith(f"tshell: skipped {refuses}: ") and "cannot log in as bob" in err
    assert err.count("\n") == 1
    remove_as_bob = {"user": "bob", "password": "bob-pw"}
    assert call(accepts, "proc rm sleeper-1", **remove_as_bob).ok


def test_no_host_left_is_one_more_line_and_status_1(hosts):
    dead, no_proc = f"127.0.0.1:{closed_port()}", hosts.start_without_proc()
    status, out, err = run_tshell_main("--hosts", f"{dead},{no_proc}",
                                       "--place", "proc run sleeper")
    assert (status, out) == (1, "")
    skipped_dead, skipped_no_proc, last = err.splitlines()
    assert skipped_dead.startswith(f"tshell: skipped {dead}: ")
    assert skipped_no_proc.startswith(f"tshell: skipped {no_proc}: proc load: ")
    assert last == "tshell: no host left to place on: none of the 2 gave its load"


def test_a_command_that_fails_on_the_chosen_host_is_not_tried_on_another(hosts):
    no_template, has_it = hosts.start(load=0.1, templates={}), hosts.start(load=3.0)
    status, out, err = run_tshell_main("--hosts", f"{no_template},{has_it}",
                                       "--place", "proc run sleeper")
    assert (status, out) == (1, "")
    assert err.startswith(f"{no_template}: ERROR: ") and "sleeper" in err, err
    assert err.count("\n") == 1
    assert sessions(has_it) == []
    status, out, err = run_tshell_main("--hosts", f"{no_template},{has_it}", "--json",
                                       "--place", "proc run sleeper")
    assert (status, err) == (1, "")
    assert json.loads(out)["host"] == no_template and "sleeper" in json.loads(out)["error"]
    assert sessions(has_it) == []


@pytest.mark.parametrize("args, why", [
    (["--place", "proc run sleeper"], "--place needs --hosts or --hosts-file"),
    (["127.0.0.1:1", "--place", "proc run sleeper"], "--place needs --hosts or --hosts-file"),
    (["--hosts", "a,b", "--place", "proc run x", "-c", "help"], "drop -c and --ping"),
    (["--hosts", "a,b", "--place", "proc run x", "--ping"], "drop -c and --ping"),
    (["--hosts", "a,b", "--place", " "], "--place: a request needs a command"),
    (["--hosts", "a", "--place", "x", "--place", "y"], "--place given twice"),
])
def test_wrong_place_arguments_are_one_line_and_status_2(args, why):
    status, out, err = run_tshell_main(*args)
    assert (status, out) == (2, "")
    assert err.startswith("tshell: ") and why in err and err.count("\n") == 1, err


def test_help_says_how_load_is_measured():
    shown = " ".join(build_parser().format_help().split())  # as argparse wraps it
    assert ("--place COMMAND run COMMAND" in shown and "the 1-minute load average divided "
            "by the CPU count (proc load); ties go to fewer running programs") in shown


# -- choosing, as pure logic ----------------------------------------------------------------

def candidate(name, score, running):
    return Candidate(name, (name, 1), {"score": score, "running": running})


def test_the_lowest_score_wins_then_fewer_running_then_the_first_given():
    assert least_loaded([]) is None
    assert least_loaded([candidate("a", 0.5, 0), candidate("b", 0.25, 9)]).host == "b"
    assert least_loaded([candidate("a", 0.5, 3), candidate("b", 0.5, 2)]).host == "b"
    assert least_loaded([candidate("a", 0.5, 2), candidate("b", 0.5, 2)]).host == "a"


@pytest.mark.parametrize("value", [
    "0.5", None, [], {"score": 0.5}, {"running": 1}, {"score": "0.5", "running": 1},
    {"score": True, "running": 1}, {"score": float("nan"), "running": 1},
    {"score": 0.5, "running": -1}, {"score": 0.5, "running": 1.0},
])
def test_a_reply_that_is_not_a_load_is_refused(value):
    assert not is_load(value)
    assert is_load({"load1": 2.0, "cpus": 4, "score": 0.5, "running": 0})
