"""The Unix socket: private whatever the umask, beside TCP or alone, answered by
real clients, replaced only when stale, and never deleted by a server that did
not create it."""

import asyncio
import os
import socket
import stat
import subprocess

import pytest
from helpers import SEP, SEP_LINE, TIMEOUT, LineClient, need, running_server, short_dir


async def test_a_unix_socket_alone_is_private_and_answers(tmp_path):
    path = tmp_path / "smanager.sock"
    async with running_server(unix_socket=str(path), tcp=False):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = await LineClient.connect_unix(path, read_banner=False)
        try:
            assert (await client.reply()).startswith(b"*" * 50)
            assert await client.ask("testsvc add 2 2") == "4\n" + SEP
        finally:
            await client.close()
    assert not path.exists()  # removed on the way out


async def test_a_unix_socket_beside_tcp_with_its_own_mode(tmp_path):
    path = tmp_path / "s.sock"
    async with running_server(unix_socket=str(path), unix_socket_mode="660") as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert await (await LineClient.connect(server.address[1])).ask("testsvc add 1") == \
            "2\n" + SEP


async def test_a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(tmp_path):
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed server leaves
    async with running_server(unix_socket=str(path), tcp=False):
        with pytest.raises(FileExistsError, match="another server is listening"):
            async with running_server(unix_socket=str(path), tcp=False):
                pass
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a socket"):
        async with running_server(unix_socket=str(other), tcp=False):
            pass
    assert other.read_text() == "keep me"


@pytest.mark.parametrize("tool", ["nc", "socat"])
async def test_real_clients_reach_the_unix_socket(tmp_path, tool):
    need(tool)
    path = tmp_path / "s.sock"
    command = {"nc": ["nc", "-U", str(path)], "socat": ["socat", "-t", "5", "-", f"UNIX-CONNECT:{path}"]}
    async with running_server(unix_socket=str(path), tcp=False):
        process = await asyncio.create_subprocess_exec(
            *command[tool], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(process.communicate(b"systemstatus echo hi"), TIMEOUT)
    assert out.endswith(SEP_LINE + b"hi\n" + SEP_LINE)


async def test_a_failed_start_leaves_the_live_servers_unix_socket():
    """Guards a fault since fixed, which was:
    unix_socket.py/server.py: Server.start() cleans up with _close_listeners(),
    which unlinks config.unix_socket whatever it is.  A second server started on
    a path a live server is using fails (correctly, "another server is listening"),
    and on its way out deletes the live server's socket: nobody can connect to
    the first server any more.  The same happens when start() fails before the
    Unix listener was even created (the TCP port is taken).  Only a socket this
    server created (same st_dev/st_ino) may be removed."""
    with short_dir() as directory:
        path = directory / "s.sock"
        async with running_server(unix_socket=str(path)) as live:
            with pytest.raises(FileExistsError, match="another server is listening"):
                async with running_server(unix_socket=str(path), tcp=False):
                    pass
            assert path.exists(), "the live server's socket was deleted by the failed start"
            with pytest.raises(OSError):  # its TCP port is taken: fails before the socket
                async with running_server(port=live.address[1], unix_socket=str(path)):
                    pass
            assert path.exists(), "a start that failed on the TCP port deleted the socket"
            client = await LineClient.connect_unix(path)
            try:
                assert await client.ask("testsvc add 1 2") == "3\n" + SEP
            finally:
                await client.close()


async def test_the_unix_socket_is_private_whatever_the_umask_and_goes_away():
    """Pin: mode 600 even under umask 000, and removed when the server stops."""
    with short_dir() as directory:
        path = directory / "s.sock"
        old = os.umask(0)
        try:
            async with running_server(unix_socket=str(path), tcp=False):
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        finally:
            os.umask(old)
        assert not path.exists()
