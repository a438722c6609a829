"""SService.sibling: a service finds another running service of the same server."""

from helpers import run_line, started_manager

from smanager.config import bundled_services_dir
from smanager.service import SService


async def test_a_service_finds_a_running_sibling_and_nothing_else():
    async with started_manager(bundled_services_dir()) as manager:
        monitor = manager.catalog.services["monitor"].instance
        assert monitor.sibling("proc") is manager.catalog.services["proc"].instance
        assert monitor.sibling("nosuch") is None
        old = monitor.sibling("scripts")
        await run_line(manager, "restart scripts")
        assert monitor.sibling("scripts") is not old  # asked each time: the new instance
        assert monitor.sibling("scripts") is manager.catalog.services["scripts"].instance


def test_a_service_made_outside_a_server_has_no_siblings():
    assert SService().sibling("proc") is None
