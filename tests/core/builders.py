"""Builders for the decision core's inputs and output: an observation, an earlier decision's record, a decision.

Every core test states only the figures its row is about (load, replicas, latency, sample
age) and takes the rest from here, so a new field of `MetricsSnapshot` or `ClusterState`
is defaulted in one place, not in each test module.
"""

from __future__ import annotations

import time

from autoscaler.core.types import ClusterState, Decision, DecisionRecord, MetricsSnapshot, Observation, Reason
from autoscaler.policy.schema import Target

#: The instant the core tests decide at (any fixed time: the core reads no clock).
NOW = 1_700_000_000.0


def observation(
    *,
    load: float | None,
    current: int,
    ready: int | None = None,
    placeholders: int = 0,
    warm: int = 0,
    cold: int = 0,
    latency: float | None = None,
    waiting: float | None = None,
    sample_age: float = 0.0,
    now: float = NOW,
) -> Observation:
    """What the controller observed at ``now``.

    Args:
        load: Load now (``None``: unknown).
        current: Replicas the Deployment asks for (``spec.replicas``).
        ready: Ready replicas (default: all of ``current``).
        placeholders: Placeholder pods asked for.
        warm: Placeholders running on a node with the image already pulled.
        cold: Placeholders still pulling the image.
        latency: Mean latency now, seconds (``None``: unknown).
        waiting: Queued requests (``None``: unknown).
        sample_age: Age of the newest sample, seconds (past ``staleAfterSeconds``: stale).
        now: When it was observed.
    """
    metrics = MetricsSnapshot(
        time=now, load=load, latency_mean=latency, waiting=waiting, newest_sample_time=now - sample_age
    )
    cluster = ClusterState(
        spec_replicas=current,
        ready_replicas=current if ready is None else ready,
        placeholder_replicas=placeholders,
        placeholders_warm=warm,
        placeholders_cold=cold,
    )
    return Observation(metrics=metrics, cluster=cluster)


def record(
    age: float, serving: int, total: int | None = None, replicas: int | None = None, *, now: float = NOW
) -> DecisionRecord:
    """An earlier decision ``age`` seconds before ``now`` (total and replicas default to ``serving``)."""
    return DecisionRecord(
        time=now - age,
        serving_recommendation=serving,
        total_recommendation=serving if total is None else total,
        replicas=serving if replicas is None else replicas,
        placeholders=0,
    )


def make_decision(
    target: Target,
    *,
    replicas: int,
    placeholders: int = 0,
    current_replicas: int = 0,
    current_placeholders: int = 0,
    reason: Reason = Reason.PREDICTED_LOAD,
    at: float | None = None,
) -> Decision:
    """A decision as ``decide`` would return it (only the fields an actuator reads matter); at ``at``, else now."""
    return Decision(
        target=target.key,
        time=time.time() if at is None else at,
        replicas=replicas,
        placeholders=placeholders,
        current_replicas=current_replicas,
        current_placeholders=current_placeholders,
        reason=reason,
        placeholder_reason=Reason.PLACEHOLDERS_FOR_FORECAST,
        steps=(),
        serving_recommendation=replicas,
        total_recommendation=replicas + placeholders,
        observed_load=None,
        predicted_load_pod_horizon=None,
        predicted_load_node_horizon=None,
        pod_horizon_seconds=60.0,
        node_horizon_seconds=900.0,
        per_replica_capacity=200.0,
        data_ok=True,
    )
