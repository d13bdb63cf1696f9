"""A target's recorded history for ``autoscaler backtest``: fetched from Prometheus, and what it says happened.

:func:`fetch_recorded` pulls the arrival rate, mean latency, replicas and measured cold
start onto one bucket grid (:class:`Recorded`; missing data stays NaN, never zero);
:func:`recorded_row` turns it into the "recorded" row of the backtest's table.

What "recorded" means, and its assumptions (also printed in the report):

* **SLO attainment**: share of the load (weighted by the recorded arrival rate) in buckets
  whose recorded mean end-to-end latency is within ``slo.latencySeconds``. Buckets with no
  recorded load or latency (gaps) are left out, not counted as met or missed. Requests
  that never completed (time-outs at a gateway) are invisible to vLLM's histograms.
* **GPU node-hours**: integral of the Deployment's desired replicas
  (``kube_deployment_spec_replicas``; ``..._available`` if that is missing) times
  ``--nodes-per-replica`` (default 1: one replica per GPU node, as in the simulator).
  Across a gap in kube-state-metrics the last known count is held (nodes do not vanish
  when a scrape fails). Node provisioning and the cluster-autoscaler's idle tail are not
  in the Deployment's series, so this is a lower bound of the nodes billed; the ``replica-h``
  column gives every row on the same footing.
* **Scale events**: changes of the recorded desired replicas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from autoscaler.adapters.prometheus.grid import bucket_grid, range_buckets
from autoscaler.adapters.prometheus.recorded import (
    AVAILABLE_REPLICAS,
    SPEC_REPLICAS,
    deployment_replicas,
    latency_mean,
)
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.errors import MetricsEmpty
from autoscaler.offline.sim.engine import weighted_quantile
from autoscaler.policy.schema import Target

if TYPE_CHECKING:
    from autoscaler.adapters.prometheus import PrometheusSource


def iso(t: float) -> str:
    """``t`` (unix seconds) as ``YYYY-MM-DDTHH:MMZ``, as the report prints instants."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True)
class Recorded:
    """A target's recorded history on a regular bucket grid; NaN = no data (never 0)."""

    target: Target
    start: float
    step: float
    load: NDArray[np.float64]
    """Arrival rate per bucket in the policy's capacity unit per second."""
    latency: NDArray[np.float64]
    """Mean end-to-end latency (s) of the requests completed in the bucket."""
    spec_replicas: NDArray[np.float64]
    """Desired replicas at the bucket's start (kube-state-metrics)."""
    available_replicas: NDArray[np.float64]
    """Available replicas at the bucket's start (kube-state-metrics)."""
    lead_times: LeadTimes | None = None
    """Lead times measured from pod start-ups, or ``None`` when too few were recorded."""
    learned: Mapping[str, Any] | None = None
    """What the lead-time learner saw (sample counts, P90s)."""

    @property
    def size(self) -> int:
        """Number of buckets."""
        return int(self.load.size)

    def times(self) -> NDArray[np.float64]:
        """Start of every bucket (unix seconds)."""
        return self.start + self.step * np.arange(self.size, dtype=np.float64)

    def replicas(self) -> NDArray[np.float64]:
        """Desired replicas, or available ones where the desired count was not recorded."""
        return np.where(np.isfinite(self.spec_replicas), self.spec_replicas, self.available_replicas)

    def trimmed(self) -> Recorded:
        """The buckets from the first to the last one with recorded load (the data's extent)."""
        known = np.flatnonzero(np.isfinite(self.load))
        i, j = int(known[0]), int(known[-1]) + 1
        return dataclasses.replace(
            self,
            start=self.start + i * self.step,
            load=self.load[i:j],
            latency=self.latency[i:j],
            spec_replicas=self.spec_replicas[i:j],
            available_replicas=self.available_replicas[i:j],
        )


# ---------------------------------------------------------------------------- fetching


