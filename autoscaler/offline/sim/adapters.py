"""The simulator's implementations of the controller's ports (metrics, cluster, clock).

They read and write the in-process :class:`~autoscaler.offline.sim.cluster.SimCluster` and the
traffic record kept by the engine, so the real :class:`~autoscaler.runtime.controller.Controller`
runs against the simulation exactly as it runs against Prometheus and Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import ClusterState, Decision, MetricsSnapshot
from autoscaler.offline.sim.cluster import PLACEHOLDER, SERVING, SimCluster
from autoscaler.policy.schema import Target
from autoscaler.ports import ApplyResult, ClusterRead
from models.series import Series


class VirtualClock:
    """A clock the engine moves forward; nothing ever waits on wall time."""

    def __init__(self, start: float) -> None:
        self.time = start

    def now(self) -> float:
        """The current virtual time."""
        return self.time


@dataclass
class TrafficRecord:
    """Per-step traffic the engine has simulated so far (what Prometheus would have scraped)."""

    start: float
    dt: float
    arrivals: NDArray[np.float64]
    latency: NDArray[np.float64]
    queue: NDArray[np.float64]
    concurrency: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    """Requests running plus waiting at the end of each step (vLLM's two gauges summed);
    zeros, one per step, when not given."""
    count: int = 0

    def __post_init__(self) -> None:
        if self.concurrency.size != self.arrivals.size:
            self.concurrency = np.zeros_like(self.arrivals)

    def window(self, now: float, seconds: float) -> slice:
        """Indices of the steps within the last ``seconds`` before ``now``."""
        end = min(self.count, round((now - self.start) / self.dt))
        begin = max(0, end - round(seconds / self.dt))
        return slice(begin, end)


class SimMetrics:
    """Metrics port: 1-minute rates and means of the simulated traffic, like rate(...[1m])."""

    def __init__(
        self, *, traffic: TrafficRecord, history: Series, window_seconds: float = 60.0
    ) -> None:
        self.traffic = traffic
        self.history = history
        self.window_seconds = window_seconds

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[str, MetricsSnapshot]:
        """Observed load (req/s), mean latency and queue over the last window."""
        out: dict[str, MetricsSnapshot] = {}
        for target in targets:
            w = self.traffic.window(now, self.window_seconds)
            arrivals = self.traffic.arrivals[w]
            if arrivals.size == 0:
                out[target.key] = MetricsSnapshot(time=now, problems={"load": "metrics_empty"})
                continue
            total = float(arrivals.sum())
            seconds = arrivals.size * self.traffic.dt
            latency = float((self.traffic.latency[w] * arrivals).sum() / total) if total > 0 else None
            out[target.key] = MetricsSnapshot(
                time=now,
                load=total / seconds,
                latency_mean=latency,
                waiting=float(self.traffic.queue[w][-1]),
                newest_sample_time=now,
            )
        return out

    def load_history(self, target: Target, *, start: float, end: float, step: float) -> Series:
        """History before the simulation started (the trace), bucketed to ``step``.

        A trace coarser than ``step`` is upsampled by repetition (each point's mean load
        holds over its whole interval), so timestamps stay true to the trace.
        """
        h = self.history
        if h.step > step:
            ratio = max(1, round(h.step / step))
            h = Series(start=h.start, step=h.step / ratio, values=np.repeat(h.values, ratio))
        factor = max(1, round(step / h.step))
        first = max(0, int(np.ceil((start - h.start) / h.step)))
        last = min(len(h.values), int((end - h.start) / h.step) + factor)
        values = h.values[first:last]
        usable = (len(values) // factor) * factor
        if usable == 0:
            return Series(start=start, step=step, values=np.array([]))
        values = values[len(values) - usable :].reshape(-1, factor).mean(axis=1)
        begin = h.start + (last - usable) * h.step
        return Series(start=begin, step=step, values=values)

    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """The simulator uses the policy's phases (they match the simulated ones)."""
        return None


class SimClusterPort:
    """Cluster port over :class:`SimCluster`: reads state, writes replica counts."""

    def __init__(self, cluster: SimCluster, clock: VirtualClock) -> None:
        self.sim = cluster
        self.clock = clock
        self.writes = 0

    def read(self, target: Target) -> ClusterRead:
        """Replica and node counts as the API server would report them (no handle: the simulator
        applies to the one simulated cluster whatever was read)."""
        now = self.clock.now()
        sim = self.sim
        warm, cold = sim.ready(PLACEHOLDER, now), sim.bound_not_ready(PLACEHOLDER, now)
        if sim.buffer:
            # A capacity buffer's node has no image: a serving pod there still pulls it.
            warm, cold = 0, warm + cold
        state = ClusterState(
            spec_replicas=sim.desired[SERVING],
            ready_replicas=sim.ready(SERVING, now),
            pending_replicas=sim.pending(SERVING),
            placeholder_replicas=sim.desired[PLACEHOLDER],
            placeholders_warm=warm,
            placeholders_cold=cold,
            placeholders_pending=sim.pending(PLACEHOLDER),
            nodes_ready=sim.nodes_ready(now),
            nodes_provisioning=sim.nodes_provisioning(now),
        )
        return ClusterRead(target=target.key, state=state)

    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        """Scale the serving and placeholder Deployments when they differ."""
        now = self.clock.now()
        wrote_r = decision.replicas != self.sim.desired[SERVING]
        wrote_p = decision.placeholders != self.sim.desired[PLACEHOLDER]
        if wrote_r:
            self.sim.scale(SERVING, decision.replicas, now)
        if wrote_p:
            self.sim.scale(PLACEHOLDER, decision.placeholders, now)
        self.writes += int(wrote_r) + int(wrote_p)
        return ApplyResult(wrote_replicas=wrote_r, wrote_placeholders=wrote_p)
