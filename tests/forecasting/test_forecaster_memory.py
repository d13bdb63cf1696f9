"""What a target's forecaster keeps: one copy of its history, peaks only as far back as they are read.

At a thousand targets the per-target arrays are most of the controller's memory, so the
bounds are checked on what the forecaster exposes, not on the process's RSS.
"""

from __future__ import annotations

import json

import numpy as np

from autoscaler.forecasting.forecaster import TargetForecaster
from autoscaler.policy.schema import Target
from models.peaks import REGRESSORS
from models.series import Series

STEP = 300.0
T0 = 1_700_006_400.0


def seeded(days: float = 14.0) -> TargetForecaster:
    """A forecaster seeded with ``days`` of bucket means (no peaks) and fitted once."""
    fc = TargetForecaster(Target(namespace="ns", deployment="d"), horizon_seconds=1800.0)
    t = np.arange(int(days * 288)) * STEP
    fc.seed(Series(start=T0 - len(t) * STEP, step=STEP, values=100 + 50 * np.sin(2 * np.pi * t / 86400)))
    fc.refresh(T0, bucket_completed=True)
    return fc


def test_the_peaks_kept_cover_what_the_calibration_reads_not_the_whole_history() -> None:
    fc = seeded()
    assert fc.series is not None and fc.peaks is not None
    assert len(fc.series) == fc.capacity
    assert len(fc.peaks) == fc.peak_capacity < fc.capacity / 1.5
    peak_series = fc.peak_series()
    assert peak_series is not None and peak_series.end == fc.series.end and len(peak_series) == fc.peak_capacity


def test_a_completed_bucket_extends_the_history_in_place_and_the_model_shares_it() -> None:
    """No copy of the history per bucket: the new series and the model's window view one array."""
    fc = seeded()
    before = fc.series
    assert before is not None
    for k in range(1, 13):
        fc.observe(T0 + k * STEP + 1, 120.0)
        fc.refresh(T0 + k * STEP + 1)
        assert fc.series is not None and np.shares_memory(fc.series.values, before.values)
    assert fc.series is not None and fc.peaks is not None
    assert (fc.series.values[-11:] == 120.0).all() and (fc.peaks[-11:] == 120.0).all()
    np.testing.assert_array_equal(before.values[-3:], fc.series.values[-15:-12])
    model = fc.model
    winner = getattr(model, "model", model)
    history = getattr(winner, "history", None)
    assert history is not None and np.shares_memory(history, fc.series.values)


def test_peaks_seeded_with_the_history_are_kept_for_the_last_buckets_only() -> None:
    fc = TargetForecaster(Target(namespace="ns", deployment="d"), horizon_seconds=1800.0)
    n = 14 * 288
    means = Series(start=T0 - n * STEP, step=STEP, values=np.full(n, 10.0))
    peaks = Series(start=T0 - n * STEP, step=STEP, values=np.arange(n, dtype=np.float64))
    fc.seed(means, peaks)
    assert fc.peaks is not None and len(fc.peaks) == fc.peak_capacity
    np.testing.assert_array_equal(fc.peaks, np.arange(n - fc.peak_capacity, n))
    late = Series(start=T0 - 10 * STEP, step=STEP, values=np.full(3, 7.0))  # peaks known for 3 buckets only
    fc.seed(means, late)
    assert fc.peaks is not None
    assert np.isnan(fc.peaks[:-10]).all() and (fc.peaks[-10:-7] == 7.0).all() and np.isnan(fc.peaks[-7:]).all()


def test_peak_calibrations_share_their_regressor_names_fitted_or_restored() -> None:
    """One tuple per set of regressors, whatever the window and level, and no string per saved name."""
    fc = seeded()
    fc.refresh(T0 + 1.0)  # the calibration's own fit, after the model's
    assert fc.peak_model is not None and fc.peak_model.coefficients
    state = json.loads(json.dumps(fc.export_state()))
    restored = TargetForecaster(fc.target, horizon_seconds=1800.0)
    assert fc.series is not None
    restored.seed(fc.series)
    assert restored.restore_state(state) is None
    restored.refresh(T0 + 2.0)
    assert restored.peak_model is not None
    names = [n for m in (fc.peak_model, restored.peak_model) for n, _ in m.coefficients.values()]
    assert len({id(n) for n in names}) == len(set(names))
    assert all(name is next(r for r in REGRESSORS if r == name) for n in names for name in n)
