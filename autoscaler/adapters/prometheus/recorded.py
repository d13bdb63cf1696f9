"""What a target's history looked like: recorded latency and replicas, bucketed for a backtest.

Why a module of its own: ``autoscaler backtest`` compares a policy with what actually
happened, so besides the load history (:meth:`PrometheusSource.load_history`) it needs the
recorded mean latency and the Deployment's replica counts over days, on the same bucket
grid. The live per-loop queries (:mod:`autoscaler.adapters.prometheus.promql`) are instant, batched
over all targets and return the *current* value; these are per-target range queries over
a past window. The expressions are built from the same selectors, so the backtest reads
exactly the series the controller reads.

Bucket convention (same as ``load_history``): bucket ``k`` covers ``[t_k, t_k + step)``
with ``t_k = first + k * step``. Rates and means over a bucket are evaluated at its end,
replica counts (a state) at its start. A bucket without an answer is NaN, never 0.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from autoscaler.adapters.prometheus.promql import duration_seconds, string, target_selector, vllm
from autoscaler.errors import MetricsInvalid
from autoscaler.policy.formats import render_duration
from autoscaler.policy.schema import Target

#: kube-state-metrics gauges of a Deployment's replicas (desired, and available to serve).
SPEC_REPLICAS = "kube_deployment_spec_replicas"
AVAILABLE_REPLICAS = "kube_deployment_status_replicas_available"


class RangeQuerier(Protocol):
    """Runs one range query (``PrometheusClient`` does)."""

    def range_query(
        self, name: str, expr: str, *, start: float, end: float, step: int
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """``(labels, [(time, value), ...])`` per series, every field checked; raises ``MetricsError``."""
        ...


def window_seconds(target: Target, step: float) -> float:
    """Range of the rate windows: the bucket itself, or ``rateWindow`` when that is longer.

    Same rule as ``promql.history_load``: at a bucket of at least the rate window every
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


def bucket_grid(start: float, end: float, step: int) -> tuple[int, int]:
    """First bucket start (a multiple of ``step`` at or after ``start``) and the bucket count.

    Buckets are whole: the last one ends at or before ``end``. Pure.
    """
    first = math.ceil(start / step) * step
    last = math.floor(end / step) * step - step
    return first, max(0, (last - first) // step + 1)


def range_buckets(
    client: RangeQuerier,
    name: str,
    expr: str,
    *,
    first: int,
    count: int,
    step: int,
    at_end: bool,
    max_points: int = 11000,
) -> NDArray[np.float64]:
    """One value per bucket of the grid from a range query, chunked to ``max_points`` points.

    Args:
        client: Runs the range queries.
        name: What the query is for (errors and logs).
        expr: An expression with at most one series in its answer.
        first: Start of bucket 0 (unix seconds, a multiple of ``step``).
        count: Number of buckets.
        step: Bucket width in whole seconds.
        at_end: Evaluate each bucket at its end (rates, means) instead of its start (states).
        max_points: Largest range query (Prometheus refuses more than 11,000 points).

    Returns:
        The values; NaN where the answer has no finite, non-negative value (latencies and
        replica counts are never negative: such a value is refused, not used).

    Raises:
        MetricsUnavailable: Prometheus did not answer or answered malformed.
        MetricsInvalid: the query was rejected or returned several series.
    """
    values = np.full(count, np.nan)
    shift = step if at_end else 0
    for i0 in range(0, count, max_points):
        i1 = min(count, i0 + max_points)
        series = client.range_query(
            name, expr, start=first + i0 * step + shift, end=first + (i1 - 1) * step + shift, step=step
        )
        if len(series) > 1:
            raise MetricsInvalid(f"{name}: {len(series)} series where one was expected")
        for t, value in series[0][1] if series else ():
            idx = round((t - shift - first) / step)
            if 0 <= idx < count and math.isfinite(value) and value >= 0:
                values[idx] = value
    return values
