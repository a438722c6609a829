"""The per-catalog memo of lines already parsed and resolved: it changes no reply,
keeps no stale service or time limit, and is bounded (the core, no sockets)."""

from helpers import FIXTURE_SERVICES, REV, SEP, rev_of, run_line, started_manager

from smanager.auth.peer import Peer
from smanager.config import bundled_services_dir
from smanager.core.catalog import REMEMBERED_LENGTH, REMEMBERED_LINES, Catalog
from smanager.core.lifecycle import stop_service
from smanager.wire.protocol import render_reply

MEMO_LINES = [
    b"testsvc add 1 2", b"testsvc add 1 2\r", b"  testsvc   add 1 2  ", b"TESTSVC ADD 1 2",
    b"testsvc add a=3", b"testsvc add 1 b=2", b"testsvc add x", b"testsvc add", b"testsvc add 1 2 3",
    b"rev say 'two  spaces' x", b"rev say", b"rev mark", b"rev ping", b"rev firstfail",
    b"systemstatus echo a=b c", b"hostname", b"testsvc hostname", b"rev", b"rev help", b"help rev",
    b"help -s", b"nosuch", b"rev nosuch", b"'unbalanced", b"\xc3\x28", b"", b"   ",
    b"testsvc whoami", b"testsvc data", b"testsvc dashes",
]


async def outcome(manager, raw, peer):
    """A line's reply as the wire carries it (a stream is not expected here)."""
    result = await run_line(manager, raw, peer)
    if result is None:
        return None
    assert result.stream is None
    return render_reply(result)


async def test_the_memo_changes_no_reply():
    """Every line three times through the memo, and three times with the memo emptied."""
    async with started_manager(bundled_services_dir(), FIXTURE_SERVICES, REV) as manager:
        peer = Peer("test:1")
        with_memo = [await outcome(manager, raw, peer) for raw in MEMO_LINES * 3]
        remembered = dict(manager.catalog.calls)
        rev_of(manager).marks = 0
        peer = Peer("test:1")
        without = []
        for raw in MEMO_LINES * 3:
            manager.catalog.calls.clear()
            without.append(await outcome(manager, raw, peer))
        assert with_memo == without
        # Only service lines that need no session are remembered: never help, built-ins,
        # errors, or a service that tracks its clients (testsvc has client_disconnected).
        assert set(remembered) == {b"rev say 'two  spaces' x", b"rev say", b"rev mark",
                                   b"rev ping", b"rev firstfail", b"systemstatus echo a=b c",
                                   b"hostname"}


async def test_a_remembered_call_of_a_stopped_service_is_refused_like_a_fresh_one():
    async with started_manager(REV) as manager:
        peer = Peer("test:1")
        assert await outcome(manager, b"rev ping", peer) == ("pong\n" + SEP).encode()
        assert b"rev ping" in manager.catalog.calls
        await stop_service(rev_of(manager), timeout=1.0)  # the catalog still lists it
        remembered = await outcome(manager, b"rev ping", peer)
        manager.catalog.calls.clear()
        assert remembered == await outcome(manager, b"rev ping", peer) == (
            "ERROR: rev is stopped (restarting?); try again\n" + SEP).encode()


async def test_a_restart_starts_a_fresh_memo():
    async with started_manager(REV) as manager:
        peer = Peer("test:1")
        await outcome(manager, b"rev mark", peer)
        old = rev_of(manager)
        assert await manager.restart("rev") == "restarted: rev"
        assert manager.catalog.calls == {}
        assert await outcome(manager, b"rev mark", peer) == ("mark 1\n" + SEP).encode()
        assert manager.catalog.calls[b"rev mark"].instance is rev_of(manager) is not old


async def test_the_memo_does_not_freeze_a_services_time_limit():
    async with started_manager(REV) as manager:
        peer = Peer("test:1")
        assert await outcome(manager, b"rev slow 0.2", peer) == ("slow done\n" + SEP).encode()
        assert await outcome(manager, b"rev limit 0.05", peer) == ("limit 0.05\n" + SEP).encode()
        assert await outcome(manager, b"rev slow 0.2", peer) == (
            "ERROR: rev slow timed out after 0.05 s\n" + SEP).encode()


def test_the_memo_is_bounded():
    catalog = Catalog([], {})
    for i in range(REMEMBERED_LINES + 100):
        catalog.remember(b"line %d" % i, object())
    catalog.remember(b"x" * (REMEMBERED_LENGTH + 1), object())
    assert len(catalog.calls) == REMEMBERED_LINES
