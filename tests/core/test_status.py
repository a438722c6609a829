"""The status built-in: the server and each service at a glance; what only an
admin may see (files, errors) stays out of a lower level's view."""

import json

from helpers import FIXTURE_SERVICES, FIXTURES, ask_core, make_users, started_manager

from smanager.auth.access import Access
from smanager.auth.peer import Peer
from smanager.config import bundled_services_dir


def status_of(reply):
    body, _, _ = reply.rpartition("-" * 50)
    return json.loads(body)


async def test_status_reports_the_server_and_each_service():
    async with started_manager(FIXTURE_SERVICES, FIXTURES / "start_fails") as manager:
        # A wrong argument is the caller's mistake, not the service's failure.
        assert (await ask_core(manager, "testsvc add 1 x")).startswith("ERROR: B must be")
        report = status_of(await ask_core(manager, "status"))
        assert report["version"] and report["started"].endswith("Z")
        assert report["uptime_seconds"] >= 0
        testsvc = report["services"]["testsvc"]
        assert testsvc["state"] == "running" and testsvc["since"].endswith("Z")
        assert testsvc["file"].endswith("testsvc.py") and testsvc["last_error"] is None
        assert report["services"]["sulky"] == {
            "state": "not running", "since": None,
            "last_error": "failed to start: OSError: port 80 is taken",
            "file": str(FIXTURES / "start_fails" / "sulky.py")}


async def test_status_keeps_the_latest_failed_command_of_a_service():
    async with started_manager(FIXTURE_SERVICES) as manager:
        await ask_core(manager, "testsvc fail")
        error = status_of(await ask_core(manager, "status"))["services"]["testsvc"]["last_error"]
        assert error.endswith("Z testsvc fail failed: RuntimeError: kaput second line")


async def test_a_read_level_user_sees_what_help_shows_them_and_no_files_or_errors(tmp_path):
    access = Access(make_users(tmp_path / "users", carol="read"))
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES,
                               FIXTURES / "start_fails", access=access) as manager:
        carol = Peer("test:1", "test")
        carol.login = "carol"
        access.greet(carol, manager.catalog)
        report = status_of(await ask_core(manager, "status", carol))
        shown = (await ask_core(manager, "help -s", carol)).split("\n")[1].split()[1:]
        assert sorted(report["services"]) == sorted(shown) == ["monitor", "proc", "scrapman", "scripts", "systemstatus"]
        assert report["services"]["systemstatus"].keys() == {"state", "since"}


async def test_restart_of_a_config_table_naming_no_service_says_there_is_nothing_to_restart():
    async with started_manager(options={"scrapmann": {}}) as manager:
        assert await ask_core(manager, "restart scrapmann") == (
            "ERROR: scrapmann has a [service.scrapmann] table in the config, but no service of "
            "that name is loaded; there is nothing to restart\n" + "-" * 50 + "\n")


async def test_status_stays_out_of_the_seeds_help_listing():
    async with started_manager() as manager:
        assert "COMMANDS: help kill restart\n" in await ask_core(manager, "help -s")
        assert "    status:" not in await ask_core(manager, "help")
        assert (await ask_core(manager, "help status")).startswith("status\n")


async def test_the_latest_failure_of_a_command_taking_secrets_keeps_its_text_out():
    async with started_manager(FIXTURES / "odd_signatures") as manager:
        assert await ask_core(manager, "odd check 4711") == "ERROR: wrong pin 4711\n" + "-" * 50 + "\n"
        error = status_of(await ask_core(manager, "status"))["services"]["odd"]["last_error"]
        assert error.endswith("Z odd check failed") and "4711" not in error
