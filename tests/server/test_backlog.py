"""The listen backlog: a burst of connections arriving at once is queued by the kernel,
not dropped into a 1-second SYN retry (asyncio's default is 100)."""

import subprocess

import pytest
from helpers import TIMEOUT, need, running_server

from smanager.config import Config, ConfigError


def listening_backlog(port):
    """The backlog the kernel holds for the socket listening on PORT (ss shows it as Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


def somaxconn():
    with open("/proc/sys/net/core/somaxconn") as file:
        return int(file.read())


async def test_the_default_backlog_takes_a_burst_of_a_thousand_connections():
    need("ss")
    async with running_server() as server:
        assert listening_backlog(server.address[1]) == min(1024, somaxconn())


async def test_the_backlog_is_a_setting():
    need("ss")
    async with running_server(backlog=200) as server:
        assert listening_backlog(server.address[1]) == 200


@pytest.mark.parametrize("value, error", [(0, "backlog must be at least 1"),
                                          ("many", "backlog must be int")])
def test_a_bad_backlog_is_refused(value, error):
    with pytest.raises(ConfigError, match=error):
        Config().updated({"backlog": value})
