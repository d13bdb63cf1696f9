"""A range query onto a bucket grid: the one place a range answer becomes one value per bucket.

Why a module of its own: the load history (:meth:`PrometheusSource.load_history
<autoscaler.adapters.prometheus.source.PrometheusSource.load_history>`) and the backtest's
recorded latency and replicas (:mod:`autoscaler.adapters.prometheus.recorded`) read days of
range answers onto the same grid; one copy of the chunking, the index arithmetic and the
refusal of bad values keeps them on the same buckets.

Bucket convention: bucket ``k`` covers ``[t_k, t_k + step)`` with ``t_k = first + k * step``.
Rates and means over a bucket are evaluated at its end, replica counts (a state) at its
start. A bucket without an answer is NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from autoscaler.errors import MetricsInvalid


class RangeQuerier(Protocol):
    """Runs one range query (``PrometheusClient`` does)."""

    def range_query(
        self, name: str, expr: str, *, start: float, end: float, step: int
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """``(labels, [(time, value), ...])`` per series, every field checked; raises ``MetricsError``."""
        ...


def bucket_grid(start: float, end: float, step: int) -> tuple[int, int]:
    """First bucket start (a multiple of ``step`` at or after ``start``) and the bucket count.

    Buckets are whole: the last one ends at or before ``end``. Pure.
    """
    first = math.ceil(start / step) * step
    last = math.floor(end / step) * step - step
    return first, max(0, (last - first) // step + 1)


@dataclass(frozen=True)
class Buckets:
    """One range query's values on the grid, and how many in-grid values were refused."""

    values: NDArray[np.float64]
    """One value per bucket; NaN where the answer has no finite, non-negative value."""
    refused: int
    """Points inside the grid whose value was NaN, infinite or negative."""


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
) -> Buckets:
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
        The values, NaN where the answer has no finite, non-negative value (loads,
        latencies and replica counts are never negative: such a value is refused, not
        used), and the number of values refused.

    Raises:
        MetricsUnavailable: Prometheus did not answer or answered malformed.
        MetricsInvalid: the query was rejected or returned several series.
    """
    values = np.full(count, np.nan)
    refused = 0
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
            if not 0 <= idx < count:
                continue
            if not math.isfinite(value) or value < 0:
                refused += 1
                continue
            values[idx] = value
    return Buckets(values=values, refused=refused)
