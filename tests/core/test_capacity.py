"""Capacity model: load -> replicas, and capacity learned from (per-replica load, latency) samples."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.core.capacity import LearnedCapacity, replicas_for
from autoscaler.sim.latency import LatencyModel


@pytest.mark.parametrize(
    ("load", "per_replica", "expected"),
    [(0.0, 200.0, 0), (1.0, 200.0, 1), (400.0, 200.0, 2), (400.0000001, 200.0, 2), (401.0, 200.0, 3)],
)
def test_replicas_for_rounds_up_without_float_noise(load: float, per_replica: float, expected: int) -> None:
    """Replicas are ceil(load / capacity), and float noise does not add a replica."""
    assert replicas_for(load, per_replica) == expected


def test_learned_capacity_finds_where_latency_meets_the_slo() -> None:
    """Samples from the calibrated latency curve give back its capacity at the SLO (within a bin)."""
    model = LatencyModel()
    slo = 0.16  # below saturation: capacity_at_slo(0.16) ~ 211 req/s
    learned = LearnedCapacity(policy_value=200.0, slo_seconds=slo, min_samples=200)
    rng = np.random.default_rng(3)
    for per_replica in rng.uniform(20, 260, size=2000):
        latency = model.service_latency(per_replica / model.saturation_rps) * rng.lognormal(0, 0.02)
        learned.add(per_replica_load=float(per_replica), latency=float(latency))
    estimate = learned.estimate()
    assert estimate is not None
    assert abs(estimate - model.capacity_at_slo(slo)) <= 0.1 * 200.0


def test_learned_capacity_needs_evidence_and_stays_near_the_policy_value() -> None:
    """Too few samples give None; a wild estimate is clipped to [policy/2, 2 x policy]."""
    learned = LearnedCapacity(policy_value=200.0, slo_seconds=0.2, min_samples=50)
    for _ in range(10):
        learned.add(per_replica_load=900.0, latency=0.05)
    assert learned.estimate() is None
    for _ in range(100):
        learned.add(per_replica_load=5000.0, latency=0.05)
    assert learned.estimate() == 400.0


def test_bad_samples_are_ignored() -> None:
    """NaN, infinite or non-positive samples are not evidence."""
    learned = LearnedCapacity(policy_value=200.0, slo_seconds=0.2, min_samples=1)
    for load, latency in [(float("nan"), 0.1), (100.0, float("inf")), (-1.0, 0.1), (100.0, 0.0)]:
        learned.add(per_replica_load=load, latency=latency)
    assert learned.samples == 0
