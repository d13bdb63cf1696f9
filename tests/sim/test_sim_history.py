"""The simulator's metrics port serves warm-up history on the forecaster's grid."""

from __future__ import annotations

import numpy as np

from autoscaler.offline.sim.adapters import SimMetrics, TrafficRecord
from autoscaler.policy.schema import Target
from models.series import Series


def metrics(history: Series) -> SimMetrics:
    traffic = TrafficRecord(
        start=0.0, dt=10.0, arrivals=np.zeros(1), latency=np.zeros(1), queue=np.zeros(1), count=1
    )
    return SimMetrics(traffic=traffic, history=history)


def test_a_coarser_trace_is_upsampled_not_relabelled() -> None:
    # Regression: a 600 s trace used to come back as 300 s points, squeezing two days into one.
    history = Series(start=0.0, step=600.0, values=np.arange(10, dtype=float))
    got = metrics(history).load_history(Target(namespace="ns", deployment="d"), start=0.0, end=5400.0, step=300.0)
    assert got.step == 300.0
    assert got.start == 0.0
    assert got.end == 5400.0
    np.testing.assert_array_equal(got.values, np.repeat(np.arange(10.0), 2)[:19])


def test_a_finer_trace_is_averaged_into_buckets() -> None:
    history = Series(start=0.0, step=60.0, values=np.arange(20, dtype=float))
    got = metrics(history).load_history(Target(namespace="ns", deployment="d"), start=0.0, end=900.0, step=300.0)
    assert got.step == 300.0
    np.testing.assert_allclose(got.values, [2.0, 7.0, 12.0, 17.0])
    assert got.start == 0.0
