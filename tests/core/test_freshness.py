"""Staleness both ways: one rule for "may this sample be acted on", at its boundaries."""

from __future__ import annotations

import pytest

from autoscaler.core.freshness import FUTURE_SKEW_SECONDS, Freshness, freshness, usable

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0.0, Freshness.FRESH),
        (180.0, Freshness.FRESH),  # exactly staleAfter: still fresh (the bound is inclusive)
        (180.001, Freshness.STALE),
        (86400.0, Freshness.STALE),
        (-FUTURE_SKEW_SECONDS, Freshness.FRESH),  # exactly the skew allowance ahead
        (-FUTURE_SKEW_SECONDS - 0.001, Freshness.FUTURE),
        (-3600.0, Freshness.FUTURE),
        (-1e12, Freshness.FUTURE),
    ],
)
def test_freshness_boundaries(age: float, expected: Freshness) -> None:
    """Older than staleAfter is stale; ahead of the clock by more than the allowance is future-dated."""
    assert freshness(NOW - age, NOW, stale_after=180.0) is expected
    assert usable(NOW - age, NOW, stale_after=180.0) is (expected is Freshness.FRESH)


def test_unknown_sample_time_is_not_judged() -> None:
    """Without a sample time the rule has nothing to say: the signals themselves tell what is known."""
    assert freshness(None, NOW, stale_after=180.0) is Freshness.UNKNOWN
    assert usable(None, NOW, stale_after=180.0)


def test_custom_allowance() -> None:
    """The allowance is a parameter (callers pass their own slack)."""
    assert freshness(NOW + 10, NOW, stale_after=180.0, future_skew=5.0) is Freshness.FUTURE
    assert freshness(NOW + 10, NOW, stale_after=180.0, future_skew=15.0) is Freshness.FRESH
