"""``Controller`` on the shared fakes: dry-run writes nothing, enforce applies what it decided.

Drives the controller only through its public constructor and ports (as
``benchmarks/bench_scale.py`` does): a stepped clock, metrics reporting 600 req/s for
targets serving at 200 per replica, and a cluster that starts each target at one replica.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from autoscaler.policy.schema import Placeholders, Policy, Target
from autoscaler.runtime.controller import Controller, Mode
from tests.fakes import Applied, FakeCluster, FakeMetrics, StepClock

START = 1_700_000_000.0
LOOP = 30.0
#: No placeholders: the serving replicas are the whole decision.
BASE = Target(namespace="llm", deployment="vllm", placeholders=Placeholders(enabled=False))


def build(*targets: Target, cluster: FakeCluster, mode_override: Mode | None = None) -> tuple[Controller, StepClock]:
    """A controller over ``targets`` on the fakes; every time it reads comes from a stepped clock."""
    clock = StepClock(START)
    controller = Controller(
        policy=Policy(targets=targets, loop_interval_seconds=LOOP),
        metrics=FakeMetrics(load=600.0),
        cluster=cluster,
        clock=clock,
        mode_override=mode_override,
        monotonic=StepClock(0.0),
        cpu_clock=StepClock(0.0),
    )
    return controller, clock


@pytest.mark.parametrize(
    ("mode", "override"),
    [("dry-run", None), ("enforce", "dry-run")],
    ids=["target in dry-run", "run --dry-run over an enforcing target"],
)
def test_dry_run_decides_and_writes_nothing(mode: Literal["dry-run", "enforce"], override: Mode | None) -> None:
    """The decision is made and reported on every cycle; ``Cluster.apply`` is never called."""
    cluster = FakeCluster(replicas=1, dry_run=True)
    controller, clock = build(dataclasses.replace(BASE, mode=mode), cluster=cluster, mode_override=override)
    for _ in range(3):
        (result,) = controller.reconcile_once().results
        assert result.error is None and result.dry_run
        assert result.decision is not None and result.decision.replicas == 3, "it would scale up"
        assert result.applied is None
        clock.advance(LOOP)
    assert cluster.applied == []
    assert cluster.state(BASE.key).spec_replicas == 1
    assert cluster.reads == [BASE.key] * 3


def test_enforce_applies_the_decided_replicas() -> None:
    """600 req/s at 200 per replica: the decision is applied as made, once, and then holds."""
    cluster = FakeCluster(replicas=1)
    controller, clock = build(dataclasses.replace(BASE, mode="enforce"), cluster=cluster)
    (result,) = controller.reconcile_once().results
    decision = result.decision
    assert result.error is None and not result.dry_run and decision is not None
    assert decision.replicas == 3, decision.steps  # no history yet: sized reactively on the live load
    assert result.applied is not None and result.applied.wrote_replicas
    assert cluster.applied == [Applied(BASE.key, decision.replicas, 0)]
    assert cluster.state(BASE.key).spec_replicas == decision.replicas

    clock.advance(LOOP)
    (again,) = controller.reconcile_once().results
    assert again.decision is not None and again.decision.replicas == decision.replicas
    assert again.applied is not None and not again.applied.wrote_replicas, "nothing changed: nothing written"


def test_one_target_in_dry_run_does_not_stop_the_other_enforcing() -> None:
    """Modes are per target: the enforcing one is applied, the dry-run one only reported."""
    enforce = dataclasses.replace(BASE, deployment="a", mode="enforce")
    dry = dataclasses.replace(BASE, deployment="b", mode="dry-run")
    cluster = FakeCluster(replicas=1)
    controller, _ = build(enforce, dry, cluster=cluster)
    results = {r.target: r for r in controller.reconcile_once().results}
    assert [a.target for a in cluster.applied] == [enforce.key]
    assert results[dry.key].applied is None and results[dry.key].decision is not None
    assert cluster.state(dry.key).spec_replicas == 1


def test_each_result_carries_what_its_target_observed() -> None:
    """Telemetry reads a target's observation from its result (no callback to chain onto)."""
    cluster = FakeCluster(replicas=1)
    controller, clock = build(dataclasses.replace(BASE, mode="enforce"), cluster=cluster)
    first = controller.reconcile_once()
    clock.advance(LOOP)
    second = controller.reconcile_once()
    for cycle in (first, second):
        (result,) = cycle.results
        assert result.observation is not None
        assert result.observation.metrics.time == cycle.time
        assert result.observation.metrics.load == 600.0
        assert result.observation.cluster.spec_replicas == (1 if cycle is first else 3)
