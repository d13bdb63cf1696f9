"""Marks every test under tests/cluster/ as needing the real control plane.

The fixtures live in :mod:`tests.cluster.fixtures`, registered once for the whole suite by
``tests/conftest.py`` so every directory shares one control plane per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/cluster/ with ``pytest.mark.cluster``."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


