"""What every test of tests/services shares: no supervised program outlives its test."""

import pytest
from helpers import of_this_run, supervised, until


def ours():
    """Supervised processes this test run may have started (not a concurrent run's)."""
    return {pid for pid in supervised() if of_this_run(pid)}


@pytest.fixture(autouse=True)
async def nothing_left_behind():
    """Every test here must leave no supervised process running."""
    before = ours()
    yield
    assert await until(lambda: not ours() - before), ours() - before
