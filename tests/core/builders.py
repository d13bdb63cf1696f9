"""Builders for the decision core's inputs: an observation and an earlier decision's record.

Every core test states only the figures its row is about (load, replicas, latency, sample
age) and takes the rest from here, so a new field of `MetricsSnapshot` or `ClusterState`
is defaulted in one place, not in each test module.
"""

from __future__ import annotations

from autoscaler.core.types import ClusterState, DecisionRecord, MetricsSnapshot, Observation

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
