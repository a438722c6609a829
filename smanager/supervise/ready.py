"""Readiness checks: is a started program serving yet?

Rules:

- ``check(kind, target, timeout=...)`` looks once: None when ready, else one
  line saying why not, naming what was checked ("tcp 127.0.0.1:8080:
  connection refused").  It is bounded by ``timeout`` and raises nothing.
- tcp: target "PORT" (on 127.0.0.1), "HOST:PORT" or "[V6]:PORT"; ready when a
  connection is accepted.
- http: target "http://HOST[:PORT]/PATH"; one GET (HTTP/1.0, Host header,
  Connection: close); ready on a 2xx or 3xx status.  No https.
- cmd: target is split like a shell would (no shell runs); the program runs in
  its own session with no stdin or output; ready on exit status 0.  Still
  running at the timeout, or when the check is cancelled, its whole process
  group is killed and reaped.
- ``wait_ready()`` repeats the check every ``interval`` until ready, until
  ``timeout`` ("not ready after 30 s: " + the last reason), or until ``alive``
  says the program exited ("exited").  ``alive`` is a callable returning a bool
  or an object with ``is_set()``; it is consulted before and after every check,
  and every check and pause is at most ``interval`` long, so an exit is noticed
  within one interval.  A caller that knows the moment of exit cancels the wait.
"""

import asyncio
import functools
import os
import shlex
import signal
import subprocess
from urllib.parse import urlsplit

from smanager.wire.address import format_address

MIN_INTERVAL = 0.01  # seconds: an interval of 0 must not spin


async def check(kind: str, target: str, *, timeout: float, run_as=None) -> str | None:
    """None when ready, else why not (one line).  ``run_as``: how a cmd check
    runs (env, cwd, user, group), as the program itself does -- never as
    smanager, with its environment and privileges."""
    try:
        label, probe = _probe_for(kind, target, run_as or {})
    except ValueError as error:
        return f"{kind} {target}: {_phrase(str(error))}"
    try:
        async with asyncio.timeout(timeout):
            reason = await probe()
    except TimeoutError:
        return f"{label}: timed out after {timeout:g} s"
    except OSError as error:
        return f"{label}: {_describe(error)}"
    except Exception as error:  # noqa: BLE001 - a check explains, never raises
        return f"{label}: {_phrase(str(error))}"
    return None if reason is None else f"{label}: {reason}"


async def wait_ready(kind, target, *, interval: float, timeout: float, alive,
                     run_as=None) -> str | None:
    """Check every INTERVAL until ready (None), TIMEOUT passes, or the program exits."""
    is_alive = alive.is_set if hasattr(alive, "is_set") else alive
    interval = max(interval, MIN_INTERVAL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reason = "not checked"
    for _ in range(int(timeout / interval) + 2):  # the deadline ends it first
        if not is_alive():
            return "exited"
        began = loop.time()
        rest = deadline - began
        if rest <= 0:
            break
        # A check may take longer than the interval (a slow health command):
        # it is bounded by what is left of the timeout, not by the interval.
        reason = await check(kind, target, timeout=rest, run_as=run_as)
        if reason is None:
            return None
        if not is_alive():
            return "exited"
        pause = min(began + interval, deadline) - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
    return f"not ready after {timeout:g} s: {reason}"


def _describe(error):
    """An OSError as a short lower-case phrase: "connection refused"."""
    if error.errno and error.errno > 0:  # (getaddrinfo's errors are negative)
        text = os.strerror(error.errno)  # asyncio's own text names the address again
    else:
        text = error.strerror or str(error)
    return _phrase(text)


def _phrase(text):
    """TEXT to follow a colon: "No closing quotation" -> "no closing quotation"."""
    return text[:1].lower() + text[1:]


def _probe_for(kind, target, run_as):
    """(what the reasons are about, a coroutine function doing one check);
    ValueError for a target that cannot be checked."""
    if kind == "tcp":
        host, port = _tcp_address(target)
        return f"tcp {format_address(host, port)}", functools.partial(_tcp, host, port)
    if kind == "http":
        host, port, request = _http_request(target)
        return target, functools.partial(_http, host, port, request)
    if kind == "cmd":
        argv = shlex.split(target)
        if not argv:
            raise ValueError("no command")
        return f"cmd {target}", functools.partial(_cmd, argv, run_as)
    raise ValueError("unknown readiness check (want tcp, http or cmd)")


def _tcp_address(target):
    """("127.0.0.1", PORT) from "PORT"; (HOST, PORT) from "HOST:PORT" or "[V6]:PORT"."""
    host, colon, port = target.rpartition(":")
    if not colon:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad address (want PORT or HOST:PORT)")
    return host, int(port)


def _http_request(url):
    """(host, port, the request's bytes) for a GET of URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("bad URL (want http://HOST:PORT/PATH)")
    port = parts.port  # ValueError for a bad one
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname if port is None else format_address(parts.hostname, port)
    request = (f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\nConnection: close\r\n"
               f"User-Agent: smanager\r\n\r\n")
    return parts.hostname, port or 80, request.encode()


async def _tcp(host, port):
    _, writer = await asyncio.open_connection(host, port)
    await _close(writer)


async def _http(host, port, request):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        status_line = await reader.readline()
    finally:
        await _close(writer)
    words = status_line.split(None, 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        return "no HTTP response" if not status_line else "not an HTTP response"
    status = int(words[1])
    return None if 200 <= status < 400 else f"status {status}"


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # a reset on close says nothing about readiness


async def _cmd(argv, run_as):
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, **run_as)
    try:
        status = await process.wait()
    finally:
        if process.returncode is None:  # timed out or cancelled: the group goes too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited just now
            await process.wait()
    if status == 0:
        return None
    if status > 0:
        return f"exit status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"
