"""What the predictive controller is compared with, in the same simulated run.

* :class:`ReactiveHPA` — the seed's setup: prometheus-adapter's 1-minute mean e2e latency
  per pod, a 200 ms target, the HPA algorithm (10 % tolerance, 15 s sync, default
  scale-up behaviour, 5-minute scale-down stabilisation), ``maxReplicas`` = fleet size.
* :class:`PerfectForecast` — the oracle's forecast: the true future load. The oracle is
  the real controller fed this forecast and sized at the latency model's true capacity
  at the SLO, with no stabilisation: the cost lower bound for meeting the SLO when
  capacity must be asked for one cold start ahead.
* Static peak provisioning needs no class: the cluster is bootstrapped at peak size.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.typing import NDArray

from autoscaler.sim.adapters import TrafficRecord
from autoscaler.sim.cluster import SERVING, SimCluster


class ReactiveHPA:
    """The Kubernetes HPA algorithm on an average-latency Pods metric."""

    interval = 15.0

    def __init__(
        self,
        *,
        cluster: SimCluster,
        traffic: TrafficRecord,
        target_seconds: float,
        min_replicas: int,
        max_replicas: int,
        tolerance: float = 0.1,
        stabilization_seconds: float = 300.0,
        window_seconds: float = 60.0,
    ) -> None:
        self.cluster = cluster
        self.traffic = traffic
        self.target = target_seconds
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.tolerance = tolerance
        self.stabilization = stabilization_seconds
        self.window = window_seconds
        self.recommendations: deque[tuple[float, int]] = deque()
        self.scale_events: deque[tuple[float, int]] = deque()

    def tick(self, now: float) -> None:
        """One HPA sync: compute, stabilise, rate-limit, clamp, scale."""
        w = self.traffic.window(now, self.window)
        arrivals = self.traffic.arrivals[w]
        total = float(arrivals.sum())
        ready = self.cluster.ready(SERVING, now)
        current = self.cluster.desired[SERVING]
        if total <= 0 or ready == 0:
            return  # no metric: the HPA keeps the current scale
        metric = float((self.traffic.latency[w] * arrivals).sum() / total)
        ratio = metric / self.target
        desired = current if abs(ratio - 1.0) <= self.tolerance else math.ceil(ready * ratio)
        self.recommendations.append((now, desired))
        while self.recommendations and now - self.recommendations[0][0] > self.stabilization:
            self.recommendations.popleft()
        if desired < current:
            desired = min(current, max(r for _, r in self.recommendations))
        # Default HPA behaviour: up by max(4 pods, 100 %) per 15 s; down 100 % per 15 s.
        recent = [r for t, r in self.scale_events if now - t < 15.0]
        base = min([current, *recent])
        desired = min(desired, max(base + 4, 2 * base))
        desired = max(self.min_replicas, min(self.max_replicas, desired))
        if desired != current:
            self.cluster.scale(SERVING, desired, now)
            self.scale_events.append((now, desired))
            while self.scale_events and now - self.scale_events[0][0] > 60.0:
                self.scale_events.popleft()


class PerfectForecast:
    """A :class:`~autoscaler.core.forecast_view.ForecastView` that knows the future load."""

    def __init__(self, *, start: float, dt: float, rates: NDArray[np.float64]) -> None:
        self.start = start
        self.dt = dt
        self.rates = rates

    @property
    def model(self) -> str:
        """Label for logs."""
        return "oracle"

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """True highest load over the window (the quantile is irrelevant)."""
        i = max(0, int((start - self.start) / self.dt))
        j = min(len(self.rates), math.ceil((end - self.start) / self.dt) + 1)
        if j <= i:
            return None
        return float(self.rates[i:j].max())
