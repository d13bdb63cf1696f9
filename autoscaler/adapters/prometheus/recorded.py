"""What a target's history looked like: recorded latency and replicas, bucketed for a backtest.

Why a module of its own: ``autoscaler backtest`` compares a policy with what actually
happened, so besides the load history (:meth:`PrometheusSource.load_history`) it needs the
recorded mean latency and the Deployment's replica counts over days, on the same bucket
grid. The live per-loop queries (:mod:`autoscaler.adapters.prometheus.queries`) are
instant, batched over all targets and return the *current* value; these are per-target
range queries over a past window, read onto the load history's bucket grid by
:func:`autoscaler.adapters.prometheus.grid.range_buckets` (its module states the bucket
convention). The expressions are built from the same selectors, so the backtest reads
exactly the series the controller reads.
"""

from __future__ import annotations

from autoscaler.adapters.prometheus.promql import duration_seconds, string, target_selector, vllm
from autoscaler.policy.formats import render_duration
from autoscaler.policy.schema import Target

#: kube-state-metrics gauges of a Deployment's replicas (desired, and available to serve).
SPEC_REPLICAS = "kube_deployment_spec_replicas"
AVAILABLE_REPLICAS = "kube_deployment_status_replicas_available"


def window_seconds(target: Target, step: float) -> float:
    """Range of the rate windows: the bucket itself, or ``rateWindow`` when that is longer.

    Same rule as ``queries.history_load``: at a bucket of at least the rate window every
    sample counts once; a finer bucket still needs two scrapes per window. Pure.
    """
    return max(float(step), duration_seconds(target.metrics.rate_window))


def latency_mean(target: Target, *, step: float) -> str:
    """Mean end-to-end latency (s) of the requests that completed in ``(t - window, t]``. Pure.

    ``rate(sum) / rate(count)`` of ``vllm:e2e_request_latency_seconds`` summed over the
    target's pods (both metric spellings); NaN when nothing completed (no value, not 0).
    """
    window = render_duration(window_seconds(target, step))
    sel = target_selector(target)
    total, count = (
        f"sum(rate({vllm(f'e2e_request_latency_seconds_{part}', sel)}[{window}]))" for part in ("sum", "count")
    )
    return f"{total} / {count}"


def deployment_replicas(target: Target, metric: str = SPEC_REPLICAS) -> str:
    """The Deployment's replica count from kube-state-metrics (``max`` over duplicate exporters). Pure."""
    return f"max({metric}{{namespace={string(target.namespace)}, deployment={string(target.deployment)}}})"
