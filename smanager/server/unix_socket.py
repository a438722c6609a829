"""Listening on a Unix domain socket: who may connect is who may open the file.

- The socket is created with a umask that leaves it reachable by nobody but
  its owner, then given its mode (600 by default): it is never briefly open
  to others.
- A socket file left by a server that died is replaced; a live server's
  socket, or a file that is not a socket, is left alone and start-up fails.
- The file is removed when the server stops: that file only, never one a
  later server put at the same path.
"""

import asyncio
import contextlib
import os
import socket
import stat


async def listen(protocol_factory, path, mode, backlog=100):
    _clear_stale(path)
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.get_running_loop().create_unix_server(
            protocol_factory, path, backlog=backlog, start_serving=False)
    finally:
        os.umask(old_umask)
    try:
        os.chmod(path, mode)
        info = os.stat(path)
    except OSError:
        server.close()
        raise
    server.socket_file = (path, info.st_dev, info.st_ino)  # what remove() may delete
    return server


def remove(server):
    """Delete the socket file this server made, and no other (a later server's)."""
    path, device, inode = getattr(server, "socket_file", (None, None, None))
    if path is None:
        return
    with contextlib.suppress(OSError):
        info = os.stat(path)
        if (info.st_dev, info.st_ino) == (device, inode):
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
