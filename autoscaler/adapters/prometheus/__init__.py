"""The Prometheus boundary: the ``MetricsSource`` port over a real Prometheus server.

``PrometheusSource`` (:mod:`.source`) is what the commands build, from a
``PrometheusConnection`` (:mod:`.connection`, the one set of connection options). Below it:

* :mod:`.transport` — the HTTP adapter that bounds a call's time and its answer's size;
* :mod:`.answers` — the one place an answer is parsed (every field checked);
* :mod:`.promql` — the queries and their per-target split;
* :mod:`.recorded` — the backtest's recorded latency and replica series;
* :mod:`.leadtimes` — the measured cold start.
"""

from autoscaler.adapters.prometheus.connection import PrometheusConnection
from autoscaler.adapters.prometheus.source import PrometheusSource

__all__ = ["PrometheusConnection", "PrometheusSource"]
