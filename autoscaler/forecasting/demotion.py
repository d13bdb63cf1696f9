"""Shadow scoring of a target's live forecasts, and demoting a model that keeps under-forecasting.

The automatic model selection picks a model on a backtest; live traffic can still prove it
wrong. After each forecast refresh the controller hands the target's forecaster and its
:class:`~autoscaler.forecasting.shadow.TargetShadow` to :func:`score_and_demote`: the
buckets completed since the last cycle are scored, and a selected model whose upper
quantile covers too little of the last day's load is dropped, so the next fit reselects
among the others. :func:`shadow_for` builds the shadow with the target's settings.

A part of its own so the demotion rule is tested on a fake forecaster, without a
controller; it logs nothing: what was demoted comes back as a :class:`Demotion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from autoscaler.forecasting.shadow import TargetShadow
from autoscaler.policy.schema import Target
from models.base import Prediction
from models.series import Series

#: Shadow scoring demotes the automatic selection's model when the coverage of its upper
#: quantile over the last day falls this far below the quantile (0.9 -> under 0.8) ...
DEMOTE_COVERAGE_TOLERANCE = 0.1
#: ... on at least this many scored points (each bucket is scored by every forecast
#: covering it, ~8 at the default horizon, so 96 points is about a dozen buckets, an hour).
DEMOTE_MIN_POINTS = 96


class Demotable(Protocol):
    """What scoring reads from a forecaster (a ``TargetForecaster``, or a fake)."""

    @property
    def series(self) -> Series | None:
        """The bucketed load so far (completed buckets)."""

    @property
    def prediction(self) -> Prediction | None:
        """The forecast in force."""

    def demote_selected(self, now: float) -> str | None:
        """Drop the automatic selection's current model; the one dropped, or ``None``."""


@dataclass(frozen=True)
class Demotion:
    """A model dropped for under-forecasting, with the score that condemned it."""

    #: The candidate the selection dropped.
    model: str
    #: The model name the forecast in force carried.
    served: str
    #: Coverage of its upper quantile over the scoring window.
    coverage: float
    #: Points that coverage was measured on.
    points: int


def shadow_for(target: Target, *, loop_seconds: float) -> TargetShadow:
    """A fresh shadow for ``target``: its quantile and resolution, a node cold start (and a loop) of lead.

    Under-forecast minutes count the forecast issued a node cold start and a loop before
    the bucket (when placeholders for it had to be asked for); the provisioning minutes
    count at most two loops between decisions, so a controller outage is not counted.
    """
    return TargetShadow(
        quantile=target.forecast.quantile,
        step=float(target.forecast.resolution_seconds),
        lead_seconds=target.cold_start.total_seconds + loop_seconds,
        max_gap_seconds=2 * loop_seconds,
    )


def score_and_demote(
    forecaster: Demotable,
    shadow: TargetShadow,
    *,
    now: float,
    automatic: bool,
    min_points: int = DEMOTE_MIN_POINTS,
    tolerance: float = DEMOTE_COVERAGE_TOLERANCE,
) -> Demotion | None:
    """Score the buckets completed since last cycle; demote a model that keeps under-forecasting.

    Only the automatic selection (``automatic``: the target's model is ``auto``) is
    judged, on at least ``min_points`` points, and condemned when its coverage is more
    than ``tolerance`` below the quantile. A condemned model's points are forgotten
    whether or not the forecaster could drop it, so it is judged afresh.

    Returns:
        What was demoted, or ``None``.
    """
    shadow.after_forecast(forecaster.series, forecaster.prediction, now=now)
    served = forecaster.prediction.model if forecaster.prediction is not None else None
    if not automatic or served is None:
        return None
    if not shadow.forecasts.under_forecasting(served, min_points=min_points, tolerance=tolerance):
        return None
    demoted = forecaster.demote_selected(now)
    demotion = None
    if demoted is not None:
        score = shadow.forecasts.scores()[served]
        demotion = Demotion(model=demoted, served=served, coverage=score.coverage, points=score.points)
    shadow.forecasts.forget(served)
    return demotion
