"""The two actuators: enforce writes through the cluster port, dry-run only records.

Dry-run holds no cluster port at all, so these tests also show what it may still write:
the release of what an earlier enforce left (placeholders, a raised HPA floor), and
nothing when there is nothing to release.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from autoscaler.core.types import ClusterState
from autoscaler.policy.schema import Target
from autoscaler.ports import ClusterRead, TargetStatus
from autoscaler.runtime.actuators import DryRun, Enforce, owes_release
from tests.core.builders import make_decision
from tests.fakes import Applied, FakeCluster

TARGET = Target(namespace="llm", deployment="vllm")


@dataclass
class RecordingOperations:
    """A TargetOperations that records every release (and fails the test on anything else)."""

    released: list[str] = field(default_factory=list)

    def publish(self, target: Target, status: TargetStatus) -> str | None:
        pytest.fail("an actuator does not publish status")

    def release(self, target: Target) -> tuple[str, ...]:
        self.released.append(target.key)
        return ("placeholders -> 0",)

    def pin(self, target: Target, replicas: int, read: ClusterRead | None = None) -> tuple[str, ...]:
        pytest.fail("an actuator does not pin")


def test_enforce_applies_once_and_logs_what_it_wrote() -> None:
    cluster = FakeCluster(replicas=1)
    decision = make_decision(TARGET, replicas=4, placeholders=2, current_replicas=1)
    actuation = Enforce(cluster).act(TARGET, decision, cluster.read(TARGET))
    assert cluster.applied == [Applied(TARGET.key, 4, 2)]
    assert actuation.applied is not None and actuation.applied.wrote_replicas
    assert actuation.released == ()
    assert list(actuation.log) == ["dry_run", "applied"] and actuation.log["dry_run"] is False


@pytest.mark.parametrize(
    ("state", "owed"),
    [
        (ClusterState(spec_replicas=2), False),
        (ClusterState(spec_replicas=2, placeholder_replicas=3), True),
        (ClusterState(spec_replicas=2, hpa_original_min_replicas=1), True),
    ],
    ids=["nothing left", "placeholders left", "HPA floor left"],
)
def test_dry_run_records_and_releases_only_what_enforce_left(state: ClusterState, owed: bool) -> None:
    operations = RecordingOperations()
    decision = make_decision(TARGET, replicas=5, placeholders=1, current_replicas=2)
    actuation = DryRun(operations).act(TARGET, decision, ClusterRead(target=TARGET.key, state=state))
    assert owes_release(state) is owed
    assert actuation.applied is None
    assert actuation.log == {"dry_run": True, "would_set_replicas": 5, "would_set_placeholders": 1}
    assert operations.released == ([TARGET.key] if owed else [])
    assert actuation.released == (("placeholders -> 0",) if owed else ())


def test_dry_run_without_operations_writes_nothing_even_when_owed() -> None:
    state = ClusterState(spec_replicas=2, placeholder_replicas=3)
    actuation = DryRun(None).act(TARGET, make_decision(TARGET, replicas=1), ClusterRead(target=TARGET.key, state=state))
    assert actuation.applied is None and actuation.released == ()
