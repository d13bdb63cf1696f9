"""Fixtures for end-to-end runs: the real control plane and a real Prometheus together.

The control-plane fixtures come from :mod:`tests.cluster.fixtures` (registered suite-wide);
every test here is marked both ``cluster`` and ``prometheus``.
"""

from __future__ import annotations

import pytest

from tests.cluster.fixtures import wait_for

__all__ = ["wait_for"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every end-to-end test with both servers it needs."""
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.prometheus)
