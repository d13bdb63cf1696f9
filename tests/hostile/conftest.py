"""Fixtures of the hostile-input tests: a fresh hostile server per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.server import HostileServer


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A started :class:`HostileServer` (404 to everything until a test scripts it)."""
    server = HostileServer().start()
    yield server
    server.stop()
