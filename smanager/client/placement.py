"""Placing one command on the least loaded of several hosts (``tshell --place``).

Rules:
- Every host is asked ``proc load`` at once, through fleet.run_everywhere:
  at most ``parallel`` at a time, each bounded by ``timeout`` in all.
- A host's load is proc's ``{"load1", "cpus", "score", "running"}``: score is
  the 1-minute load average divided by the CPU count.  A host that gives none
  (no answer, a refused login, no proc service, an error reply, a reply that
  is not a load) is skipped, with why.
- The least loaded host has the lowest score; ties go to fewer running
  programs, then to the host given first.
- The command runs on that host only, once, on a connection of its own;
  run_on() never tries another host (see there).
"""

import json
import math
from dataclasses import dataclass

from . import AsyncClient, fleet

LOAD_REQUEST = "proc load"


@dataclass
class Candidate:
    """A host that told its load: ``host`` as messages name it, ``address`` to connect."""

    host: str
    address: tuple
    load: dict


@dataclass
class Skipped:
    host: str
    why: str


async def survey(addresses, *, parallel, timeout, **client_options):
    """Ask every (host, port) its load: (candidates, skipped), each in the order given."""
    results = await fleet.run_everywhere(addresses, LOAD_REQUEST, parallel=parallel,
                                         timeout=timeout, **client_options)
    candidates, skipped = [], []
    for address, result in zip(addresses, results):
        if result.reply is None:
            skipped.append(Skipped(result.host, result.problem))
        elif not result.reply.ok:
            skipped.append(Skipped(result.host, f"{LOAD_REQUEST}: {result.reply.error}"))
        elif not is_load(result.reply.value):
            skipped.append(Skipped(result.host, f"{LOAD_REQUEST} gave no score and running "
                                                "count (an older proc?)"))
        else:
            candidates.append(Candidate(result.host, address, result.reply.value))
    return candidates, skipped


def is_load(value):
    """True for a dict with a finite number ``score`` and a count ``running``."""
    if not isinstance(value, dict):
        return False
    score, running = value.get("score"), value.get("running")
    return (isinstance(score, int | float) and not isinstance(score, bool)
            and math.isfinite(score) and isinstance(running, int)
            and not isinstance(running, bool) and running >= 0)


def least_loaded(candidates):
    """The candidate to place on, or None if there is none."""
    if not candidates:
        return None
    _, chosen = min(enumerate(candidates),  # the index: equals keep the order given
                    key=lambda pair: (pair[1].load["score"], pair[1].load["running"], pair[0]))
    return chosen


async def run_on(candidate, line, *, timeout, **client_options):
    """Run ``line`` on the chosen host; its Reply (an error reply included).
    ClientError when it cannot be reached or answers too late, as for ``-c``:
    ``timeout`` bounds connecting and each part of the reply.

    Never retried on another host, whatever happens: the command may have had
    effects before it failed (a session started, then its check failed; a
    reply lost after the work was done), and a second host would then run it
    twice.  Which host it was is the caller's to tell."""
    client = AsyncClient(*candidate.address, timeout=timeout, **client_options)
    try:
        await client.connect()
        return await client.call(line)
    finally:
        await client.close()


# -- showing the outcome ------------------------------------------------------------------

def as_text(candidate, reply):
    """``HOST: the reply``.  A session (a dict with an ``id``, as ``proc run``
    gives) shows as its id, as text mode does; any other reply as ``--hosts -c``
    shows it, a row per line.  Of a failed reply only what it streamed before
    failing: its error is the caller's to show."""
    value = reply.value
    if reply.ok and isinstance(value, dict) and isinstance(value.get("id"), str):
        return f"{candidate.host}: {value['id']}\n"
    if reply.ok:
        return fleet.as_text(fleet.HostResult(candidate.host, reply))
    return "".join(f"{candidate.host}: {row}\n" for row in reply.text.split("\n")[:-1])


def as_json(candidate, reply):
    """One JSON line: the host, the load it was chosen by, and the result or error."""
    obj = {"host": candidate.host, "load": candidate.load}
    if reply.ok:
        obj["result"] = reply.chunks or reply.value
    else:
        obj["error"] = reply.error
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"