def fetch_recorded(source: PrometheusSource, target: Target, *, start: float, end: float, step: int) -> Recorded:
    """Pull the target's load, mean latency, replicas and measured cold start over ``[start, end)``.

    Args:
        source: The Prometheus source (its lead-time look-back should span the window).
        target: The target as the running policy describes it (pods, model, rate window).
        start: Window start (unix seconds).
        end: Window end.
        step: Bucket width in whole seconds.

    Returns:
        The recorded series, trimmed to the buckets between the first and last recorded load.

    Raises:
        MetricsEmpty: no load was recorded for the target in the window.
        MetricsUnavailable: Prometheus did not answer.
        MetricsInvalid: a query was rejected or returned several series.
    """
    first, count = bucket_grid(start, end, step)
    if count < 2:
        raise ValueError(f"the window [{iso(start)}, {iso(end)}) holds fewer than two {step} s buckets")
    try:
        history = source.load_history(target, start=first, end=first + (count - 1) * step, step=step)
    except MetricsEmpty:
        raise MetricsEmpty(
            f"no recorded load for {target.key} in Prometheus between {iso(start)} and {iso(end)} "
            f"(no vLLM series of pods {target.deployment}-<hash>-<suffix> in namespace {target.namespace}"
            + (f" with model_name {target.model_name}" if target.model_name else "")
            + ")"
        ) from None
    load = np.full(count, np.nan)
    idx = np.rint((history.timestamps() - first) / step).astype(np.int64)
    ok = (idx >= 0) & (idx < count)
    load[idx[ok]] = history.values[ok]
    client = source.client
    common = {"first": first, "count": count, "step": step, "max_points": source.max_points_per_query}
    latency = range_buckets(client, "latency_mean", latency_mean(target, step=step), at_end=True, **common).values
    spec = range_buckets(
        client, "spec_replicas", deployment_replicas(target, SPEC_REPLICAS), at_end=False, **common
    ).values
    available = range_buckets(
        client, "available_replicas", deployment_replicas(target, AVAILABLE_REPLICAS), at_end=False, **common
    ).values
    # The cluster's cold start is a fact about the cluster, learned whatever the policy's `learn` says.
    learner_target = dataclasses.replace(target, cold_start=dataclasses.replace(target.cold_start, learn=True))
    lead = source.lead_times(learner_target, end)
    learned = source.learned().get(target.key)
    recorded = Recorded(
        target=target,
        start=float(first),
        step=float(step),
        load=load,
        latency=latency,
        spec_replicas=spec,
        available_replicas=available,
        lead_times=lead,
        learned=learned,
    )
    return recorded.trimmed()


# ------------------------------------------------------------------ recorded reality


def hold(values: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Forward-fill NaN with the last known value (back-fill a leading gap); None if all NaN."""
    known = np.isfinite(values)
    if not known.any():
        return None
    idx = np.where(known, np.arange(values.size), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.flatnonzero(known)[0])
    return values[idx]


def recorded_row(
    recorded: Recorded, *, begin: int, slo_seconds: float, nodes_per_replica: float = 1.0
) -> dict[str, Any]:
    """What actually happened over the buckets from ``begin`` on, as a results-table row. Pure.

    See the module docstring for how each figure is computed and what it assumes.

    Args:
        recorded: The recorded series.
        begin: First bucket of the evaluated span (after the replays' warm-up).
        slo_seconds: The SLO's mean-latency bound.
        nodes_per_replica: GPU nodes one replica occupies.

    Returns:
        The row (``None`` for what the recording cannot tell: failed requests,
        placeholder events; and node-hours when no replica count was recorded), plus
        ``coverage_pct``: the share of buckets with both load and latency recorded.
    """
    load = recorded.load[begin:]
    latency = recorded.latency[begin:]
    known = np.isfinite(load) & np.isfinite(latency)
    weight = np.where(known, load, 0.0)
    total = float(weight.sum())
    met = float(weight[known & (latency <= slo_seconds + 1e-9)].sum())
    replicas = recorded.replicas()[begin:]
    held = hold(replicas)
    replica_hours = None if held is None else float(held.sum() * recorded.step / 3600.0)
    values = replicas[np.isfinite(replicas)]
    return {
        "policy": "recorded",
        "slo_attainment_pct": round(100.0 * met / total, 3) if total > 0 else None,
        "failed_requests": None,
        "gpu_node_hours": None if replica_hours is None else round(replica_hours * nodes_per_replica, 2),
        "replica_hours": None if replica_hours is None else round(replica_hours, 2),
        "scale_events": int(np.count_nonzero(np.diff(values))) if values.size else None,
        "placeholder_events": None,
        "p95_latency_ms": round(1000 * weighted_quantile(latency[known], load[known], 0.95), 1)
        if known.any()
        else None,
        "requests": round(float(np.nansum(load)) * recorded.step),
        "coverage_pct": round(100.0 * float(known.mean()), 2) if known.size else 0.0,
    }
