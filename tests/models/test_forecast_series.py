"""Tests of the data types: Series, resample, Prediction, errors and scoring helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import (
    ForecastError,
    InsufficientHistory,
    ModelFitError,
    Prediction,
    Series,
    interval_coverage,
    pinball_loss,
    resample,
)
from models.gaps import fill_gaps
from models.series import AppendBuffer


def test_series_grid_properties() -> None:
    """end, timestamps, tail and len follow the start/step grid."""
    s = Series(start=100.0, step=10.0, values=np.array([1.0, np.nan, 3.0, 4.0]))
    assert len(s) == 4
    assert s.end == 130.0
    np.testing.assert_array_equal(s.timestamps(), [100.0, 110.0, 120.0, 130.0])
    tail = s.tail(2)
    assert (tail.start, tail.end, len(tail)) == (120.0, 130.0, 2)
    assert len(s.tail(10)) == 4
    empty = s.tail(0)
    assert len(empty) == 0 and empty.end == empty.start - empty.step


def test_series_rejects_bad_grid_and_is_read_only() -> None:
    """A non-positive step raises and the stored values cannot be mutated."""
    with pytest.raises(ValueError, match="step"):
        Series(start=0.0, step=0.0, values=np.ones(3))
    s = Series(start=0.0, step=1.0, values=np.ones(3))
    with pytest.raises(ValueError):
        s.values[0] = 5.0


def test_resample_buckets_by_mean_and_marks_empty_bins_nan() -> None:
    """Samples are averaged per bin; a bin without samples is NaN, never zero."""
    ts = [0.0, 100.0, 300.0, 310.0, 900.0]
    vs = [2.0, 4.0, 10.0, np.nan, 6.0]
    s = resample(ts, vs, step=300.0)
    assert s.start == 0.0 and s.step == 300.0
    np.testing.assert_allclose(s.values[[0, 1, 3]], [3.0, 10.0, 6.0])
    assert math.isnan(s.values[2])


def test_resample_explicit_range_and_errors() -> None:
    """start/end fix the grid, samples outside it are dropped, bad input raises."""
    s = resample([50.0, 650.0, 5000.0], [1.0, 2.0, 3.0], step=300.0, start=0.0, end=900.0)
    assert len(s) == 4
    np.testing.assert_allclose(s.values[[0, 2]], [1.0, 2.0])
    assert np.isnan(s.values[[1, 3]]).all()
    assert len(resample([], [], step=60.0)) == 0
    with pytest.raises(ValueError, match="length"):
        resample([1.0], [1.0, 2.0], step=60.0)
    with pytest.raises(ValueError, match="step"):
        resample([1.0], [1.0], step=-1.0)


def _prediction() -> Prediction:
    """A small prediction with levels 0.5 and 0.9."""
    return Prediction(
        start=1000.0,
        step=300.0,
        mean=np.array([10.0, 12.0]),
        quantiles={0.9: np.array([20.0, 30.0]), 0.5: np.array([10.0, 10.0])},
        model="test",
    )


def test_prediction_quantile_exact_and_interpolated() -> None:
    """Available levels are returned as is, levels between them interpolate linearly."""
    p = _prediction()
    np.testing.assert_allclose(p.quantile(0.9), [20.0, 30.0])
    np.testing.assert_allclose(p.quantile(0.7), [15.0, 20.0])
    np.testing.assert_allclose(p.timestamps(), [1000.0, 1300.0])
    assert list(p.quantiles) == [0.5, 0.9]


@pytest.mark.parametrize("level", [0.3, 0.95, 0.0, 1.0])
def test_prediction_quantile_outside_levels_raises(level: float) -> None:
    """A level outside the available range raises ValueError."""
    with pytest.raises(ValueError, match="outside"):
        _prediction().quantile(level)


def test_prediction_enforces_non_negative_and_monotone() -> None:
    """Negative values are clipped to 0 and crossing quantiles are made monotone."""
    p = Prediction(
        start=0.0,
        step=1.0,
        mean=np.array([-1.0, 2.0]),
        quantiles={0.5: np.array([-3.0, 5.0]), 0.9: np.array([1.0, 4.0])},
        model="test",
    )
    np.testing.assert_array_equal(p.mean, [0.0, 2.0])
    np.testing.assert_array_equal(p.quantiles[0.5], [0.0, 5.0])
    np.testing.assert_array_equal(p.quantiles[0.9], [1.0, 5.0])


def test_prediction_rejects_invalid_input() -> None:
    """Non-finite values, bad levels and length mismatches raise ValueError."""
    with pytest.raises(ValueError, match="finite"):
        Prediction(start=0, step=1, mean=np.array([np.nan]), quantiles={}, model="x")
    with pytest.raises(ValueError, match="outside"):
        Prediction(start=0, step=1, mean=np.ones(1), quantiles={1.0: np.ones(1)}, model="x")
    with pytest.raises(ValueError, match="long"):
        Prediction(start=0, step=1, mean=np.ones(2), quantiles={0.5: np.ones(3)}, model="x")


def test_error_hierarchy() -> None:
    """Both specific errors derive from ForecastError."""
    assert issubclass(InsufficientHistory, ForecastError)
    assert issubclass(ModelFitError, ForecastError)


def test_pinball_loss_and_coverage() -> None:
    """Pinball loss and coverage match hand-computed values and ignore NaN actuals."""
    y = np.array([10.0, 20.0, np.nan])
    pred = np.array([12.0, 15.0, 0.0])
    assert pinball_loss(y, pred, 0.9) == pytest.approx((0.1 * 2 + 0.9 * 5) / 2)
    assert interval_coverage(y, pred) == pytest.approx(0.5)
    assert math.isnan(pinball_loss([np.nan], [1.0], 0.5))
    with pytest.raises(ValueError):
        pinball_loss(y, pred, 1.5)


def test_fill_gaps_uses_seasonal_shape() -> None:
    """A gap at a seasonal peak is filled with peak values, not zeros or a flat line."""
    season = 24
    t = np.arange(season * 4, dtype=float)
    truth = 50.0 + 40.0 * np.sin(2 * np.pi * t / season) + 0.2 * t
    values = truth.copy()
    values[78:84] = np.nan  # around the peak of the fourth cycle
    values[-3:] = np.nan  # a gap right at the end
    filled = fill_gaps(values, season=season)
    np.testing.assert_allclose(filled[78:84], truth[78:84], rtol=0.05)
    np.testing.assert_allclose(filled[-3:], truth[-3:], rtol=0.05)
    linear = fill_gaps(values)
    assert np.isfinite(linear).all() and linear.min() > 0
    with pytest.raises(InsufficientHistory):
        fill_gaps(np.full(5, np.nan))


def test_an_append_buffer_keeps_the_last_values_and_never_changes_a_view_handed_out() -> None:
    """Appends go after the end of the array (no copy) until the room runs out; views stay as they were."""
    buffer = AppendBuffer(capacity=5, slack=3)
    buffer.replace([1.0, 2.0, 3.0, 4.0])
    first = buffer.values
    buffer.extend([5.0])
    second = buffer.values
    assert np.shares_memory(first, second), "appended in place"
    buffer.extend([6.0, 7.0, 8.0])  # the room runs out: the last 5 move to a new array
    third = buffer.values
    assert not np.shares_memory(second, third)
    np.testing.assert_array_equal(first, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(second, [1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(third, [4.0, 5.0, 6.0, 7.0, 8.0])
    assert not third.flags.writeable and len(buffer) == 5
    buffer.extend(np.arange(20.0))  # more than the capacity at once
    np.testing.assert_array_equal(buffer.values, np.arange(15.0, 20.0))


def test_an_append_buffer_truncated_writes_no_position_it_handed_out() -> None:
    """After a truncate the next append moves the kept values rather than overwrite a view's."""
    buffer = AppendBuffer(capacity=10, slack=10)
    buffer.replace([1.0, 2.0, 3.0])
    before = buffer.values
    buffer.truncate(1)
    buffer.extend([9.0])
    np.testing.assert_array_equal(before, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(buffer.values, [1.0, 9.0])
