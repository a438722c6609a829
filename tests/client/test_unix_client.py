"""The clients over a server's Unix socket: a host with a '/' in it is the
socket's path, for the blocking and asyncio clients, logging in, and the fleet."""

import pytest
from helpers import TIMEOUT, running_server, short_dir

from smanager.client import AsyncClient, CannotConnect, Client, fleet


@pytest.fixture
def socket_path(server_thread):
    """The path of a default test server's Unix socket (it listens on TCP too)."""
    with short_dir() as directory:
        path = str(directory / "smanager.sock")
        server_thread.start(unix_socket=path)
        yield path


def test_the_blocking_client_talks_to_a_unix_socket(socket_path):
    with Client(socket_path, timeout=TIMEOUT) as client:
        assert client.where == socket_path
        assert client.banner_services == ["monitor", "proc", "scrapman", "scripts", "systemstatus", "testsvc"]
        assert client.call("testsvc add 2 2").value == 4
        assert list(client.stream("testsvc count 3")) == [1, 2, 3]
        assert client.call("testsvc whoami").value.startswith("unix ")


async def test_the_async_client_talks_to_a_unix_socket():
    with short_dir() as directory:
        path = str(directory / "s.sock")
        async with running_server(unix_socket=path, tcp=False), \
                AsyncClient(path, timeout=TIMEOUT) as client:
            assert (await client.call("testsvc add 1 2")).value == 3
            assert [chunk async for chunk in client.stream("testsvc count 2")] == [1, 2]


def test_a_client_logs_in_over_a_unix_socket(server_thread, users_file):
    with short_dir() as directory:
        path = str(directory / "s.sock")
        server_thread.start(unix_socket=path, users_file=users_file)
        with Client(path, timeout=TIMEOUT, user="bob", password="bob-pw") as client:
            assert client.run("systemstatus", "echo", "in") == "in"


@pytest.mark.parametrize("kind", ["blocking", "async"])
async def test_a_missing_socket_file_is_cannot_connect_naming_the_path(kind):
    with short_dir() as directory:
        path = str(directory / "nobody.sock")
        expected = f"cannot connect to {path}: No such file or directory"
        with pytest.raises(CannotConnect, match=expected):
            if kind == "blocking":
                Client(path, timeout=TIMEOUT).connect()
            else:
                await AsyncClient(path, timeout=TIMEOUT).connect()


async def test_the_fleet_asks_sockets_and_tcp_hosts_alike():
    with short_dir() as directory:
        path = str(directory / "s.sock")
        async with running_server(unix_socket=path) as server:
            tcp = f"127.0.0.1:{server.address[1]}"
            results = await fleet.run_everywhere(fleet.parse_hosts([path, tcp]),
                                                 "testsvc add 1", timeout=TIMEOUT)
    assert [fleet.as_text(result) for result in results] == [f"{path}: 2\n", f"{tcp}: 2\n"]
