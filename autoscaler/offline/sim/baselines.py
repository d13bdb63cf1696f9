"""What the predictive controller is compared with, in the same simulated run.

Each is something a platform team can run without us:

* :class:`ReactiveHPA` — the seed's setup: prometheus-adapter's 1-minute mean e2e latency
  per pod as a Pods metric, a 200 ms target, ``maxReplicas`` = fleet size.
* :class:`ConcurrencyHPA` — what KEDA users set up: an External metric ``sum(running +
  waiting)`` over the serving pods with an ``averageValue`` target of 20 per replica
  (Little's law: 80 % of 250 req/s x 0.1 s).
* :class:`NaiveSeasonal` — "yesterday's load" as the forecast: the demand one day earlier
  over the next lead time, sized at 80 % of saturation, no placeholders.
* :class:`PerfectForecast` — the oracle's forecast: the true future load. The oracle is
  the real controller fed this forecast and sized at the latency model's true capacity
  at the SLO, with no stabilisation: the cost lower bound for meeting the SLO when
  capacity must be asked for one cold start ahead.
* Static peak provisioning needs no class: the cluster is bootstrapped at peak size.

Both HPAs share :class:`HPAAlgorithm`, one copy of the upstream replica calculation with
the defaults of ``autoscaling/v2``: 15 s sync, 10 % tolerance, scale-up by max(+100 %,
+4 pods) per 15 s, scale-down by up to 100 % per 15 s after a 300 s stabilisation window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.sim.adapters import TrafficRecord
from autoscaler.offline.sim.cluster import SERVING, SimCluster
from models.series import Series

#: The seed HPA's scaling target (prometheus-adapter mean e2e latency). Not an SLO: the
#: operators' requirement is one second; 200 ms is where that setup starts adding pods.
SEED_HPA_TARGET_SECONDS = 0.2
#: KEDA-style concurrency target per replica: 80 % of 250 req/s x 0.1 s of service time.
CONCURRENCY_TARGET_PER_REPLICA = 20.0
#: Naive seasonal sizes each replica at this fraction of its saturation rate.
NAIVE_SEASONAL_UTILISATION = 0.8
DAY = 86400.0
HOUR = 3600.0


class HPAAlgorithm:
    """The HPA's desired-replica normalisation: tolerance, stabilisation, rate limits, bounds.

    ``metric`` returns ``(usage ratio, raw desired replicas)`` for the current sync, or
    ``None`` when the metric is unavailable (the HPA then keeps the current scale).
    """

    interval = 15.0

    def __init__(
        self,
        *,
        cluster: SimCluster,
        metric: Callable[[float], tuple[float, int] | None],
        min_replicas: int,
        max_replicas: int,
        tolerance: float = 0.1,
        stabilization_seconds: float = 300.0,
    ) -> None:
        self.cluster = cluster
        self.metric = metric
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.tolerance = tolerance
        self.stabilization = stabilization_seconds
        self.recommendations: deque[tuple[float, int]] = deque()
        self.scale_events: deque[tuple[float, int]] = deque()

    def tick(self, now: float) -> None:
        """One HPA sync: compute, stabilise, rate-limit, clamp, scale."""
        current = self.cluster.desired[SERVING]
        reading = self.metric(now)
        if reading is None:
            return
        ratio, raw = reading
        desired = current if abs(ratio - 1.0) <= self.tolerance else raw
        self.recommendations.append((now, desired))
        while self.recommendations and now - self.recommendations[0][0] > self.stabilization:
            self.recommendations.popleft()
        if desired < current:
            desired = min(current, max(r for _, r in self.recommendations))
        # Default behaviour: up by max(4 pods, 100 %) per 15 s; down 100 % per 15 s.
        recent = [r for t, r in self.scale_events if now - t < 15.0]
        base = min([current, *recent])
        desired = min(desired, max(base + 4, 2 * base))
        desired = max(self.min_replicas, min(self.max_replicas, desired))
        if desired != current:
            self.cluster.scale(SERVING, desired, now)
            self.scale_events.append((now, desired))
            while self.scale_events and now - self.scale_events[0][0] > 60.0:
                self.scale_events.popleft()


class ReactiveHPA(HPAAlgorithm):
    """The HPA on an average-latency Pods metric (the seed's setup)."""

    def __init__(
        self,
        *,
        cluster: SimCluster,
        traffic: TrafficRecord,
        target_seconds: float,
        min_replicas: int,
        max_replicas: int,
        window_seconds: float = 60.0,
    ) -> None:
        self.traffic = traffic
        self.target = target_seconds
        self.window = window_seconds
        super().__init__(cluster=cluster, metric=self._latency, min_replicas=min_replicas, max_replicas=max_replicas)

    def _latency(self, now: float) -> tuple[float, int] | None:
        """Request-weighted mean latency of the last window over the ready pods."""
        w = self.traffic.window(now, self.window)
        arrivals = self.traffic.arrivals[w]
        total = float(arrivals.sum())
        ready = self.cluster.ready(SERVING, now)
        if total <= 0 or ready == 0:
            return None  # no samples: the HPA keeps the current scale
        ratio = float((self.traffic.latency[w] * arrivals).sum() / total) / self.target
        return ratio, math.ceil(ready * ratio)


class ConcurrencyHPA(HPAAlgorithm):
    """The HPA on an External ``sum(running + waiting)`` metric with an averageValue target."""

    def __init__(
        self,
        *,
        cluster: SimCluster,
        traffic: TrafficRecord,
        min_replicas: int,
        max_replicas: int,
        target_per_replica: float = CONCURRENCY_TARGET_PER_REPLICA,
    ) -> None:
        self.traffic = traffic
        self.target = target_per_replica
        super().__init__(
            cluster=cluster, metric=self._concurrency, min_replicas=min_replicas, max_replicas=max_replicas
        )

    def _concurrency(self, now: float) -> tuple[float, int] | None:
        """Upstream's external per-pod rule: ratio over the current replicas, desired = ceil(sum / target)."""
        w = self.traffic.window(now, self.traffic.dt)
        if w.stop <= w.start:
            return None
        usage = float(self.traffic.concurrency[w.stop - 1])
        current = max(1, self.cluster.desired[SERVING])
        return usage / (self.target * current), math.ceil(usage / self.target)


class NaiveSeasonal:
    """Serving replicas for yesterday's demand over the next lead time; no placeholders.

    Demand is completed plus failed requests (the arrivals). The forecast at ``now`` is
    the highest demand one day earlier over ``[now, now + lead]``, or the last hour's
    highest while less than a day is known; it is never below the last 10 minutes'
    highest plus the queue drained in a minute. Each replica is sized at 80 % of its
    saturation rate.
    """

    interval = 15.0

    def __init__(
        self,
        *,
        cluster: SimCluster,
        traffic: TrafficRecord,
        history: Series,
        lead_seconds: float,
        saturation_rps: float,
        min_replicas: int,
        max_replicas: int,
    ) -> None:
        self.cluster = cluster
        self.traffic = traffic
        self.history = history
        self.lead = lead_seconds
        self.per_replica = NAIVE_SEASONAL_UTILISATION * saturation_rps
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        known = history.values[np.isfinite(history.values)]
        self.first_known = history.start if known.size else traffic.start

    def _peak(self, start: float, end: float) -> float:
        """Highest demand (req/s) seen over ``[start, end)``, from the warm-up history and the run."""
        peak = 0.0
        h = self.history
        if len(h) and start < h.end + h.step:
            i = max(0, int((start - h.start) // h.step))
            j = min(len(h), math.ceil((end - h.start) / h.step))
            values = h.values[i:j]
            values = values[np.isfinite(values)]
            if values.size:
                peak = float(values.max())
        t = self.traffic
        i = max(0, int((start - t.start) // t.dt))
        j = min(t.count, math.ceil((end - t.start) / t.dt))
        if j > i:
            peak = max(peak, float(t.arrivals[i:j].max()) / t.dt)
        return peak

    def tick(self, now: float) -> None:
        """Set the serving replicas for the forecast."""
        if now - self.first_known >= DAY:
            forecast = self._peak(now - DAY, now - DAY + self.lead)
        else:
            forecast = self._peak(now - HOUR, now)
        w = self.traffic.window(now, 600.0)
        queue = float(self.traffic.queue[w.stop - 1]) if w.stop > w.start else 0.0
        floor = self._peak(now - 600.0, now) + queue / 60.0
        need = math.ceil(max(forecast, floor) / self.per_replica - 1e-9)
        desired = max(self.min_replicas, min(self.max_replicas, need))
        if desired != self.cluster.desired[SERVING]:
            self.cluster.scale(SERVING, desired, now)


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
