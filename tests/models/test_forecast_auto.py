"""Tests of automatic model selection, warm start and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from models import (
    MODEL_TYPES,
    AutoSelector,
    Forecaster,
    InsufficientHistory,
    LinearTrend,
    Naive,
    Series,
    build_forecaster,
)
from tests.models.synthetic import synthetic_series

SEASONAL = {"seasonal_naive", "holt_winters", "stl_arima"}
#: Models whose forecast reads the daily season (direct does once a day is known).
USES_SEASON = SEASONAL | {"direct"}


def _auto(step: float = 300.0) -> Forecaster:
    """The default automatic selector for 5-minute data and a 3-step horizon."""
    return build_forecaster("auto", step_seconds=step, horizon=3, quantile=0.9)


def test_warm_start_with_one_hour_is_safe() -> None:
    """With 12 points the selector uses a non-seasonal model and P90 >= the recent max."""
    series = synthetic_series(days=3, step=300.0, seed=4).tail(12)
    auto = _auto().fit(series)
    assert isinstance(auto, AutoSelector)
    assert auto.selected in {"naive", "linear_trend"}
    assert set(auto.scores) <= {"naive", "linear_trend"}
    prediction = auto.predict(3, (0.5, 0.9, 0.99))
    recent_max = float(np.max(series.values))
    assert (prediction.quantile(0.9) >= recent_max).all()
    assert (prediction.quantile(0.99) >= recent_max).all()
    assert prediction.model == f"auto({auto.selected})"


def test_warm_start_with_a_single_point() -> None:
    """One point is enough for a (naive) forecast."""
    series = Series(start=0.0, step=300.0, values=np.array([np.nan, 7.0]))
    auto = _auto().fit(series)
    assert isinstance(auto, AutoSelector)
    assert auto.selected == "naive" and auto.scores == {}
    assert (auto.predict(3).quantile(0.9) >= 7.0).all()


def test_upgrades_to_a_seasonal_model_with_three_days() -> None:
    """Given 3.5 days the selector backtests seasonal models and picks one using the daily season."""
    series = synthetic_series(days=3.5, step=300.0, seed=5)
    auto = _auto().fit(series)
    assert isinstance(auto, AutoSelector)
    assert set(auto.scores) >= SEASONAL
    assert auto.selected in USES_SEASON
    assert auto.selected is not None and auto.scores[auto.selected] == min(auto.scores.values())


def test_update_keeps_winner_and_advances_forecast(three_days: Series) -> None:
    """update conditions the current winner on new points without re-selecting."""
    head = Series(start=three_days.start, step=300.0, values=three_days.values[:-6])
    auto = _auto().fit(head)
    assert isinstance(auto, AutoSelector)
    chosen, scores = auto.selected, dict(auto.scores)
    auto.update(three_days)
    assert auto.selected == chosen and auto.scores == scores
    assert auto.predict(3).start == three_days.end + 300.0


def test_selector_rejects_bad_candidates() -> None:
    """Duplicate or missing candidates are a configuration error."""
    with pytest.raises(ValueError, match="distinct"):
        AutoSelector([Naive, Naive], horizon=3)
    with pytest.raises(ValueError, match="distinct"):
        AutoSelector([], horizon=3)
    with pytest.raises(ValueError, match="horizon"):
        AutoSelector([Naive, lambda: LinearTrend(6)], horizon=0)


def test_registry_unknown_type_names_it() -> None:
    """An unknown model type raises ValueError that names the type."""
    with pytest.raises(ValueError, match="prophet"):
        build_forecaster("prophet", step_seconds=300.0, horizon=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_seconds": 0.0}, "step_seconds"),
        ({"step_seconds": 420.0}, "whole number"),
        ({"seasons_seconds": (300.0,)}, "shorter than 2"),
        ({"horizon": 0}, "horizon"),
        ({"quantile": 1.0}, "outside"),
        ({"candidates": ["naive"]}, "only apply"),
    ],
)
def test_registry_rejects_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    """Invalid grid, horizon, quantile or candidates raise a clear ValueError."""
    arguments: dict[str, object] = {"step_seconds": 300.0, "horizon": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        build_forecaster("holt_winters", **arguments)  # type: ignore[arg-type]


def test_registry_auto_candidates() -> None:
    """auto accepts a subset of types and rejects unknown or duplicate ones."""
    auto = build_forecaster("auto", step_seconds=300.0, horizon=3, candidates=["naive"])
    assert auto.min_history() == 1
    for bad in (["auto"], ["naive", "naive"], ["arima"], []):
        with pytest.raises(ValueError, match="candidates"):
            build_forecaster("auto", step_seconds=300.0, horizon=3, candidates=bad)
    with pytest.raises(ValueError, match="season"):
        build_forecaster("holt_winters", step_seconds=300.0, horizon=3, seasons_seconds=())


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_every_type_builds_and_fits_three_days(three_days: Series, model_type: str) -> None:
    """Every registered type builds, fits 3 days of 5-minute data and predicts."""
    model = build_forecaster(model_type, step_seconds=300.0, horizon=3)
    assert model.name == model_type
    prediction = model.fit(three_days).predict(3, (0.5, 0.9))
    assert prediction.mean.shape == (3,) and np.isfinite(prediction.quantile(0.9)).all()


@pytest.mark.parametrize("step", [60.0, 600.0])
def test_other_resolutions(step: float) -> None:
    """The default seasons work at 1-minute and 10-minute resolution."""
    series = synthetic_series(days=2.2, step=step, seed=6)
    for model_type in ("holt_winters", "seasonal_naive", "linear_trend"):
        model = build_forecaster(model_type, step_seconds=step, horizon=5).fit(series)
        assert (model.predict(5).mean > 0).all()


def test_auto_with_too_little_history_raises() -> None:
    """An all-NaN series gives InsufficientHistory from the selector too."""
    with pytest.raises(InsufficientHistory):
        _auto().fit(Series(start=0.0, step=300.0, values=np.full(20, np.nan)))


def test_refit_within_a_day_keeps_the_choice_without_a_new_backtest() -> None:
    """A fit one hour after the selection refits the winner only; a day later it reselects."""
    series = synthetic_series(days=4, step=300.0, seed=6)
    head = Series(start=series.start, step=300.0, values=series.values[: -12 * 24])  # one day early
    auto = _auto().fit(head)
    assert isinstance(auto, AutoSelector)
    first_scores = auto.scores
    one_hour_later = Series(start=head.start, step=300.0, values=series.values[: len(head) + 12])
    auto.fit(one_hour_later)
    assert auto.scores is first_scores, "no new backtest within the reselection interval"
    assert auto.predict(3).start == one_hour_later.end + 300.0, "the winner was refitted on the new data"
    auto.fit(series)
    assert auto.scores is not first_scores, "a day of new history triggers a reselection"


def test_new_eligible_candidates_trigger_a_reselection_at_once() -> None:
    """A warm-starting target reselects as soon as seasonal models become eligible."""
    series = synthetic_series(days=3.5, step=300.0, seed=5)
    auto = _auto().fit(series.tail(24))
    assert isinstance(auto, AutoSelector)
    assert auto.selected not in SEASONAL
    auto.fit(series)
    assert auto.selected in USES_SEASON and auto.selected != "naive"
