"""What a cycle does with a target's decision: apply it, or only record it.

Dry-run is not a branch inside the controller's cycle but an actuator of its own, and it
holds no `Cluster`: it cannot write a replica count or a placeholder, whatever the
controller asks of it. What it may still write is the undoing of what an earlier
enforce left behind (placeholder pods, a raised HPA floor) through the
`TargetOperations` port, because a target switched to dry-run must stop holding GPUs.
The controller picks the actuator per target and cycle, since modes are per target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from autoscaler.core.types import ClusterState, Decision
from autoscaler.policy.schema import Target
from autoscaler.ports import ApplyResult, Cluster, ClusterRead, TargetOperations


@dataclass(frozen=True)
class Actuation:
    """What an actuator did with a decision.

    Attributes:
        applied: What applying wrote (``None``: nothing was applied, as in dry-run).
        released: What undoing an earlier enforce wrote (empty: nothing).
        log: The fields the decision's log line carries for this actuator, ``dry_run`` first.
    """

    applied: ApplyResult | None = None
    released: tuple[str, ...] = ()
    log: dict[str, Any] = field(default_factory=dict)


class Actuator(Protocol):
    """Acts on one target's decision."""

    def act(self, target: Target, decision: Decision, reading: ClusterRead) -> Actuation:
        """Apply or record ``decision`` for ``target``, made on ``reading`` (this cycle's read)."""
        ...


def owes_release(cluster: ClusterState) -> bool:
    """Enforcing left something: placeholder pods, or an HPA floor we raised. Pure."""
    return cluster.placeholder_replicas > 0 or cluster.hpa_original_min_replicas is not None


@dataclass(frozen=True)
class Enforce:
    """Writes the decision through the cluster port."""

    cluster: Cluster

    def act(self, target: Target, decision: Decision, reading: ClusterRead) -> Actuation:
        """Apply ``decision`` against the read it was made on; the port's errors propagate (the target fails)."""
        applied = self.cluster.apply(target, decision, reading)
        return Actuation(applied=applied, log={"dry_run": False, "applied": applied.__dict__})


@dataclass(frozen=True)
class DryRun:
    """Records what enforce would write; writes nothing but the release of an earlier enforce."""

    operations: TargetOperations | None

    def act(self, target: Target, decision: Decision, reading: ClusterRead) -> Actuation:
        """The would-be replicas and placeholders; releases what enforcing left, if anything."""
        released: tuple[str, ...] = ()
        if self.operations is not None and owes_release(reading.state):
            released = self.operations.release(target)
        would = {"would_set_replicas": decision.replicas, "would_set_placeholders": decision.placeholders}
        return Actuation(released=released, log={"dry_run": True, **would})
