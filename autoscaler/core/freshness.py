"""Whether a target's newest sample may be acted on: staleness both ways. Pure.

Why: a sample older than ``scaling.staleAfterSeconds`` says nothing about the present, and
neither does one dated *after* the controller's clock. The second comes from clock skew
between Prometheus (or an exporter that sets its own timestamps) and the controller, or from
a bad exporter; testing only ``now - newest > staleAfter`` lets such a sample pass with a
negative age, and a load of 0 read from it would scale a busy service down. A small allowance
(:data:`FUTURE_SKEW_SECONDS`) absorbs ordinary NTP drift and a scrape landing just after the
controller read its clock. ``decide``, the controller's learning and the Prometheus source's
per-target split all ask this one function, so the rule cannot differ between them.
"""

from __future__ import annotations

from enum import StrEnum

#: Seconds a sample may be dated after the controller's clock and still count as fresh.
FUTURE_SKEW_SECONDS = 60.0


class Freshness(StrEnum):
    """How a target's newest sample time relates to the controller's clock."""

    #: No sample time is known (nothing to judge; the signals themselves say what is known).
    UNKNOWN = "unknown"
    FRESH = "fresh"
    #: Older than ``staleAfterSeconds``.
    STALE = "stale"
    #: Dated more than :data:`FUTURE_SKEW_SECONDS` after the controller's clock.
    FUTURE = "future"


def freshness(
    newest: float | None, now: float, *, stale_after: float, future_skew: float = FUTURE_SKEW_SECONDS
) -> Freshness:
    """Classify the newest sample time of a target. Pure.

    Args:
        newest: Unix time of the target's newest sample, ``None`` if unknown.
        now: The controller's clock.
        stale_after: Seconds after which a sample is stale (``scaling.staleAfterSeconds``,
            plus any slack the caller allows).
        future_skew: Seconds a sample may lie ahead of ``now``.

    Returns:
        The classification.
    """
    if newest is None:
        return Freshness.UNKNOWN
    age = now - newest
    if age < -future_skew:
        return Freshness.FUTURE
    if age > stale_after:
        return Freshness.STALE
    return Freshness.FRESH


def usable(newest: float | None, now: float, *, stale_after: float) -> bool:
    """Whether signals with this newest sample time may be used (neither stale nor future-dated). Pure."""
    return freshness(newest, now, stale_after=stale_after) in (Freshness.UNKNOWN, Freshness.FRESH)
