"""Help in the seed's layout, rendered by the core without sockets."""

import pytest
from helpers import SEP, ask_core, started_manager

from smanager.wire.protocol import SEPARATOR

RULED = "-" + SEPARATOR + "\n"  # a body line of 50 dashes, dash-stuffed on the wire


@pytest.fixture
async def manager():
    async with started_manager() as manager:
        yield manager


async def test_full_help_is_the_seed_layout(manager):
    assert await ask_core(manager, "help") == (
        RULED + "SManager\n" + RULED +
        "Toplevel exposed commands:\n"
        "    captest: Takes one capture now and returns the file it wrote\n"
        "    capture_at: Captures every SECONDS seconds (1 to 86400)\n"
        "    scrapfreq: Captures PER_MINUTE times a minute (e.g. 0.5 is every two minutes)\n"
        "    startcap: Starts capturing periodically\n"
        "    stopcap: Stops capturing\n"
        "    hostname: Returns hostname of system\n" + RULED +
        "Services:\n"
        "    monitor: Metrics: collectors, the latest values, history, charts, alerts\n"
        "    proc: Supervise programs: start, stop, restart, logs, why they died\n"
        "    scrapman: Captures snapshots of the host's status to files, periodically\n"
        "    scripts: Run admin scripts (Pyjojo's format): list, show, run, runs, log, tail, kill\n"
        "    systemstatus: Simple example SService implementation\n"
        "Commands:\n"
        "    help: display help message\n"
        "    kill: kill server\n"
        "    restart: restart services\n"
        "\n" + SEP)


async def test_terse_help_is_exactly_three_lines(manager):
    assert await ask_core(manager, "help -s") == (
        "TOP: captest capture_at scrapfreq startcap stopcap hostname\n"
        "SERVICES: monitor proc scrapman scripts systemstatus\n"
        "COMMANDS: help kill restart\n" + SEP)


SYSTEMSTATUS_HELP = (
    "-" * 40 + "\nSystemStatus\nSimple example SService implementation\n" + "-" * 40 + "\n"
    "help: Print the help dialogue for this service\n"
    "disk: Returns disk usage of the filesystem holding PATH (default /)\n"
    "echo: Returns its arguments: a cheap check that the server answers\n"
    "load: Returns the load averages over 1, 5 and 15 minutes\n"
    "memory: Returns memory in use and available (from /proc/meminfo)\n"
    "uptime: Returns uptime of system\n"
    "hostname: Returns hostname of system\n"
    "\n" + SEP)


@pytest.mark.parametrize("line", ["systemstatus help", "help systemstatus", "systemstatus",
                                  "SystemStatus HELP", "HELP SYSTEMSTATUS"])
async def test_service_help(manager, line):
    assert await ask_core(manager, line) == SYSTEMSTATUS_HELP


async def test_service_terse_help(manager):
    assert await ask_core(manager, "help -s systemstatus") == (
        "COMMANDS: help disk echo load memory uptime hostname\nTOP: hostname\n" + SEP)


@pytest.mark.parametrize("line", ["help scrapman capture_at", "help capture_at",
                                  "scrapman help capture_at"])
async def test_command_help_has_synopsis_and_docstring(manager, line):
    assert await ask_core(manager, line) == (
        "capture_at SECONDS\n    Captures every SECONDS seconds (1 to 86400)\n" + SEP)


async def test_service_command_help_names_the_service(manager):
    assert await ask_core(manager, "help systemstatus disk") == (
        "systemstatus disk [PATH]\n"
        "    Returns disk usage of the filesystem holding PATH (default /)\n" + SEP)


async def test_whole_docstring_is_shown(manager):
    text = await ask_core(manager, "help systemstatus echo")
    assert text == ("systemstatus echo [TEXT...]\n"
                    "    Returns its arguments: a cheap check that the server answers\n"
                    "\n"
                    "    Quote to keep spaces: echo 'two  spaces'.\n" + SEP)


async def test_builtin_help(manager):
    assert (await ask_core(manager, "help kill")).startswith("kill\n    kill server\n")
    assert (await ask_core(manager, "help quit")) == "quit\n    close this connection\n" + SEP


@pytest.mark.parametrize("line, error", [
    ("help nosuch", "ERROR: no help for 'nosuch' (try 'help')"),
    ("help systemstatus nosuch", "ERROR: unknown command 'nosuch' for systemstatus "
                                 "(try 'systemstatus help')"),
])
async def test_help_errors(manager, line, error):
    assert await ask_core(manager, line) == error + "\n" + SEP
