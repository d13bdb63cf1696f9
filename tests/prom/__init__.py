"""Real-Prometheus test harness.

Why this package exists: the autoscaler's Prometheus source must be tested
against the real query engine (PromQL `rate`, `histogram_quantile`, label
rewriting on scrape, staleness, HTTP API error shapes), not against a mock
that only echoes what the test author believed Prometheus does. The pieces:

- :mod:`tests.prom.server`: start/stop a real ``prometheus`` (Debian 2.42)
  on a random loopback port with a generated scrape config.
- :mod:`tests.prom.backfill`: write days of history into the TSDB *before*
  the server starts, with ``promtool tsdb create-blocks-from openmetrics``,
  and a synthetic vLLM history generator that keeps its ground truth.
- :mod:`tests.prom.exporters`: hand-written text-format exporters for
  vLLM, DCGM and kube-state-metrics whose state the test sets.
- :mod:`tests.prom.faultproxy`: a fault-injecting loopback reverse proxy
  (503s, garbage, delays, dropped connections) for Prometheus or the
  Kubernetes API server.
"""
