"""The Prometheus boundary: the ``MetricsSource`` port over a real Prometheus server.

``PrometheusSource`` (:mod:`.source`) is what the commands build, from a
``PrometheusConnection`` (:mod:`.connection`, the one set of connection options). Below it:

* :mod:`.client` — ``PrometheusClient``: one query ended by its deadline, the bearer token,
  the breaker, our error types (``NotSent``);
* :mod:`.transport` — the HTTP adapter that bounds a call's time and its answer's size;
* :mod:`.answers` — the one place an answer is parsed (every field checked);
* :mod:`.promql` — PromQL literals, durations and selectors;
* :mod:`.queries` — the per-loop plan and the load-history expression; :mod:`.split` turns
  the batched answers into one snapshot per target;
* :mod:`.grid` — a range query onto a bucket grid (the load history, the backtest's series);
* :mod:`.recorded` — the backtest's recorded latency and replica expressions;
* :mod:`.signals` — kube-state-metrics' cluster signals (replicas, pending pods, GPU nodes);
* :mod:`.leadtimes` — the measured cold start.
"""

from autoscaler.adapters.prometheus.connection import PrometheusConnection
from autoscaler.adapters.prometheus.source import PrometheusSource

__all__ = ["PrometheusConnection", "PrometheusSource"]
