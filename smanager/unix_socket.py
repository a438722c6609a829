"""Listening on a Unix domain socket: who may connect is who may open the file.

- The socket is created with a umask that leaves it reachable by nobody but
  its owner, then given its mode (600 by default): it is never briefly open
  to others.
- A socket file left by a server that died is replaced; a live server's
  socket, or a file that is not a socket, is left alone and start-up fails.
- The file is removed when the server stops.
"""

import asyncio
import contextlib
import os
import socket
import stat


async def listen(protocol_factory, path, mode):
    _clear_stale(path)
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.get_running_loop().create_unix_server(
            protocol_factory, path, start_serving=False)
    finally:
        os.umask(old_umask)
    try:
        os.chmod(path, mode)
    except OSError:
        server.close()
        remove(path)
        raise
    return server


def remove(path):
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def _clear_stale(path):
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens there: a leftover
            return
    raise FileExistsError(f"another server is listening on {path}")
