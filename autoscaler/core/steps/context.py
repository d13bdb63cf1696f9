"""What every step of one decision reads: built once from the inputs of ``decide``, frozen.

Everything derived from the observation, the forecast and the policy that more than one
step needs (freshness, the lead times, the forecast peaks over both horizons, whether the
SLO is breached) is computed here once, so the steps stay small and agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.core.capacity import replicas_for
from autoscaler.core.forecast_view import ForecastView
from autoscaler.core.freshness import usable
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import ClusterState, DecisionRecord, MetricsSnapshot, Observation
from autoscaler.policy.schema import Target


@dataclass(frozen=True)
class Context:
    """The inputs of one decision and what the steps derive from them (see `build`).

    Attributes:
        target: The target's policy.
        cluster: What the API server said (authoritative replica counts).
        metrics: What the metrics source said.
        history: Earlier decisions of this target.
        now: The decision time.
        cap: Per-replica capacity in use (learned, or the policy's ``perReplica``).
        current: Serving replicas in the Deployment's spec.
        q: The forecast quantile sized for.
        stale: The newest sample is too old (or from the future) to act on.
        load: Observed load now; ``None`` when unknown or stale.
        waiting: Queued requests now; ``None`` when unknown or stale.
        placeholders_on: Placeholders are enabled with a non-zero maximum.
        pod_h: Seconds until a serving replica asked for now serves, plus a loop.
        node_h: Seconds until a replica on a brand-new node serves, plus a loop.
        predicted_pod: Forecast peak over ``pod_h`` at ``q`` (``None``: no forecast).
        predicted_node: Forecast peak over ``node_h`` at ``q`` (``None``: no forecast).
        latency: The SLO's latency signal now (``None``: unknown).
        breached: Fresh data shows the SLO breached.
    """

    target: Target
    cluster: ClusterState
    metrics: MetricsSnapshot
    history: Sequence[DecisionRecord]
    now: float
    cap: float
    current: int
    q: float
    stale: bool
    load: float | None
    waiting: float | None
    placeholders_on: bool
    pod_h: float
    node_h: float
    predicted_pod: float | None
    predicted_node: float | None
    latency: float | None
    breached: bool

    @property
    def zero_ok(self) -> bool:
        """Scale-to-zero is only ever considered when the policy allows zero replicas."""
        return self.target.scaling.min_replicas == 0

    @property
    def idle_forecast(self) -> float:
        """A forecast at or below this load (per second) counts as idle."""
        return self.target.scaling.idle_forecast_fraction * self.cap

    @property
    def idle_observed(self) -> float:
        """An observed load at or below this (per second) counts as no traffic."""
        return self.target.scaling.idle_observed_fraction * self.cap

    @property
    def data_ok(self) -> bool:
        """The observed load is known and fresh."""
        return self.load is not None

    def size(self, predicted: float) -> int:
        """Replicas for a predicted load; with minReplicas 0, an idle forecast needs none."""
        if self.zero_ok and predicted <= self.idle_forecast:
            return 0
        return replicas_for(predicted, self.cap)


def build(
    *,
    target: Target,
    observation: Observation,
    forecast: ForecastView | None,
    history: Sequence[DecisionRecord],
    now: float,
    loop_interval: float,
    lead_times: LeadTimes | None,
    per_replica_capacity: float | None,
) -> Context:
    """The context of one decision (the arguments are those of ``decide``). Pure."""
    cap = per_replica_capacity or target.capacity.per_replica
    lt = lead_times or LeadTimes.from_policy(target.cold_start)
    cluster, metrics = observation.cluster, observation.metrics
    q = target.forecast.quantile
    stale = not usable(metrics.newest_sample_time, now, stale_after=target.scaling.stale_after_seconds)
    placeholders_on = target.placeholders.enabled and target.placeholders.max > 0
    if not placeholders_on:
        pod_h = lt.total
    elif cluster.placeholders_cold > 0:
        pod_h = lt.pod_start_fresh
    else:
        pod_h = lt.pod_start_warm
    pod_h += loop_interval
    node_h = lt.total + loop_interval
    latency = metrics.latency_mean if target.slo.latency_signal == "mean" else metrics.latency_quantile
    return Context(
        target=target,
        cluster=cluster,
        metrics=metrics,
        history=history,
        now=now,
        cap=cap,
        current=cluster.spec_replicas,
        q=q,
        stale=stale,
        load=None if stale else metrics.load,
        waiting=None if stale else metrics.waiting,
        placeholders_on=placeholders_on,
        pod_h=pod_h,
        node_h=node_h,
        predicted_pod=_peak(forecast, q, now, now + pod_h),
        predicted_node=_peak(forecast, q, now, now + node_h),
        latency=latency,
        breached=not stale and latency is not None and latency > target.slo.latency_seconds,
    )


def _peak(forecast: ForecastView | None, q: float, start: float, end: float) -> float | None:
    """The forecast's ``q`` peak over [start, end]; ``None`` if absent or not a usable number."""
    if forecast is None:
        return None
    value = forecast.peak(quantile=q, start=start, end=end)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value
