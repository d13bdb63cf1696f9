"""``score_and_demote`` on a fake forecaster and a real (pure) shadow: who is judged, when, and what is kept."""

from __future__ import annotations

import dataclasses

import numpy as np

from autoscaler.forecasting.demotion import (
    DEMOTE_COVERAGE_TOLERANCE,
    DEMOTE_MIN_POINTS,
    Demotion,
    score_and_demote,
    shadow_for,
)
from autoscaler.forecasting.shadow import TargetShadow
from autoscaler.policy.schema import Target
from models.base import Prediction
from models.series import Series

STEP = 300.0


@dataclasses.dataclass
class Fake:
    """A forecaster holding a series and a forecast; ``demote_selected`` drops ``selected`` if set."""

    series: Series | None = None
    prediction: Prediction | None = None
    selected: str | None = "hw"
    demoted_at: list[float] = dataclasses.field(default_factory=list)

    def demote_selected(self, now: float) -> str | None:
        self.demoted_at.append(now)
        return self.selected


def forecast(upper: float) -> Prediction:
    """Five buckets from 300 s, the upper (0.9) quantile at ``upper``, served as 'auto'."""
    return Prediction(
        start=STEP,
        step=STEP,
        mean=np.full(5, 1.0),
        quantiles={0.5: np.full(5, 1.0), 0.9: np.full(5, upper)},
        model="auto",
    )


def series(*values: float) -> Series:
    return Series(start=0.0, step=STEP, values=np.array(values))


def shadow() -> TargetShadow:
    return TargetShadow(quantile=0.9, step=STEP, lead_seconds=0.0, max_gap_seconds=60.0)


def judged(fc: Fake, sh: TargetShadow, *, automatic: bool = True, actual: float = 20.0) -> Demotion | None:
    """Record the forecast on one seeded bucket, then score three completed buckets of ``actual`` load."""
    fc.series = series(5.0)
    assert score_and_demote(fc, sh, now=310.0, automatic=automatic, min_points=3) is None
    fc.series = series(5.0, actual, actual, actual)
    return score_and_demote(fc, sh, now=1210.0, automatic=automatic, min_points=3)


def test_the_defaults() -> None:
    """A 0.9 quantile is condemned under 0.8 coverage, on about an hour of points."""
    assert (DEMOTE_COVERAGE_TOLERANCE, DEMOTE_MIN_POINTS) == (0.1, 96)


def test_a_selection_that_keeps_under_forecasting_is_demoted_and_judged_afresh() -> None:
    """Three uncovered points: the selection drops its model and the served model's points are forgotten."""
    fc, sh = Fake(prediction=forecast(upper=10.0)), shadow()
    assert judged(fc, sh) == Demotion(model="hw", served="auto", coverage=0.0, points=3)
    assert fc.demoted_at == [1210.0]
    assert "auto" not in sh.forecasts.scores()


def test_points_are_forgotten_even_when_the_forecaster_cannot_demote() -> None:
    """Not an automatic selection after all (nothing dropped): no demotion, but the verdict is not repeated."""
    fc, sh = Fake(prediction=forecast(upper=10.0), selected=None), shadow()
    assert judged(fc, sh) is None
    assert fc.demoted_at == [1210.0]
    assert "auto" not in sh.forecasts.scores()


def test_a_configured_model_is_scored_but_never_demoted() -> None:
    fc, sh = Fake(prediction=forecast(upper=10.0)), shadow()
    assert judged(fc, sh, automatic=False) is None
    assert fc.demoted_at == []
    assert sh.forecasts.scores()["auto"].points == 3


def test_a_covering_forecast_stays() -> None:
    fc, sh = Fake(prediction=forecast(upper=30.0)), shadow()
    assert judged(fc, sh) is None
    assert fc.demoted_at == []
    assert sh.forecasts.scores()["auto"].coverage == 1.0


def test_too_few_points_are_not_judged() -> None:
    fc, sh = Fake(series=series(5.0), prediction=forecast(upper=10.0)), shadow()
    score_and_demote(fc, sh, now=310.0, automatic=True)
    fc.series = series(5.0, 20.0, 20.0, 20.0)
    assert score_and_demote(fc, sh, now=1210.0, automatic=True) is None  # 3 points of the default 96
    assert fc.demoted_at == []


def test_without_a_forecast_nothing_is_judged() -> None:
    fc, sh = Fake(series=series(5.0, 6.0)), shadow()
    assert score_and_demote(fc, sh, now=610.0, automatic=True, min_points=0) is None
    assert fc.demoted_at == []


def test_shadow_for_takes_the_targets_settings() -> None:
    """The policy quantile and resolution; a node cold start and a loop of lead; gaps over two loops."""
    target = Target(namespace="llm", deployment="d")
    sh = shadow_for(target, loop_seconds=30.0)
    assert sh.forecasts.quantile == target.forecast.quantile
    assert sh.forecasts.step == float(target.forecast.resolution_seconds)
    assert sh.forecasts.lead_seconds == target.cold_start.total_seconds + 30.0
    assert sh.provisioning.max_gap_seconds == 60.0
