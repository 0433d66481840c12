"""Shared unit-test fixtures."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock


@pytest.fixture
def clock() -> Clock:
    """A fake reactor clock, well past the epoch so epoch-job times are realistic."""
    c = Clock()
    c.advance(1_000_000)
    return c
