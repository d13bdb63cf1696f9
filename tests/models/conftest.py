"""Shared fixtures of the forecaster tests: seeded synthetic load series."""

from __future__ import annotations

import pytest

from models import Series
from tests.models.synthetic import synthetic_series


@pytest.fixture(scope="session")
def ten_days() -> Series:
    """Ten days of 5-minute synthetic load with trend, daily season and noise."""
    return synthetic_series(days=10, step=300.0, seed=0)


@pytest.fixture(scope="session")
def three_days() -> Series:
    """Three days of 5-minute synthetic load."""
    return synthetic_series(days=3, step=300.0, seed=1)
