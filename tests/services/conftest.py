"""What every test of tests/services shares: no supervised program outlives its test."""

import pytest
from helpers import supervised, until


@pytest.fixture(autouse=True)
async def nothing_left_behind():
    """Every test here must leave no supervised process running."""
    before = set(supervised())
    yield
    assert await until(lambda: not set(supervised()) - before), set(supervised()) - before
