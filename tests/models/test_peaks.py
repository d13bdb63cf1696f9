"""Window-peak quantiles (models.peaks): calibrated where it matters, cheap, and priced by the history."""

from __future__ import annotations

import numpy as np
import pytest

from models.peaks import (
    MIN_REGRESSION_WINDOWS,
    MIN_WINDOWS,
    PeakEconomics,
    PeakHistory,
    PeakModel,
    quantile_regression,
)

DAY = 288  # 5-minute buckets


def bursty(days: float, *, seed: int, burst_rate: float = 0.05, level: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Bucket means and peaks of a daily load with short bursts (peaks far above the mean)."""
    rng = np.random.default_rng(seed)
    n = int(days * DAY)
    t = np.arange(n)
    means = level * (1.2 + np.sin(2 * np.pi * t / DAY)) * rng.lognormal(0, 0.05, n)
    bursts = rng.random(n) < burst_rate
    peaks = means * rng.lognormal(0.2, 0.1, n) + bursts * rng.exponential(4 * level, n)
    return means, np.maximum(peaks, means)


def window_peaks(peaks: np.ndarray, origin: int, horizon: int) -> np.ndarray:
    """The highest peak from bucket origin + 1 to origin + k + 1, per k."""
    return np.maximum.accumulate(peaks[origin + 1 : origin + 1 + horizon])


def test_quantile_regression_recovers_a_conditional_quantile() -> None:
    """On y = 2x + exponential noise the 0.9 fit has slope 2 and the noise's 0.9 quantile as intercept."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 4000)
    y = 2 * x + rng.exponential(1.0, x.size)
    params = quantile_regression(y, np.column_stack([np.ones(x.size), x]), 0.9)
    assert params is not None
    assert params[1] == pytest.approx(2.0, abs=0.05)
    assert params[0] == pytest.approx(np.log(10), abs=0.15)  # exponential(1) 0.9 quantile


def test_too_little_history_gives_no_peaks_then_the_single_basis_calibration() -> None:
    """Under MIN_WINDOWS windows: None; then conformal single bases until the regression can fit."""
    means, peaks = bursty(1, seed=2)
    model = PeakModel(levels=(0.5, 0.9))
    short = PeakHistory(means=means[:MIN_WINDOWS], peaks=peaks[:MIN_WINDOWS], horizon=4)
    assert model.fit(short).predict(short) is None
    middle = PeakHistory(means=means[:100], peaks=peaks[:100], horizon=4)
    forecast = model.fit(middle).predict(middle)
    assert forecast is not None and forecast.basis.rstrip("+") in {"forecast", "latest", "recent"}
    assert not model.coefficients


def test_peaks_are_monotone_in_window_and_level_and_cover_out_of_sample() -> None:
    """Held-out windows: the 0.9 peak covers about 90 % of them, the 0.5 about half."""
    means, peaks = bursty(10, seed=3)
    model = PeakModel(levels=(0.5, 0.9))
    horizon = 4
    first = 8 * DAY
    model.fit(PeakHistory(means=means[:first], peaks=peaks[:first], horizon=horizon, season=DAY))
    assert model.coefficients, "a week of windows fits the regression"
    covered = {0.5: [], 0.9: []}
    for origin in range(first, 10 * DAY - horizon - 1, 3):
        history = PeakHistory(means=means[: origin + 1], peaks=peaks[: origin + 1], horizon=horizon, season=DAY)
        forecast = model.predict(history)
        assert forecast is not None and forecast.basis == "regression"
        for q, row in forecast.quantiles.items():
            assert np.all(np.diff(row) >= 0)
            covered[q].append(bool(window_peaks(peaks, origin, horizon)[-1] <= row[-1]))
        assert np.all(forecast.quantiles[0.9] >= forecast.quantiles[0.5])
    assert 0.85 <= np.mean(covered[0.9]) <= 0.96
    assert 0.4 <= np.mean(covered[0.5]) <= 0.62


def test_a_larger_basis_never_lowers_the_peak() -> None:
    """Every fitted weight of a basis is >= 0 (negative ones are dropped and the fit redone)."""
    means, peaks = bursty(8, seed=4)
    model = PeakModel(levels=(0.5, 0.9, 0.99)).fit(PeakHistory(means=means, peaks=peaks, horizon=4, season=DAY))
    assert len(model.coefficients) == 4 * 3
    for names, params in model.coefficients.values():
        assert names, "at least one basis survives"
        assert np.all(params[1:] >= 0)


def test_the_level_follows_what_a_miss_costs() -> None:
    """Dear misses choose a higher level than cheap ones, on the same history."""
    means, peaks = bursty(8, seed=5)
    history = PeakHistory(means=means, peaks=peaks, horizon=5, season=DAY)
    levels = (0.5, 0.75, 0.9, 0.95, 0.98, 0.995)

    def level(miss_cost: float) -> float:
        economics = PeakEconomics(unit=100.0, replica_bucket_cost=1.0, request_miss_cost=miss_cost, window=4)
        chosen = PeakModel(levels=levels).fit(history, economics).level
        assert chosen is not None
        return chosen

    cheap, dear = level(1e-6), level(1.0)
    assert cheap == 0.5 and dear == 0.995
    assert level(1e-6) <= level(1e-3) <= level(1.0)


def test_regression_needs_half_a_day_of_windows() -> None:
    """The regression waits for MIN_REGRESSION_WINDOWS windows; the conformal path serves before."""
    means, peaks = bursty(2, seed=6)
    n = MIN_REGRESSION_WINDOWS + 4 + 2
    model = PeakModel(levels=(0.5, 0.9)).fit(PeakHistory(means=means[:n], peaks=peaks[:n], horizon=4))
    assert model.coefficients and model.windows >= MIN_REGRESSION_WINDOWS
    fewer = PeakModel(levels=(0.5, 0.9)).fit(PeakHistory(means=means[: n - 3], peaks=peaks[: n - 3], horizon=4))
    assert not fewer.coefficients


def test_a_peak_in_the_bucket_being_collected_raises_the_regression_at_once() -> None:
    """with_partial_peak lifts latest/recent (and the envelope); predict_from then sizes higher."""
    from models.peaks import with_partial_peak

    means, peaks = bursty(8, seed=7)
    history = PeakHistory(means=means, peaks=peaks, horizon=4, season=DAY)
    model = PeakModel(levels=(0.5, 0.9)).fit(history)
    bases = PeakModel.current_bases(history)
    assert bases is not None
    before = model.predict_from(bases, 4)
    jump = 10 * float(bases["recent"][0])
    raised_bases = with_partial_peak(bases, jump)
    assert raised_bases["latest"][0] == raised_bases["recent"][0] == jump
    assert np.all(raised_bases["envelope"] >= jump)
    after = model.predict_from(raised_bases, 4)
    assert before is not None and after is not None
    assert np.all(after.quantiles[0.9] >= before.quantiles[0.9])
    assert after.quantiles[0.9][-1] > before.quantiles[0.9][-1]
    assert with_partial_peak(bases, 0.0)["latest"][0] == bases["latest"][0]  # a lower load changes nothing


def _identity_model(level: float) -> PeakModel:
    """A fitted model whose peak quantile is the forecast basis itself (one window length)."""
    model = PeakModel(levels=(level,))
    model.coefficients = {(0, level): (("forecast",), np.array([0.0, 1.0]))}
    return model


def _serve_and_score(model: PeakModel, actual: np.ndarray, *, forecast: float = 100.0) -> np.ndarray:
    """Serve the model's peak for each bucket in turn, then score it; the served values."""
    step, served = 300.0, np.empty(actual.size)
    for i in range(actual.size):
        forecast_now = model.predict_from({"forecast": np.array([forecast])}, 1)
        assert forecast_now is not None
        served[i] = forecast_now.quantiles[model.levels[0]][0]
        model.track((i + 1) * step, forecast_now)
        # The history up to the bucket just served: its peak is now known.
        known = np.concatenate([np.full(1, forecast), actual[: i + 1]])
        model.score(PeakHistory(means=known * 0.5, peaks=known, horizon=1), (i + 1) * step, step)
    return served


def test_the_coverage_correction_makes_an_optimistic_regression_cover_its_level() -> None:
    """A 0.95 peak that in truth is the median is raised until about 5 % of windows exceed it."""
    rng = np.random.default_rng(3)
    actual = 100.0 * rng.lognormal(0.0, 0.2, 6000)
    model = _identity_model(0.95)
    served = _serve_and_score(model, actual)
    late = slice(3000, None)
    exceeded = float(np.mean(actual[late] > served[late]))
    assert 0.03 <= exceeded <= 0.07
    assert model.offsets[0.95][0] > 0.2  # the lognormal's 0.95 quantile is ~1.39x its median


def test_the_coverage_correction_lowers_a_pessimistic_regression_within_its_bounds() -> None:
    """Peaks that never come near the served 0.9 quantile lower it, but never below 70 % of it."""
    model = _identity_model(0.9)
    served = _serve_and_score(model, np.full(3000, 10.0))
    assert served[0] == pytest.approx(100.0)
    assert served[-1] == pytest.approx(70.0)
    assert np.all(np.diff(served) <= 1e-9)


def test_windows_still_open_wait_and_a_clock_gone_back_cannot_grow_the_memory() -> None:
    """Scoring before a window's peak is known changes nothing; pending windows stay bounded."""
    model = _identity_model(0.9)
    forecast = model.predict_from({"forecast": np.array([100.0])}, 1)
    assert forecast is not None
    model.track(600.0, forecast)
    model.score(PeakHistory(means=np.full(3, 50.0), peaks=np.full(3, 500.0), horizon=1), 300.0, 300.0)
    assert model.offsets == {} and list(model.pending) == [600.0]
    for i in range(500):
        model.track(1e6 + i * 300.0, forecast)
    assert len(model.pending) <= 64


def test_the_forecast_origins_trailing_peaks_are_those_of_the_sliding_maximum() -> None:
    """A few origins read their own windows (every update's current bases); the numbers are
    those of the sliding maximum the calibration windows use, at the start of the history,
    with unknown peaks, and for the last origin."""
    from models.peaks import _trailing_max

    rng = np.random.default_rng(11)
    values = rng.gamma(2.0, 100.0, 500)
    values[rng.random(500) < 0.05] = np.nan
    every = np.arange(values.size, dtype=np.int64)
    for window in (1, 2, 12):
        sliding = _trailing_max(values, window, every)
        for origins in ([0], [1], [window - 1], [250, 251], [values.size - 1]):
            few = np.array(origins, dtype=np.int64)
            np.testing.assert_array_equal(_trailing_max(values, window, few), sliding[few])
