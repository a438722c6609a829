"""One command on many hosts at once, and which hosts answer.

Every host gets its own connection; at most ``parallel`` run at a time, each
bounded by ``timeout`` seconds from connecting to the end of its reply, so a
list of hosts answers in about the time of its slowest host, not the sum.
Results come back in the order the hosts were given.
"""

import asyncio
import json
import time
from dataclasses import dataclass

from . import AsyncClient, ClientError, Reply, parse_address
from .addresses import where_of
from .common import terse_fields

DEFAULT_PARALLEL = 64


@dataclass
class HostResult:
    """One host's outcome: a Reply, or ``problem`` when it gave none."""

    host: str
    reply: Reply | None = None
    problem: str | None = None
    services: tuple = ()
    seconds: float = 0.0

    @property
    def ok(self):
        return self.reply is not None and self.reply.ok

    @property
    def reached(self):
        return self.reply is not None


def read_hosts_file(text):
    """One host per line; blank lines and ``#`` comments (whole or trailing) ignored."""
    return [line.partition("#")[0].strip() for line in text.splitlines()
            if line.partition("#")[0].strip()]


def parse_hosts(names):
    """Host names (or Unix sockets' paths) -> unique (host, port) pairs, in
    order; ValueError for a bad one."""
    seen = {}
    for name in names:
        seen.setdefault(parse_address(name), None)
    return list(seen)


async def run_everywhere(addresses, line, *, parallel=DEFAULT_PARALLEL, timeout=30.0,
                         **client_options):
    """Run ``line`` on every (host, port); a HostResult each, in the same order."""
    async def one(client):
        return await client.call(line)
    return await _everywhere(addresses, one, parallel, timeout, client_options)


async def ping_everywhere(addresses, *, parallel=DEFAULT_PARALLEL, timeout=5.0,
                          **client_options):
    """Which hosts answer, how fast, and the services each runs."""
    async def one(client):
        return await client.call("help -s")
    results = await _everywhere(addresses, one, parallel, timeout, client_options)
    for result in results:
        if result.ok:
            result.services = tuple(terse_fields(result.reply.text).get("SERVICES", ()))
    return results


async def _everywhere(addresses, ask, parallel, timeout, client_options):
    """``client_options`` go to each AsyncClient: ssl, user, password."""
    turns = asyncio.Semaphore(parallel)

    async def visit(host, port):
        result = HostResult(where_of(host, port))
        async with turns:
            started = time.monotonic()
            client = AsyncClient(host, port, timeout=timeout, **client_options)
            try:
                async with asyncio.timeout(timeout):
                    await client.connect()
                    result.reply = await ask(client)
            except TimeoutError:
                result.problem = f"no answer within {timeout:g} s"
            except ClientError as exc:
                result.problem = str(exc)
            finally:
                await client.close()
                result.seconds = time.monotonic() - started
        return result

    return await asyncio.gather(*(visit(host, port) for host, port in addresses))


# -- showing results ---------------------------------------------------------------------

def as_text(result):
    """A host's outcome as ``HOST: line`` rows, one per line of its reply."""
    if result.reply is None:
        return f"{result.host}: {result.problem}\n"
    rows = str(result.reply).split("\n")[:-1]  # at newlines only, as the server ends lines
    return "".join(f"{result.host}: {row}\n" for row in rows) or f"{result.host}:\n"


def as_json(result):
    obj = {"host": result.host, "ok": result.ok, "reached": result.reached,
           "seconds": round(result.seconds, 4)}
    if result.reply is not None and result.reply.ok:
        obj["result"] = result.reply.chunks or result.reply.value
    else:
        obj["error"] = result.reply.error if result.reached else result.problem
    if result.services:
        obj["services"] = list(result.services)
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def ping_row(result, width):
    if not result.ok:
        return f"{result.host:<{width}}  DOWN  {result.problem or result.reply.error}\n"
    milliseconds = f"{result.seconds * 1000:.0f} ms"
    return f"{result.host:<{width}}  up    {milliseconds:>7}  {' '.join(result.services)}\n"


def failure_summary(results):
    """One line naming the hosts that failed, or None if none did."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    named = ", ".join(f"{r.host} ({'error reply' if r.reached else 'no answer'})" for r in failed)
    return f"{len(failed)} of {len(results)} hosts failed: {named}"
