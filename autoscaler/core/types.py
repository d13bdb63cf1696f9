"""Value objects that flow through one control cycle.

``MetricsSnapshot`` (what Prometheus said, every field optional because any query can
fail) and ``ClusterState`` (what the API server said, authoritative for replica counts)
make up an ``Observation``. ``decide`` turns it, a forecast and the policy into a
``Decision`` whose ``steps`` record every stage of the safety pipeline with a stable,
machine-readable :class:`Reason`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why a pipeline step produced its value. Stable strings: used in logs, Events, metrics."""

    PREDICTED_LOAD = "PredictedLoad"
    OBSERVED_LOAD = "ObservedLoad"
    SLO_BREACHED = "SLOBreached"
    QUEUE_WAKE_UP = "QueueWakeUp"
    FORECAST_WAKE_UP = "ForecastWakeUp"
    IDLE_FORECAST_SCALE_TO_ZERO = "IdleForecastScaleToZero"
    SCALE_TO_ZERO_BLOCKED = "ScaleToZeroBlocked"
    MISSING_DATA_HOLD = "MissingDataHold"
    STALE_DATA_HOLD = "StaleDataHold"
    FORECAST_UNAVAILABLE = "ForecastUnavailable"
    FORECAST_NEEDS_CAPACITY_SOON = "ForecastNeedsCapacitySoon"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    PLACEHOLDERS_FOR_FORECAST = "PlaceholdersForForecast"
    PLACEHOLDERS_DISABLED = "PlaceholdersDisabled"
    PLACEHOLDERS_STABILIZED = "PlaceholdersStabilized"
    PLACEHOLDERS_HOLD = "PlaceholdersHold"
    PLACEHOLDER_LIMIT = "PlaceholderLimit"
    NO_CHANGE = "NoChange"


def finite_or_none(value: float | None) -> float | None:
    """Return ``value`` if it is a finite number, else ``None`` (NaN/Inf mean "unknown").

    Pure. Used wherever a number crosses into the core so a NaN can never be read as load.
    """
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class MetricsSnapshot:
    """What the metrics source observed for one target at ``time``. ``None`` = unknown.

    ``load`` is in the policy's capacity unit (requests/s, or tokens/s). Latencies are in
    seconds; ``kv_cache_usage``, ``gpu_utilization`` and ``gpu_engine_active`` are 0-1 fractions.
    ``newest_sample_time`` lets the core judge staleness without a clock.
    ``problems`` maps a signal name to the error kind that made it unknown.
    """

    time: float
    load: float | None = None
    latency_mean: float | None = None
    latency_quantile: float | None = None
    ttft_quantile: float | None = None
    queue_time_mean: float | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    preemption_rate: float | None = None
    prompt_tokens_rate: float | None = None
    generation_tokens_rate: float | None = None
    gpu_utilization: float | None = None
    gpu_engine_active: float | None = None
    newest_sample_time: float | None = None
    problems: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "load",
            "latency_mean",
            "latency_quantile",
            "ttft_quantile",
            "queue_time_mean",
            "running",
            "waiting",
            "kv_cache_usage",
            "preemption_rate",
            "prompt_tokens_rate",
            "generation_tokens_rate",
            "gpu_utilization",
            "gpu_engine_active",
            "newest_sample_time",
        ):
            value = getattr(self, name)
            clean = finite_or_none(value)
            if clean is not None and name != "newest_sample_time" and clean < 0:
                clean = None
            object.__setattr__(self, name, clean)


@dataclass(frozen=True)
class ClusterState:
    """What the Kubernetes API said about one target. Replica counts are authoritative.

    ``placeholders_warm`` counts placeholder pods that are running on a node with the
    serving image already pulled; ``placeholders_cold`` those bound to a node but still
    pulling; ``placeholders_pending`` those waiting for a node.

    ``paused`` is set by the operator on the target Deployment (annotation, see
    :mod:`autoscaler.kube.status`), with ``paused_replicas`` the count to pin while paused
    (``None``: hold whatever is there). ``hpa_original_min_replicas`` is the HPA's own
    ``minReplicas`` recorded when ``coexist`` first changed it (``None``: never changed, or
    restored): what a release writes back.
    """

    spec_replicas: int
    ready_replicas: int = 0
    pending_replicas: int = 0
    placeholder_replicas: int = 0
    placeholders_warm: int = 0
    placeholders_cold: int = 0
    placeholders_pending: int = 0
    nodes_ready: int | None = None
    nodes_provisioning: int | None = None
    hpa_min_replicas: int | None = None
    paused: bool = False
    paused_replicas: int | None = None
    hpa_original_min_replicas: int | None = None


@dataclass(frozen=True)
class Observation:
    """Everything ``decide`` knows about the present for one target."""

    metrics: MetricsSnapshot
    cluster: ClusterState


@dataclass(frozen=True)
class Step:
    """One stage of the decision pipeline: its output value and why."""

    name: str
    value: int
    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class DecisionRecord:
    """What later decisions need to remember of an earlier one (stabilization, rate limits)."""

    time: float
    serving_recommendation: int
    total_recommendation: int
    replicas: int
    placeholders: int


@dataclass(frozen=True)
class Decision:
    """The outcome of one ``decide`` call for one target.

    ``replicas`` and ``placeholders`` are what the controller should set. ``steps`` is the
    full trail through the safety pipeline; ``reason`` is the step that determined the
    final serving replica count.
    """

    target: str
    time: float
    replicas: int
    placeholders: int
    current_replicas: int
    current_placeholders: int
    reason: Reason
    placeholder_reason: Reason
    steps: tuple[Step, ...]
    serving_recommendation: int
    total_recommendation: int
    observed_load: float | None
    predicted_load_pod_horizon: float | None
    predicted_load_node_horizon: float | None
    pod_horizon_seconds: float
    node_horizon_seconds: float
    per_replica_capacity: float
    data_ok: bool
    forecast_model: str | None = None

    @property
    def reasons(self) -> tuple[str, ...]:
        """The distinct reasons met along the pipeline, in order."""
        seen: list[str] = []
        for step in self.steps:
            if step.reason.value not in seen:
                seen.append(step.reason.value)
        return tuple(seen)

    def record(self) -> DecisionRecord:
        """The slice of this decision that later decisions need."""
        return DecisionRecord(
            time=self.time,
            serving_recommendation=self.serving_recommendation,
            total_recommendation=self.total_recommendation,
            replicas=self.replicas,
            placeholders=self.placeholders,
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, used for structured logs and result files."""
        return {
            "target": self.target,
            "time": self.time,
            "replicas": self.replicas,
            "placeholders": self.placeholders,
            "current_replicas": self.current_replicas,
            "current_placeholders": self.current_placeholders,
            "reason": self.reason.value,
            "placeholder_reason": self.placeholder_reason.value,
            "steps": [
                {"name": s.name, "value": s.value, "reason": s.reason.value, "detail": s.detail} for s in self.steps
            ],
            "serving_recommendation": self.serving_recommendation,
            "total_recommendation": self.total_recommendation,
            "observed_load": self.observed_load,
            "predicted_load_pod_horizon": self.predicted_load_pod_horizon,
            "predicted_load_node_horizon": self.predicted_load_node_horizon,
            "pod_horizon_seconds": self.pod_horizon_seconds,
            "node_horizon_seconds": self.node_horizon_seconds,
            "per_replica_capacity": self.per_replica_capacity,
            "data_ok": self.data_ok,
            "forecast_model": self.forecast_model,
        }
