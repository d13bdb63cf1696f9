"""Accuracy, calibration, gap handling and update behaviour of the concrete models."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from models import (
    Forecaster,
    HoltWinters,
    InsufficientHistory,
    LinearTrend,
    ModelFitError,
    Naive,
    SeasonalNaive,
    Series,
    StlArima,
    build_forecaster,
    rolling_origin_backtest,
)
from tests.models.synthetic import DAY, load_curve, synthetic_series

DAILY = 288
FACTORIES: dict[str, Callable[[], Forecaster]] = {
    "naive": Naive,
    "seasonal_naive": lambda: SeasonalNaive(DAILY),
    "linear_trend": lambda: LinearTrend(12),
    "holt_winters": lambda: HoltWinters(DAILY),
    "stl_arima": lambda: StlArima(DAILY),
    "auto": lambda: build_forecaster("auto", step_seconds=300.0, horizon=3),
}


def _backtest(series: Series, factory: Callable[[], Forecaster], days: float) -> dict[str, float]:
    """P90 pinball and coverage at horizon 3 over origins 3 points apart in the last days."""
    origins = round(days * DAY / 300.0 / 3)
    result = rolling_origin_backtest(series, factory, horizon=3, quantiles=(0.5, 0.9), n_origins=origins, stride=3)
    return {"pinball": result.pinball[0.9], "coverage": result.coverage[0.9]}


@pytest.mark.parametrize("name", ["holt_winters", "stl_arima"])
def test_seasonal_models_beat_seasonal_naive(ten_days: Series, name: str) -> None:
    """Holt-Winters and STL-ARIMA have a lower P90 pinball loss than seasonal-naive."""
    model = _backtest(ten_days, FACTORIES[name], days=2)
    baseline = _backtest(ten_days, FACTORIES["seasonal_naive"], days=2)
    assert model["pinball"] < 0.85 * baseline["pinball"]


@pytest.mark.parametrize("name", ["holt_winters", "seasonal_naive", "auto"])
def test_p90_coverage_on_held_out_data(ten_days: Series, name: str) -> None:
    """P90 forecasts cover between 82 % and 97 % of the next day's actual load."""
    coverage = _backtest(ten_days, FACTORIES[name], days=2)["coverage"]
    assert 0.82 <= coverage <= 0.97


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_gaps_never_forecast_as_zero_load(three_days: Series, name: str) -> None:
    """Gaps, including one at the end during high load, do not pull forecasts towards 0."""
    values = three_days.values.copy()
    end = len(values) - 66  # the series then ends in the afternoon peak
    values[400:430] = np.nan
    values[end - 6 : end] = np.nan
    series = Series(start=three_days.start, step=three_days.step, values=values[:end])
    truth = load_curve(series.end + 300.0 * np.arange(1, 4), trend_per_day=1.0)
    prediction = FACTORIES[name]().fit(series).predict(3, (0.5, 0.9))
    assert prediction.quantile(0.5).min() > 0.7 * truth.min()
    assert prediction.mean.min() > 0.7 * truth.min()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_all_nan_series_raises_insufficient_history(name: str) -> None:
    """A series without a single finite value cannot be fitted."""
    series = Series(start=0.0, step=300.0, values=np.full(1000, np.nan))
    with pytest.raises(InsufficientHistory):
        FACTORIES[name]().fit(series)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_prediction_invariants(three_days: Series, name: str) -> None:
    """Forecasts start one step after the series, are >= 0 and monotone in the level."""
    levels = (0.5, 0.8, 0.9, 0.95, 0.99, 0.995)
    prediction = FACTORIES[name]().fit(three_days).predict(5, levels)
    assert prediction.start == three_days.end + three_days.step
    assert prediction.mean.shape == (5,)
    stacked = np.array([prediction.quantiles[q] for q in levels])
    assert (stacked >= 0).all() and (np.diff(stacked, axis=0) >= 0).all()
    assert (prediction.quantile(0.9) > prediction.quantile(0.5)).all()
    assert prediction.model.endswith(name) or prediction.model.startswith("auto(")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_predict_and_update_before_fit_raise(name: str) -> None:
    """Using a model before fit raises ModelFitError."""
    model = FACTORIES[name]()
    with pytest.raises(ModelFitError, match="not fitted"):
        model.predict(3)
    with pytest.raises(ModelFitError, match="not fitted"):
        model.update(Series(start=0.0, step=300.0, values=np.ones(10)))


