"""The forecaster follows a clock that stepped back (NTP fix after a jump ahead)."""

from __future__ import annotations

import numpy as np

from autoscaler.forecasting import TargetForecaster
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
