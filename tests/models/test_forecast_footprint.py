"""What keeps a thousand targets' models cheap: a shared window, vectorised intervals, lean fits.

Each mechanism must leave the forecasts as they were: the trimmed window forecasts like
the whole history, the vectorised quantiles equal `np.quantile`, and the lean estimation
paths return statsmodels' own parameters.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import pytest
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from autoscaler.forecasting.forecaster import recent_points
from models import AutoSelector, HoltWinters, LinearTrend, Naive, SeasonalNaive, Series, StlArima, build_forecaster
from models.gaps import fill_gaps
from models.holt_winters import EstimateOnly, classical_initial_state
from models.intervals import MIN_TAIL_ERRORS, relative_offsets
from models.residual import CALIBRATION_ORIGINS, ResidualModel
from models.stl_arima import stl_seasonal
from tests.models.synthetic import synthetic_series

DAILY = 288
MODELS: dict[str, Callable[[], ResidualModel]] = {
    "naive": Naive,
    "seasonal_naive": lambda: SeasonalNaive([DAILY, 7 * DAILY]),
    "linear_trend": lambda: LinearTrend(12),
    "holt_winters": lambda: HoltWinters(DAILY),
    "stl_arima": lambda: StlArima(DAILY),
}


@pytest.fixture(scope="module")
def fourteen_days() -> Series:
    """Two weeks of 5-minute load with a few gaps in the last days (none near the start)."""
    series = synthetic_series(days=14, step=300.0, seed=7)
    values = series.values.copy()
    for start, length in ((3000, 7), (3500, 30), (3900, 1), (4020, 4)):
        values[start : start + length] = np.nan
    return Series(start=series.start, step=series.step, values=values)


def _updates(series: Series) -> list[Series]:
    """The controller's view over 24 more buckets: a 14-day window sliding one bucket at a time."""
    extra = synthetic_series(days=15, step=300.0, seed=7).values[len(series) : len(series) + 24].copy()
    extra[5:9] = np.nan
    values = np.concatenate((series.values, extra))
    return [
        Series(start=series.start + k * series.step, step=series.step, values=values[k : len(series) + k])
        for k in range(1, 25)
    ]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_trimmed_window_forecasts_like_the_whole_history(
    fourteen_days: Series, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeping only the calibration window changes no forecast, through fit and sliding updates."""
    trimmed = MODELS[name]().fit(fourteen_days)
    with monkeypatch.context() as patch:
        patch.setattr(ResidualModel, "window_points", lambda _: 10**9)  # keeps every point
        whole = MODELS[name]().fit(fourteen_days)
        pairs = [(trimmed.predict(8, (0.5, 0.9)), whole.predict(8, (0.5, 0.9)))]
        for series in _updates(fourteen_days):
            whole.update(series)
            pairs.append((trimmed.update(series).predict(8, (0.5, 0.9)), whole.predict(8, (0.5, 0.9))))
    # A line's sums over a shorter window round differently (1e-9); everything else is exact.
    rtol = 1e-8 if name == "linear_trend" else 0.0
    for got, expected in pairs:
        assert got.start == expected.start
        np.testing.assert_allclose(got.mean, expected.mean, rtol=rtol, atol=0)
        np.testing.assert_allclose(got.quantile(0.9), expected.quantile(0.9), rtol=rtol, atol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_keeps_only_its_window_and_shares_the_series(name: str) -> None:
    """Without gaps the model's history is a view of the caller's series, cut to what forecasts read."""
    series = synthetic_series(days=14, step=300.0, seed=8)
    model = MODELS[name]().fit(series)
    grown = Series(start=series.start + 300.0, step=300.0, values=np.append(series.values[1:], 50.0))
    for current in (series, grown):
        if current is grown:
            model.update(grown)
        history = model.history
        assert history is not None
        assert model.filled_history is history, "no gap: the filled history is the raw one"
        assert np.shares_memory(history, current.values), "a view of the caller's series, not a copy"
        assert model.window_points() > CALIBRATION_ORIGINS, "the window holds every calibration origin"
        assert history.size == min(len(current), model.window_points())
        assert history[-1] == current.values[-1]


def _offsets_per_column(errors: np.ndarray, levels: tuple[float, ...], sigma1: float) -> dict[float, np.ndarray]:
    """The reference: one `np.quantile` call per column and level."""
    out = {q: np.zeros(errors.shape[1]) for q in levels}
    for h in range(errors.shape[1]):
        column = errors[:, h][np.isfinite(errors[:, h])]
        n = column.size
        for q in levels:
            if n * min(q, 1 - q) >= MIN_TAIL_ERRORS:
                adjusted = q * (n + 1) / n if q >= 0.5 else 1.0 - (1.0 - q) * (n + 1) / n
                out[q][h] = np.quantile(column, min(max(adjusted, 0.0), 1.0))
            elif n >= 2:
                out[q][h] = column.mean() + NormalDist().inv_cdf(q) * column.std(ddof=1)
            else:
                out[q][h] = NormalDist().inv_cdf(q) * sigma1 * math.sqrt(h + 1)
    return out


def test_vectorised_quantile_offsets_equal_np_quantile_per_column() -> None:
    """Every column and level, with gaps, ties, infinities and too few errors, bit for bit."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        rows, columns = int(rng.integers(0, 80)), int(rng.integers(1, 10))
        errors = rng.standard_t(3, size=(rows, columns)) * rng.uniform(0.01, 10.0)
        errors[rng.random((rows, columns)) < rng.uniform(0.0, 0.9)] = np.nan
        if rng.random() < 0.2:
            errors = np.round(errors, 1)
        if rng.random() < 0.1 and rows:
            errors[0, 0] = np.inf
        levels = tuple(sorted({0.5, float(rng.choice([0.05, 0.1, 0.9, 0.95, 0.99, 0.995]))}))
        got = relative_offsets(errors, levels, sigma1=lambda: 0.3)
        expected = _offsets_per_column(errors, levels, 0.3)
        for q in levels:
            np.testing.assert_array_equal(got[q], expected[q])


def test_holt_winters_estimates_statsmodels_parameters_without_its_results() -> None:
    """The estimate-only subclass returns exactly the smoothing parameters of a full statsmodels fit."""
    y = synthetic_series(days=5, step=300.0, seed=9).values
    level, trend, seasonal = classical_initial_state(y[: 3 * DAILY], DAILY)
    options = {
        "trend": "add",
        "damped_trend": True,
        "seasonal": "add",
        "seasonal_periods": DAILY,
        "initialization_method": "known",
        "initial_level": level,
        "initial_trend": trend,
        "initial_seasonal": seasonal,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lean = EstimateOnly(y, **options).fit(use_brute=False).params
        full = ExponentialSmoothing(y, **options).fit(use_brute=False).params
    for name in ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend"):
        assert lean[name] == full[name], name


def test_stl_arima_coefficients_equal_the_full_results() -> None:
    """Estimating with `return_params` gives the coefficients the results object would hold."""
    series = synthetic_series(days=4, step=300.0, seed=10)
    model = StlArima(DAILY).fit(series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adjusted = series.values - stl_seasonal(series.values, DAILY)
        params = ARIMA(adjusted, order=(1, 1, 1), trend="n").fit(method="innovations_mle").params
    assert model.ar.tolist() == [params[0]] and model.ma.tolist() == [params[1]]


def test_reselects_says_whether_the_next_fit_runs_a_backtest() -> None:
    """True before the first selection and a day later; False for the hourly refits in between."""
    series = synthetic_series(days=4, step=300.0, seed=6)
    day = 288
    auto = build_forecaster("auto", step_seconds=300.0, horizon=3)
    assert isinstance(auto, AutoSelector)
    head = Series(start=series.start, step=300.0, values=series.values[:-day])
    assert auto.reselects(head)
    auto.fit(head)
    hour_later = Series(start=series.start, step=300.0, values=series.values[: -day + 12])
    assert not auto.reselects(hour_later)
    scores = auto.scores
    auto.fit(hour_later)
    assert auto.scores is scores, "refitted the winner only, as announced"
    assert auto.reselects(series)
    auto.fit(series)
    assert auto.scores is not scores, "backtested again, as announced"


def test_fill_gaps_returns_a_gapless_input_itself() -> None:
    """No gap, no copy (models share their history); a gap gives a filled copy."""
    values = np.arange(10.0)
    assert fill_gaps(values) is values
    values[3] = np.nan
    filled = fill_gaps(values)
    assert filled is not values and np.isnan(values[3]) and filled[3] == 3.0


def test_series_shares_read_only_values_and_copies_writeable_ones() -> None:
    """A writeable array could change under the series, so it is copied; a frozen one is shared."""
    writeable = np.arange(5.0)
    series = Series(start=0.0, step=1.0, values=writeable)
    writeable[0] = 99.0
    assert series.values[0] == 0.0 and not series.values.flags.writeable
    assert series.tail(3).values.base is not None and np.shares_memory(series.tail(3).values, series.values)
    frozen = np.arange(5.0)
    frozen.flags.writeable = False
    assert Series(start=0.0, step=1.0, values=frozen).values is frozen


@pytest.mark.parametrize("gap_at_window_start", [False, True])
def test_the_trend_guard_on_the_recent_window_equals_it_on_the_whole_series(gap_at_window_start: bool) -> None:
    """The guard's line and its calibration read only the last few days, gaps filled alike."""
    series = synthetic_series(days=14, step=300.0, seed=11)
    values = series.values.copy()
    start = len(values) - (CALIBRATION_ORIGINS + 12)
    if gap_at_window_start:
        values[start - 5 : start + 5] = np.nan
    values[-30:-20] = np.nan
    series = Series(start=series.start, step=series.step, values=values)
    recent = recent_points(series, CALIBRATION_ORIGINS + 12)
    assert np.isfinite(recent.values[0]) and recent.end == series.end
    got = LinearTrend(12).fit(recent).predict(8, (0.9, 0.99))
    expected = LinearTrend(12).fit(series).predict(8, (0.9, 0.99))
    for q in (0.9, 0.99):
        np.testing.assert_allclose(got.quantile(q), expected.quantile(q), rtol=1e-9)