def test_insufficient_history_for_seasonal_models() -> None:
    """Seasonal models need two seasons, seasonal-naive a bit more than one."""
    short = synthetic_series(days=1.5, step=300.0)
    for model in (HoltWinters(DAILY), StlArima(DAILY)):
        with pytest.raises(InsufficientHistory, match="576"):
            model.fit(short)
    SeasonalNaive(DAILY).fit(short)
    with pytest.raises(InsufficientHistory):
        SeasonalNaive(DAILY).fit(short.tail(DAILY))


def _statsmodels_forecast(model: HoltWinters, values: np.ndarray, horizon: int) -> np.ndarray:
    """statsmodels' Holt-Winters forecast with the model's parameters and initial state."""
    reference = ExponentialSmoothing(
        values,
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=model.season,
        initialization_method="known",
        initial_level=model.initial_level,
        initial_trend=model.initial_trend,
        initial_seasonal=model.initial_seasonal,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = reference.fit(
            smoothing_level=model.alpha,
            smoothing_trend=model.beta,
            smoothing_seasonal=model.gamma,
            damping_trend=model.phi,
            optimized=False,
        )
    return np.asarray(fitted.forecast(horizon))


def test_holt_winters_recursion_matches_statsmodels(three_days: Series) -> None:
    """The numpy recursion reproduces statsmodels' smoothing with the same parameters."""
    model = HoltWinters(DAILY).fit(three_days)
    expected = _statsmodels_forecast(model, three_days.values, 4)
    np.testing.assert_allclose(model.predict(4).mean, expected, rtol=1e-9)


def test_update_revises_filled_gap(ten_days: Series) -> None:
    """When data arrives for a former trailing gap, update equals smoothing the real data."""
    values = ten_days.values.copy()
    values[-20:-8] = np.nan
    model = HoltWinters(DAILY).fit(Series(start=ten_days.start, step=ten_days.step, values=values[:-8]))
    model.update(ten_days)
    expected = _statsmodels_forecast(model, ten_days.values, 3)
    np.testing.assert_allclose(model.predict(3).mean, expected, rtol=1e-9)


@pytest.mark.parametrize("name", ["holt_winters", "stl_arima", "seasonal_naive", "naive"])
def test_update_matches_refit(ten_days: Series, name: str) -> None:
    """fit(N) + update(N+k) keeps the parameters and forecasts close to fit(N+k)."""
    head = Series(start=ten_days.start, step=ten_days.step, values=ten_days.values[:-12])
    updated = FACTORIES[name]().fit(head)
    params = copy.deepcopy({k: v for k, v in vars(updated).items() if not k.startswith("_")})
    updated.update(ten_days)
    assert {k: v for k, v in vars(updated).items() if not k.startswith("_")}.keys() == params.keys()
    for key, value in params.items():
        np.testing.assert_array_equal(getattr(updated, key), value)
    refit = FACTORIES[name]().fit(ten_days)
    a, b = updated.predict(3), refit.predict(3)
    assert a.start == b.start
    np.testing.assert_allclose(a.mean, b.mean, rtol=0.05)
    np.testing.assert_allclose(a.quantile(0.9), b.quantile(0.9), rtol=0.05)


@pytest.mark.parametrize("name", ["holt_winters", "stl_arima"])
def test_update_is_path_independent(ten_days: Series, name: str) -> None:
    """Updating point by point, in one go, or over a sliding window gives one forecast."""
    head = Series(start=ten_days.start, step=ten_days.step, values=ten_days.values[:-6])
    stepwise = FACTORIES[name]().fit(head)
    at_once = copy.deepcopy(stepwise)
    sliding = copy.deepcopy(stepwise)
    for k in range(5, -1, -1):
        stepwise.update(Series(start=head.start, step=head.step, values=ten_days.values[: -k or None]))
    at_once.update(ten_days)
    sliding.update(ten_days.tail(2016))
    expected = at_once.predict(3, (0.5, 0.9))
    for other in (stepwise, sliding):
        got = other.predict(3, (0.5, 0.9))
        np.testing.assert_allclose(got.mean, expected.mean, rtol=1e-9)
        np.testing.assert_allclose(got.quantile(0.9), expected.quantile(0.9), rtol=1e-9)


def test_seasonal_naive_prefers_weekly_with_two_weeks() -> None:
    """Seasonal-naive switches to the weekly season once two weeks are known."""
    model = SeasonalNaive([4, 28])
    model.fit(Series(start=0.0, step=1.0, values=np.arange(40, dtype=float)))
    assert model.season == 4
    model.fit(Series(start=0.0, step=1.0, values=np.arange(56, dtype=float)))
    assert model.season == 28
