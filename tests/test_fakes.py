"""The shared fakes keep their promises (a test that relies on them relies on these)."""

from __future__ import annotations

import pytest

from autoscaler.core.types import Decision, Reason
from autoscaler.policy.schema import Target
from tests.core.builders import make_decision
from tests.fakes import Applied, FakeCluster, FakeMetrics, StepClock

TARGET = Target(namespace="llm", deployment="vllm")


def decision(replicas: int, placeholders: int = 0) -> Decision:
    """A decision for TARGET with just the counts set."""
    return make_decision(
        TARGET, replicas=replicas, placeholders=placeholders, current_replicas=1, reason=Reason.OBSERVED_LOAD, at=0.0
    )


def test_step_clock_moves_only_when_told() -> None:
    clock = StepClock(100.0)
    assert clock.now() == clock() == 100.0
    assert clock.advance(30.0) == 130.0 and clock.now() == 130.0
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1.0)


def test_a_ticking_step_clock_charges_each_reading() -> None:
    cpu = StepClock(0.0, tick=0.5)
    assert [cpu(), cpu(), cpu.now()] == [0.0, 0.5, 1.0]


def test_fake_metrics_report_fresh_load_and_no_history() -> None:
    metrics = FakeMetrics(load=42.0)
    snapshot = metrics.observe([TARGET], 5.0)[TARGET.key]
    assert (snapshot.load, snapshot.newest_sample_time) == (42.0, 5.0)
    assert metrics.observed == [5.0]
    assert metrics.lead_times(TARGET, 5.0) is None


def test_fake_cluster_applies_and_reports_what_changed() -> None:
    cluster = FakeCluster(replicas=1)
    assert cluster.apply(TARGET, decision(3, 2)).wrote_replicas
    assert cluster.read(TARGET).state.spec_replicas == 3 and cluster.read(TARGET).state.placeholder_replicas == 2
    result = cluster.apply(TARGET, decision(3, 2))
    assert not result.wrote_replicas and not result.wrote_placeholders
    assert cluster.applied == [Applied(TARGET.key, 3, 2)] * 2


def test_fake_cluster_in_dry_run_fails_the_test_on_apply() -> None:
    cluster = FakeCluster(replicas=1, dry_run=True)
    with pytest.raises(pytest.fail.Exception, match="apply called in dry-run"):
        cluster.apply(TARGET, decision(3))
    assert cluster.applied == []
