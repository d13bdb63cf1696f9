"""Lead times: how long until capacity asked for now is serving.

They come from the policy's cold-start phases, or from measurements once enough pod
start-ups have been observed (see the Prometheus source). ``decide`` sizes serving
replicas over the pod start-up lead time and total GPU capacity over the node one.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.policy.schema import ColdStart


@dataclass(frozen=True)
class LeadTimes:
    """Seconds from a request for capacity until it serves, in three situations."""

    node_ready: float
    pod_start_warm: float
    pod_start_fresh: float
    source: str = "policy"

    @property
    def total(self) -> float:
        """A replica that needs a new node: node, image pull, model load."""
        return self.node_ready + self.pod_start_fresh

    @classmethod
    def from_policy(cls, cold_start: ColdStart) -> LeadTimes:
        """The policy's configured phases."""
        return cls(
            node_ready=cold_start.node_ready_seconds,
            pod_start_warm=cold_start.pod_start_on_warm_node_seconds,
            pod_start_fresh=cold_start.pod_start_on_fresh_node_seconds,
            source="policy",
        )
