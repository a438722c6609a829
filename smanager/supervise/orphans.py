"""What a killed smanager left running: knowing our processes, and stopping or adopting them.

Rules:

- After its process exits a pid names nobody; (pid, start time) does.  A leader
  whose start time differs from the record's is never signalled.  A group
  whose leader is gone is signalled only while it has members: the kernel does
  not reuse a pid while a process group with that id exists.
- A zombie counts as gone: it has exited, cannot be signalled or adopted, and
  waits only for a parent that may never reap it.
- ``sweep()``, once at start-up, kills (TERM and CONT, KILL after ``timeout``)
  or adopts what a previous smanager left, waiting with pidfds, never waitpid.
"""

import asyncio
import os
import signal

from .statedb import Record, boot_id

GROUP_POLL = 0.05  # seconds between two looks at a process group with no leader left
KILL_GRACE = 1.0  # seconds a group has to vanish after KILL before we report it alive
START_TIME_FIELD = 19  # field 22 of /proc/PID/stat, counted from field 3 (the state)
PGRP_FIELD = 2  # field 5


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None if there is
    no such process.  The name may hold spaces and parentheses, so the fields
    start after the last ")"."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    return text.rpartition(b")")[2].split()


def process_start_time(pid: int) -> int | None:
    """When process PID started (clock ticks since boot); None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[START_TIME_FIELD])


def is_same_process(rec: Record) -> bool:
    """The record's leader is alive and is the process the record was made for."""
    return process_start_time(rec.pid) == rec.start_time


def _group_has_members(pgid):
    """Some process of group PGID has not exited.  killpg(pgid, 0) answers "no"
    cheaply; its "yes" counts zombies too, so /proc is read to be sure."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # members we may not signal: still members
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields and fields[0] not in (b"Z", b"X") and int(fields[PGRP_FIELD]) == pgid:
            return True
    return False


async def sweep(records: list[Record], mode: str, *,
                timeout: float = 5.0) -> tuple[list[str], list[Record]]:
    """Deal with the children a previous smanager left (see the module's rules).
    Returns report lines for the log and the records adopted.  Groups are
    stopped concurrently, so start-up waits about ``timeout``, not one per record."""
    if mode not in ("kill", "adopt"):
        raise ValueError(f"orphans mode must be kill or adopt, not {mode!r}")
    outcomes = await asyncio.gather(*(_sweep_one(rec, mode, timeout) for rec in records))
    lines = [line for line, _ in outcomes if line]
    return lines, [rec for rec, (_, adopted) in zip(records, outcomes) if adopted]


async def _sweep_one(rec, mode, timeout):
    """(report line or None, adopted?) for one record."""
    who = f"{rec.name}: pid {rec.pid} ({rec.argv0})"
    if rec.boot_id and rec.boot_id != boot_id():
        return f"{who} was recorded before the machine restarted; forgot it", False
    try:
        # Opened before the start time is read: if that matches, the pidfd is
        # surely this process, and waiting on it cannot mistake a successor.
        leader = os.pidfd_open(rec.pid)
    except OSError:
        leader = None
    try:
        start_time = None if leader is None else process_start_time(rec.pid)
        if start_time is not None and start_time != rec.start_time:
            return f"{rec.name}: pid {rec.pid} now belongs to another process; left it alone", False
        if start_time is not None:
            if mode == "adopt":
                return f"{who} was left running by a previous smanager; adopted it", True
            how = await _stop_group(rec.pgid, leader, timeout)
            return f"{who} was left running by a previous smanager; {how}", False
        if not _group_has_members(rec.pgid):
            return None, False
        if not _group_carries(rec.pgid, rec.name):
            return (f"{who} is gone, and process group {rec.pgid} holds no process of ours; "
                    "left it alone"), False
        how = await _stop_group(rec.pgid, None, timeout)
        return f"{who} is gone but its process group {rec.pgid} was still running; {how}", False
    finally:
        if leader is not None:
            os.close(leader)


def _group_carries(pgid, name):
    """Some live member of group PGID was started by proc as program NAME (its
    environment says so): without its leader a group id proves nothing alone."""
    marker = f"SMANAGER_PROGRAM={name}".encode()
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields and fields[0] not in (b"Z", b"X") and int(fields[PGRP_FIELD]) == pgid:
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if marker in handle.read().split(b"\0"):
                        return True
            except OSError:
                continue
    return False


async def _stop_group(pgid, leader, timeout):
    """TERM and CONT to the group, KILL after TIMEOUT; says how it went."""
    try:
        os.killpg(pgid, signal.SIGTERM)
        os.killpg(pgid, signal.SIGCONT)  # a stopped process acts on TERM only once continued
    except ProcessLookupError:
        return "it exited by itself meanwhile"
    except OSError as error:
        return f"cannot signal process group {pgid}: {error.strerror.lower()}"
    if await _wait_gone(pgid, leader, timeout):
        return "stopped it with TERM"
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped it with TERM"  # the last one left just now
    except OSError as error:
        return f"cannot signal process group {pgid}: {error.strerror.lower()}"
    if await _wait_gone(pgid, None, KILL_GRACE):
        return f"killed it with KILL after {timeout:g} s"
    return f"process group {pgid} is still there after KILL"


async def _wait_gone(pgid, leader, seconds):
    """True once the leader (a pidfd, or None) has exited and the group has no
    members left, False if SECONDS pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if leader is not None:
        exited = loop.create_future()
        loop.add_reader(leader, lambda: exited.done() or exited.set_result(None))
        try:
            async with asyncio.timeout(seconds):
                await exited
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(leader)
    # The rest of the group are not our children and their pids are known only
    # by reading /proc (they may fork meanwhile), so no event says "the group is
    # empty": a short poll, bounded by the deadline, is the honest way.
    for _ in range(int(seconds / GROUP_POLL) + 2):
        if not _group_has_members(pgid):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(GROUP_POLL)
    return not _group_has_members(pgid)
