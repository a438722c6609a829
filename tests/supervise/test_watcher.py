"""The 3.11 child watcher: a pidfd per child in the loop that spawned it, no threads."""

import asyncio
import subprocess
import sys
import threading

import pytest

from smanager.supervise import watcher

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12),
                                reason="3.12+ watches children with pidfds already")


async def exit_status(code):
    child = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await asyncio.wait_for(child.wait(), 10)


async def test_children_exit_statuses_arrive_without_a_thread_per_child():
    watcher.install()
    threads = threading.active_count()
    statuses = await asyncio.gather(*(exit_status(code) for code in range(20)))
    assert statuses == list(range(20))
    assert threading.active_count() == threads
    assert isinstance(asyncio.get_child_watcher(), watcher.RunningLoopPidfdWatcher)


def test_a_loop_in_another_thread_gets_its_own_childrens_statuses():
    watcher.install()
    results = []
    worker = threading.Thread(target=lambda: results.append(asyncio.run(exit_status(7))))
    worker.start()
    worker.join(10)
    assert results == [7]


async def test_children_spawned_without_asyncio_are_left_to_their_spawner():
    watcher.install()
    plain = subprocess.Popen(["sh", "-c", "exit 5"])
    assert await exit_status(4) == 4
    assert plain.wait(10) == 5  # nobody else reaped it
