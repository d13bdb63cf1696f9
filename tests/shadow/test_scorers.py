"""Shadow scoring bookkeeping, on hand-computed cases (pure: no clock, no IO)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.forecasting.shadow import ForecastScorer, ProvisioningScorer
from models.base import Prediction
from models.evaluation import pinball_loss

STEP = 300.0


def prediction(start: float, upper: list[float], median: list[float], model: str = "m") -> Prediction:
    return Prediction(
        start=start,
        step=STEP,
        mean=np.array(median),
        quantiles={0.5: np.array(median), 0.9: np.array(upper)},
        model=model,
    )


def test_pinball_costs_under_forecasts_q_and_over_forecasts_one_minus_q() -> None:
    assert pinball_loss(12.0, 10.0, 0.9) == pytest.approx(1.8)
    assert pinball_loss(8.0, 10.0, 0.9) == pytest.approx(0.2)
    assert pinball_loss(10.0, 10.0, 0.9) == 0.0


def test_a_point_is_scored_when_its_bucket_completes() -> None:
    scorer = ForecastScorer(quantile=0.9, step=STEP, lead_seconds=600.0)
    scorer.record(prediction(0.0, [10, 10, 10], [8, 8, 8]), issued_at=-10.0, model="hw")
    (point,) = scorer.score(0.0, 12.0)
    assert (point.upper, point.median, point.covered) == (10.0, 8.0, False)
    assert point.pinball_upper == pytest.approx(1.8)
    assert point.pinball_median == pytest.approx(2.0)
    assert point.lead_seconds == 10.0
    (point,) = scorer.score(300.0, 9.0)
    assert point.covered
    score = scorer.scores()["hw"]
    assert score.points == 2
    assert score.coverage == 0.5
    assert score.pinball_upper == pytest.approx((1.8 + 0.1) / 2)
    assert scorer.total_points == {"hw": 2}


def test_under_forecast_minutes_use_the_forecast_issued_a_cold_start_ahead() -> None:
    scorer = ForecastScorer(quantile=0.9, step=STEP, lead_seconds=900.0)
    # Issued 1200 s before bucket 900's end: low upper quantile (the one that drove capacity).
    scorer.record(prediction(0.0, [5, 5, 5, 5], [4, 4, 4, 4], model="early"), issued_at=0.0, model="early")
    # Issued later, closer to the bucket: high enough, but too late for a node.
    scorer.record(prediction(600.0, [50, 50], [40, 40], model="late"), issued_at=600.0, model="late")
    points = scorer.score(900.0, 20.0)
    assert {p.model for p in points} == {"early", "late"}
    scores = scorer.scores()
    assert scores["early"].under_forecast_minutes == 5.0
    assert scores["late"].under_forecast_minutes == 0.0
    assert scorer.total_under_forecast_minutes == {"early": 5.0, "late": 0.0}


def test_a_gap_scores_nothing_and_finished_forecasts_are_forgotten() -> None:
    scorer = ForecastScorer(quantile=0.9, step=STEP, lead_seconds=0.0)
    scorer.record(prediction(0.0, [10, 10], [8, 8]), issued_at=0.0, model="m")
    assert scorer.score(0.0, math.nan) == []
    assert scorer.score(300.0, None) == []
    assert scorer.score(600.0, 1.0) == []  # past the forecast's end
    assert scorer.scores() == {}


def test_a_refit_within_the_bucket_replaces_the_forecast_with_the_same_start() -> None:
    scorer = ForecastScorer(quantile=0.9, step=STEP, lead_seconds=0.0)
    scorer.record(prediction(0.0, [1], [1]), issued_at=0.0, model="old")
    scorer.record(prediction(0.0, [10], [8]), issued_at=30.0, model="new")
    (point,) = scorer.score(0.0, 9.0)
    assert point.model == "new"


def test_scores_leave_the_rolling_window() -> None:
    scorer = ForecastScorer(quantile=0.9, step=STEP, lead_seconds=0.0, window_seconds=600.0)
    scorer.record(prediction(0.0, [1] * 10, [1] * 10), issued_at=0.0, model="m")
    for i in range(5):
        scorer.score(i * STEP, 2.0)
    assert scorer.scores()["m"].points == 3  # buckets 600, 900, 1200 are within 600 s of 1200
    assert scorer.total_points["m"] == 5


def test_under_forecasting_needs_enough_points_and_low_coverage() -> None:
    scorer = ForecastScorer(quantile=0.9, step=STEP, lead_seconds=0.0)
    scorer.record(prediction(0.0, [1] * 30, [1] * 30), issued_at=0.0, model="m")
    for i in range(10):
        scorer.score(i * STEP, 5.0)
    assert not scorer.under_forecasting("m", min_points=12, tolerance=0.1)
    for i in range(10, 12):
        scorer.score(i * STEP, 5.0)
    assert scorer.under_forecasting("m", min_points=12, tolerance=0.1)
    assert not scorer.under_forecasting("other", min_points=1, tolerance=0.1)


def test_record_refuses_a_prediction_without_the_policy_quantile() -> None:
    scorer = ForecastScorer(quantile=0.95, step=STEP, lead_seconds=0.0)
    with pytest.raises(ValueError, match=r"0\.95"):
        scorer.record(prediction(0.0, [1], [1]), issued_at=0.0, model="m")


def test_provisioning_compares_the_setup_in_place_with_decisions_a_pod_start_earlier() -> None:
    scorer = ProvisioningScorer(max_gap_seconds=90.0)
    kw = {"per_replica_capacity": 100.0, "pod_lead_seconds": 60.0}
    # t=0: we decide 3 replicas; nothing is counted before a decision 60 s old exists.
    scorer.observe(now=0.0, load=150.0, latency_breached=None, ready_replicas=1, decided_replicas=3, **kw)
    scorer.observe(now=30.0, load=150.0, latency_breached=None, ready_replicas=1, decided_replicas=3, **kw)
    assert scorer.totals().observed_minutes == 0.0
    # t=60: our decision from t=0 (3 replicas) would be ready; the HPA has 1 ready -> under.
    scorer.observe(now=60.0, load=250.0, latency_breached=None, ready_replicas=1, decided_replicas=3, **kw)
    totals = scorer.totals()
    assert totals.observed_minutes == 0.5
    assert totals.current_under_minutes == 0.5
    assert totals.predictive_under_minutes == 0.0
    # A latency reading decides for the current setup; our 3 replicas cannot carry 400/s.
    scorer.observe(now=90.0, load=400.0, latency_breached=False, ready_replicas=1, decided_replicas=5, **kw)
    totals = scorer.totals()
    assert totals.current_under_minutes == 0.5
    assert totals.predictive_under_minutes == 0.5
    # Unknown load counts for neither; a long gap is capped.
    scorer.observe(now=120.0, load=None, latency_breached=True, ready_replicas=1, decided_replicas=5, **kw)
    scorer.observe(now=600.0, load=600.0, latency_breached=True, ready_replicas=1, decided_replicas=5, **kw)
    totals = scorer.totals()
    assert totals.observed_minutes == 0.5 + 0.5 + 1.5
    assert totals.current_under_minutes == 0.5 + 1.5
    assert totals.predictive_under_minutes == 0.5 + 1.5  # 5 replicas decided at t=120 < 600/s


def test_provisioning_survives_a_backward_clock_jump() -> None:
    scorer = ProvisioningScorer(max_gap_seconds=90.0)
    kw = {"per_replica_capacity": 100.0, "pod_lead_seconds": 0.0, "latency_breached": None, "ready_replicas": 1}
    scorer.observe(now=1000.0, load=50.0, decided_replicas=1, **kw)
    scorer.observe(now=400.0, load=50.0, decided_replicas=1, **kw)
    scorer.observe(now=430.0, load=150.0, decided_replicas=2, **kw)
    totals = scorer.totals()
    assert totals.observed_minutes == 0.5
    assert totals.current_under_minutes == 0.5
    assert totals.predictive_under_minutes == 0.0


def test_target_shadow_scores_completed_buckets_against_earlier_forecasts_only() -> None:
    from autoscaler.forecasting.shadow import TargetShadow
    from models.series import Series

    shadow = TargetShadow(quantile=0.9, step=STEP, lead_seconds=0.0, max_gap_seconds=60.0)
    seeded = Series(start=0.0, step=STEP, values=np.array([5.0, 6.0]))
    first = prediction(600.0, [10, 10, 10], [8, 8, 8])
    assert shadow.after_forecast(seeded, first, now=610.0) == []  # seeded history is not scored
    # Two buckets complete at once (600 and 900), then a new forecast is recorded.
    grown = Series(start=0.0, step=STEP, values=np.array([5.0, 6.0, 9.0, 11.0]))
    second = prediction(1200.0, [20, 20], [15, 15])
    points = shadow.after_forecast(grown, second, now=1210.0)
    assert [(p.bucket_start, p.covered) for p in points] == [(600.0, True), (900.0, False)]
    # The same prediction object is not recorded twice; the next bucket is scored by both.
    grown = Series(start=0.0, step=STEP, values=np.array([5.0, 6.0, 9.0, 11.0, 12.0]))
    points = shadow.after_forecast(grown, second, now=1510.0)
    assert sorted(p.upper for p in points) == [10.0, 20.0]
    assert shadow.forecasts.scores()["m"].points == 4
