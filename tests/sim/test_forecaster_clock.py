"""The forecaster follows a clock that stepped back (NTP fix after a jump ahead)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.forecasting.forecaster import TargetForecaster
from autoscaler.policy.schema import Target
from models.series import Series

STEP = 300.0
T0 = 1_700_006_400.0


def seeded() -> TargetForecaster:
    fc = TargetForecaster(Target(namespace="ns", deployment="d"), horizon_seconds=1800.0)
    t = np.arange(3 * 288) * STEP
    fc.seed(Series(start=T0 - len(t) * STEP, step=STEP, values=100 + 50 * np.sin(2 * np.pi * t / 86400)))
    fc.refresh(T0, bucket_completed=True)
    return fc


def test_buckets_filled_while_the_clock_ran_ahead_are_dropped() -> None:
    fc = seeded()
    real_end = fc.series.end if fc.series is not None else None
    fc.observe(T0 + 10, 120.0)
    fc.observe(T0 + 7200, None)  # two hours ahead: 24 empty buckets
    assert fc.series is not None and fc.series.end >= T0 + 6900
    fc.observe(T0 + 40, 120.0)  # the clock is back
    assert fc.series is not None and fc.series.end == real_end
    assert fc.prediction is None and fc.last_fit is None  # rebuilt from the real history
    fc.refresh(T0 + 40, allow_fit=True)
    view = fc.view(T0 + 40)
    assert view is not None and view.peak(quantile=0.9, start=T0 + 40, end=T0 + 600) is not None


def test_real_load_seen_under_a_wrong_clock_is_kept() -> None:
    fc = seeded()
    for k in range(4):  # 20 minutes of real load, then the clock steps back 10 minutes
        fc.observe(T0 + 10 + k * STEP, 120.0)
    before = fc.series
    fc.observe(T0 + 10 + 3 * STEP - 600, 120.0)
    assert fc.series is before


def test_buckets_missed_during_a_pause_are_one_append_with_the_same_series(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cycle after a pause (a restart on a lagging history, a stalled loop) completes many empty
    buckets at once: the series is the one observing each bucket gives, built with one copy
    of it after the bucket holding samples, not one per empty bucket."""
    reference, paused = seeded(), seeded()
    for fc in (reference, paused):
        fc.observe(T0 + 10, 120.0)
        fc.observe(T0 + 200, 140.0)
    for k in range(1, 40):
        reference.observe(T0 + k * STEP + 1, None)
    appends = []
    real = TargetForecaster.append_bucket

    def counted(fc: TargetForecaster, start: float, value: float, peak: float) -> None:
        appends.append(start)
        real(fc, start, value, peak)

    monkeypatch.setattr(TargetForecaster, "append_bucket", counted)
    assert paused.observe(T0 + 39 * STEP + 1, None)
    assert appends == [T0, T0 + 38 * STEP]
    assert reference.series is not None and paused.series is not None
    assert (paused.series.start, paused.series.step) == (reference.series.start, reference.series.step)
    np.testing.assert_array_equal(paused.series.values, reference.series.values)
    np.testing.assert_array_equal(paused.peaks, reference.peaks)
    assert paused.series.values[-39] == 130.0 and paused.peaks[-39] == 140.0
    assert paused.bucket_due(T0 + 40 * STEP) and not paused.bucket_due(T0 + 40 * STEP - 1)


def test_a_jump_far_ahead_pads_no_more_than_the_series_holds() -> None:
    fc = seeded()
    fc.observe(T0 + 10, 120.0)
    fc.observe(T0 + 1e9, None)  # ~30 years ahead: every bucket kept is a gap
    assert fc.series is not None and len(fc.series) == fc.capacity
    assert fc.series.end == math.floor((T0 + 1e9) / STEP) * STEP - STEP
    assert not np.isfinite(fc.series.values).any()
