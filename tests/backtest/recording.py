"""Write a known "what actually happened" into Prometheus as vLLM and kube-state-metrics series.

Why: the backtest reads a target's past from the series a real cluster leaves behind
(vLLM's request counters, latency histogram sums, in-flight gauges; kube-state-metrics'
Deployment replicas and pod lifecycle timestamps). To check it against ground truth, the
truth (per-bucket arrival rate, mean latency, replicas) is turned into exactly those
series here, sampled like a scrape every ``sample_interval`` seconds, and backfilled into
a real Prometheus with :func:`tests.prom.backfill.backfill`. Used by the backtest tests and
by ``benchmarks/bench_backtest.py``.

How the vLLM series encode the truth (so that PromQL gives it back exactly):

* arrivals ``A(t)`` grow linearly inside each bucket at the bucket's rate;
* requests in flight ``I(t)`` follow Little's law (rate x latency) at bucket starts and are
  linear in between; ``completed = A - I`` (the success counter), so the flow-conservation
  arrival estimate ``rate(completed) + deriv(running) + deriv(waiting)`` returns the rate;
* every request completing inside bucket ``b`` has latency ``L_b``, so
  ``rate(e2e_sum) / rate(e2e_count)`` over the bucket returns ``L_b``.

Series are split over ``pods`` by fixed shares (the pod layout does not encode the replica
count; kube-state-metrics does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.sim.latency import LatencyModel
from tests.prom.backfill import Series

FloatArray = NDArray[np.float64]


def pod_name(deployment: str, suffix: str) -> str:
    """A ReplicaSet-style pod name of ``deployment`` (5-character ``suffix``)."""
    return f"{deployment}-7d9f8c6b5-{suffix}"


@dataclass
class Truth:
    """What happened, per bucket ``[start + k*step, start + (k+1)*step)``."""

    start: float
    step: float
    load: FloatArray
    """Arrival rate (req/s)."""
    latency: FloatArray
    """Mean end-to-end latency (s) of the requests of the bucket."""
    spec: FloatArray
    """Desired replicas (kube_deployment_spec_replicas) during the bucket."""
    available: FloatArray
    """Available replicas during the bucket."""

    @property
    def size(self) -> int:
        """Number of buckets."""
        return int(self.load.size)

    @property
    def end(self) -> float:
        """End of the last bucket."""
        return self.start + self.size * self.step

    def index(self, t: float) -> int:
        """Bucket holding time ``t``."""
        return round((t - self.start) / self.step)


def reactive_truth(
    load: FloatArray,
    *,
    start: float,
    step: float = 60.0,
    per_replica: float = 200.0,
    lag_buckets: int = 3,
    stabilisation_buckets: int = 10,
    cold_start_buckets: int = 16,
    latency: LatencyModel | None = None,
) -> Truth:
    """A plausible history of a reactively scaled Deployment serving ``load``.

    Desired replicas follow the load ``lag_buckets`` late (metric windows and sync), with a
    scale-down stabilisation window; a new replica becomes available one cold start after it
    was asked for, a removed one at once. Latency comes from the simulator's per-replica
    latency model with a fluid queue, so ramps that outrun the cold start miss the SLO.
    """
    model = latency or LatencyModel()
    need = np.maximum(1.0, np.ceil(load / per_replica))
    n = load.size
    spec = np.empty(n)
    for i in range(n):
        lagged = need[max(0, i - lag_buckets - stabilisation_buckets) : max(1, i - lag_buckets + 1)]
        spec[i] = float(lagged.max())
    available = np.array([min(spec[i], spec[max(0, i - cold_start_buckets)]) for i in range(n)])
    lat = np.empty(n)
    queue = 0.0
    for i in range(n):
        out = model.step(arrivals=float(load[i]) * step, replicas=int(available[i]), queue=queue, dt=step)
        queue = out.queue
        lat[i] = out.latency
    return Truth(start=start, step=step, load=load, latency=lat, spec=spec, available=available)


def vllm_series(
    truth: Truth,
    *,
    namespace: str,
    deployment: str,
    model_name: str,
    pods: Sequence[str] = ("a1b2c", "d3e4f"),
    shares: Sequence[float] = (0.6, 0.4),
    sample_interval: float = 30.0,
    gaps: Sequence[tuple[float, float]] = (),
    max_num_seqs: int = 256,
) -> list[Series]:
    """The target's vLLM series (see the module docstring); samples strictly inside a gap are dropped."""
    per_bucket = round(truth.step / sample_interval)
    if not math.isclose(per_bucket * sample_interval, truth.step):
        raise ValueError("the bucket must hold a whole number of sample intervals")
    ts = truth.start + sample_interval * np.arange(truth.size * per_bucket + 1, dtype=np.float64)
    bounds = truth.start + truth.step * np.arange(truth.size + 1, dtype=np.float64)
    arrived = np.interp(ts, bounds, np.concatenate(([0.0], np.cumsum(truth.load * truth.step))))
    in_flight_at = np.concatenate((truth.load * truth.latency, [truth.load[-1] * truth.latency[-1]]))
    in_flight = np.interp(ts, bounds, in_flight_at)
    # the requests in flight at the start completed earlier; the counter never decreases
    completed = np.maximum.accumulate(arrived - in_flight + in_flight[0])
    bucket = np.minimum((np.arange(ts.size - 1) // per_bucket), truth.size - 1)
    latency_sum = np.concatenate(([0.0], np.cumsum(np.diff(completed) * truth.latency[bucket])))
    keep = np.ones(ts.size, dtype=bool)
    for g0, g1 in gaps:
        keep &= ~((ts > g0) & (ts < g1))
    weights = np.asarray(shares, dtype=np.float64) / float(np.sum(shares))
    out: list[Series] = []
    for suffix, share in zip(pods, weights, strict=True):
        pod = pod_name(deployment, suffix)
        labels = {
            "namespace": namespace,
            "pod": pod,
            "model_name": model_name,
            "engine": "0",
            "job": "vllm",
            "instance": f"{pod}:8000",
        }
        flight = share * in_flight
        running = np.minimum(flight, max_num_seqs)
        for name, values, kind in (
            ("vllm:e2e_request_latency_seconds_count", share * completed, "unknown"),
            ("vllm:e2e_request_latency_seconds_sum", share * latency_sum, "unknown"),
            ("vllm:num_requests_running", running, "gauge"),
            ("vllm:num_requests_waiting", flight - running, "gauge"),
        ):
            out.append((name, labels, ts[keep], values[keep], kind))
        out.append(
            (
                "vllm:request_success_total",
                {**labels, "finished_reason": "stop"},
                ts[keep],
                (share * completed)[keep],
                "counter",
            )
        )
    return out


def replica_series(
    truth: Truth,
    *,
    namespace: str,
    deployment: str,
    sample_interval: float = 30.0,
    gaps: Sequence[tuple[float, float]] = (),
) -> list[Series]:
    """kube-state-metrics' desired and available replicas, sampled every ``sample_interval``."""
    ts = np.arange(truth.start, truth.end + 1e-9, sample_interval, dtype=np.float64)
    idx = np.minimum(((ts - truth.start) // truth.step).astype(np.int64), truth.size - 1)
    keep = np.ones(ts.size, dtype=bool)
    for g0, g1 in gaps:
        keep &= ~((ts > g0) & (ts < g1))
    labels = {"namespace": namespace, "deployment": deployment, "job": "kube-state-metrics"}
    return [
        ("kube_deployment_spec_replicas", labels, ts[keep], truth.spec[idx][keep], "gauge"),
        ("kube_deployment_status_replicas_available", labels, ts[keep], truth.available[idx][keep], "gauge"),
    ]


@dataclass(frozen=True)
class PodStartup:
    """One pod's recorded start-up (unix seconds) and the node it landed on."""

    suffix: str
    created: float
    scheduled: float
    ready: float
    node: str


def lifecycle_series(
    starts: Sequence[PodStartup], *, namespace: str, deployment: str, until: float, sample_interval: float = 60.0
) -> list[Series]:
    """kube-state-metrics pod timestamps (``kube_pod_created`` ...) and ``kube_pod_info``, from creation on."""
    out: list[Series] = []
    for s in starts:
        pod = pod_name(deployment, s.suffix)
        labels = {"namespace": namespace, "pod": pod, "uid": f"uid-{s.suffix}", "job": "kube-state-metrics"}
        ts = np.arange(math.ceil(s.created / sample_interval) * sample_interval, until, sample_interval)
        for name, value, t0 in (
            ("kube_pod_created", s.created, s.created),
            ("kube_pod_status_scheduled_time", s.scheduled, s.scheduled),
            ("kube_pod_status_ready_time", s.ready, s.ready),
        ):
            t = ts[ts >= t0]
            out.append((name, labels, t, np.full(t.size, value), "gauge"))
        t = ts[ts >= s.scheduled]
        out.append(("kube_pod_info", {**labels, "node": s.node}, t, np.ones(t.size), "gauge"))
    return out
