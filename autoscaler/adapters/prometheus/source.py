"""The controller's ``MetricsSource`` port over a real Prometheus (vLLM, DCGM, kube-state-metrics).

Why: the control loop needs load, latency, saturation and GPU signals per target every
cycle, the load history on start-up and the measured cold start, and it must be able to
tell "unknown" from "zero". This module turns PromQL answers into those values and turns
every bad answer (connection refused, timeout, 5xx, malformed JSON, no series, NaN/Inf,
several series where one was expected, stale samples) into ``None`` plus a ``problems``
entry, or into our :mod:`autoscaler.errors` types. It never reports a missing value as 0.

Cost: one query per signal for ALL targets (see :mod:`autoscaler.adapters.prometheus.queries`), split
per target in Python, so a loop costs the same ~14 queries for 1 or 1,000 targets (plus
one per target with an ``arrivalRateQuery`` override, sent a few at a time).

Time: every call ends by its timeout and the first transport failure opens a breaker
until the next loop (:mod:`autoscaler.adapters.prometheus.client`); one loop's queries
share a budget (``loop_budget_seconds``). Every answer is read through
:mod:`autoscaler.adapters.prometheus.answers`, which refuses anything the HTTP API does not
document.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from autoscaler.adapters.prometheus import queries, signals, split
from autoscaler.adapters.prometheus.answers import Answer
from autoscaler.adapters.prometheus.client import NotSent, PrometheusClient, transport_failure
from autoscaler.adapters.prometheus.connection import PrometheusConnection
from autoscaler.adapters.prometheus.grid import range_buckets
from autoscaler.adapters.prometheus.leadtimes import LeadTimeLearner
from autoscaler.adapters.prometheus.queries import Query
from autoscaler.adapters.prometheus.signals import ClusterSignals
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import MetricsSnapshot
from autoscaler.errors import MetricsEmpty, MetricsError
from autoscaler.policy.schema import Target
from models.series import Series

#: ``arrivalRateQuery`` overrides (one query per target) sent at once at most.
OVERRIDE_CONCURRENCY = 8


@dataclass
class LoopStats:
    """What the last :meth:`PrometheusSource.observe` call cost and what failed.

    ``queries`` counts the queries sent (after a transport failure the rest are skipped),
    ``responded`` those Prometheus answered at all (with data, an HTTP error or junk),
    ``answered`` those that gave a usable answer; ``failed`` maps a query's signal to its
    error kind, ``first_error`` is the first failure's message; ``details`` the reason per
    unknown field per target.
    """

    time: float = 0.0
    targets: int = 0
    queries: int = 0
    responded: int = 0
    answered: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    first_error: str | None = None
    details: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def unreachable(self) -> bool:
        """True when the loop sent queries and Prometheus answered none of them at all."""
        return self.queries > 0 and self.responded == 0

    @property
    def useless(self) -> bool:
        """True when the loop sent queries and none got a usable answer (errors or junk only)."""
        return self.queries > 0 and self.answered == 0

    def problem(self, url: str) -> str | None:
        """A one-line description of a loop in which Prometheus gave nothing usable, else ``None``."""
        if self.unreachable:
            return f"Prometheus at {url} did not answer any query ({self.first_error})"
        if self.useless:
            return f"Prometheus at {url} answered every query with an error or an unusable answer ({self.first_error})"
        return None


class PrometheusSource:
    """Implements :class:`autoscaler.ports.MetricsSource` against one Prometheus server.

    Args:
        url: Base URL, e.g. ``https://prometheus.monitoring:9090``.
        bearer_token_file: File holding a bearer token (re-read when it changes).
        ca_file: PEM bundle to verify the server with (instead of the system CAs).
        verify_tls: Verify the server's certificate (keep on outside tests).
        timeout_seconds: Per-query timeout, client and server side: the whole call, however
            the server trickles its answer.
        loop_budget_seconds: Time all queries of one :meth:`observe` may take together
            (default twice ``timeout_seconds``); queries not sent by then are unknown.
        max_points_per_query: Largest range query (Prometheus refuses above 11,000 points).
        clock_skew_tolerance_seconds: Slack between our clock and the scrape timestamps
            before a sample counts as older than ``staleAfterSeconds``.
        lead_time_lookback_seconds: Look-back of the measured cold start.
        lead_time_refresh_seconds: Lead times are re-learned at most this often.
        node_wait_threshold_seconds: A pod waiting longer than this for a node "waited".
        placeholder_suffix: ``<deployment><suffix>`` is the target's placeholder Deployment.
        log: A structlog-style logger (default: ``structlog.get_logger``).
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        verify_tls: bool = True,
        timeout_seconds: float = 10.0,
        loop_budget_seconds: float | None = None,
        max_points_per_query: int = 11000,
        clock_skew_tolerance_seconds: float = 5.0,
        lead_time_lookback_seconds: float = 7 * 86400.0,
        lead_time_refresh_seconds: float = 300.0,
        node_wait_threshold_seconds: float = 30.0,
        placeholder_suffix: str = "-capacity",
        log: Any = None,
    ) -> None:
        self.client = PrometheusClient(
            url,
            bearer_token_file=bearer_token_file,
            ca_file=ca_file,
            verify_tls=verify_tls,
            timeout_seconds=timeout_seconds,
        )
        self.loop_budget_seconds = 2 * timeout_seconds if loop_budget_seconds is None else loop_budget_seconds
        self.max_points_per_query = max_points_per_query
        self.clock_skew_tolerance_seconds = clock_skew_tolerance_seconds
        self.log = log if log is not None else structlog.get_logger("autoscaler.prometheus")
        if not verify_tls and ca_file is None:
            self.log.warning("prometheus_tls_unverified", url=self.client.url)
        self.last_loop = LoopStats()
        self._learner = LeadTimeLearner(
            self.client,
            lookback_seconds=lead_time_lookback_seconds,
            refresh_seconds=lead_time_refresh_seconds,
            wait_threshold_seconds=node_wait_threshold_seconds,
            placeholder_suffix=placeholder_suffix,
            log=self.log,
        )

    @classmethod
    def connect(cls, connection: PrometheusConnection, **settings: Any) -> PrometheusSource:
        """A source for ``connection`` (the CLI's connection options); ``settings`` are the other arguments."""
        return cls(
            connection.url,
            bearer_token_file=connection.bearer_token_file,
            ca_file=connection.ca_file,
            verify_tls=connection.verify_tls,
            timeout_seconds=connection.timeout_seconds,
            **settings,
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self.client.close()

    # ----------------------------------------------------------------- observe
    def observe(self, targets: Sequence[Target], now: float) -> dict[str, MetricsSnapshot]:
        """Current signals per target; a failed signal is ``None`` with its kind in ``problems``.

        Runs the batched per-loop plan once for all targets (plus one query per
        ``arrivalRateQuery`` override). Signals of a target whose vLLM series are gone, or
        whose newest sample is older than ``staleAfterSeconds``, are all unknown. The
        query count, time and failures are kept in :attr:`last_loop`.

        Args:
            targets: The targets to observe.
            now: Evaluation time (unix seconds): the present, or a past time in a backtest.

        Returns:
            A snapshot per ``Target.key``. Never raises: when Prometheus is unreachable
            every signal is unknown with kind ``metrics_unavailable``.
        """
        started, before = time.perf_counter(), self.client.queries
        budget_end = time.monotonic() + self.loop_budget_seconds
        self.client.reset_breaker()  # a new loop: probe Prometheus again
        targets = list(targets)
        self._learner.remember(targets)
        stats = LoopStats(time=now, targets=len(targets))
        if not targets:
            self.last_loop = stats
            return {}
        need_arrivals = any(t.capacity.unit == "requests" and not t.metrics.arrival_rate_query for t in targets)
        plan = queries.loop_queries(targets, need_arrivals=need_arrivals)
        overrides = [
            Query("arrival_rate_query", t.metrics.arrival_rate_query, window=t.key)
            for t in targets
            if t.metrics.arrival_rate_query
        ]
        results: dict[tuple[str, str | None, float | None], Answer] = {}
        for query in plan:
            results[query.key] = self._loop_query(query, now=now, budget_end=budget_end)
        if overrides:
            with ThreadPoolExecutor(max_workers=OVERRIDE_CONCURRENCY, thread_name_prefix="prom-override") as pool:
                done = pool.map(lambda q: (q, self._loop_query(q, now=now, budget_end=budget_end)), overrides)
                results.update((q.key, answer) for q, answer in done)
        for query in (*plan, *overrides):
            self._count(stats, query, results[query.key])
        out = {}
        for target in targets:
            out[target.key], details = split.snapshot(
                target, results, now=now, stale_slack=self.clock_skew_tolerance_seconds
            )
            if details:
                stats.details[target.key] = details
        stats.queries = self.client.queries - before
        stats.seconds = time.perf_counter() - started
        self.last_loop = stats
        self.log.debug("metrics_observed", targets=stats.targets, queries=stats.queries, seconds=stats.seconds)
        return out

    def _loop_query(self, query: Query, *, now: float, budget_end: float) -> Answer:
        """One query of a loop within what is left of its budget; its samples or the error."""
        left = budget_end - time.monotonic()
        if left <= 0:
            return NotSent(f"{query.signal}: not sent: the loop's {self.loop_budget_seconds:g}s budget is spent")
        try:
            return self.client.instant(query.signal, query.expr, at=now, timeout=left)
        except MetricsError as exc:
            return exc

    def _count(self, stats: LoopStats, query: Query, answer: Answer) -> None:
        if not isinstance(answer, MetricsError):
            stats.answered += 1
            stats.responded += 1
            return
        if isinstance(answer, NotSent):
            return  # skipped (breaker open or budget spent): neither a failure of its own nor an answer
        stats.failed[query.signal] = answer.kind
        stats.first_error = stats.first_error or str(answer)
        if not transport_failure(answer):
            stats.responded += 1
        self.log.warning("prometheus_query_failed", signal=query.signal, kind=answer.kind, error=str(answer))

    # ----------------------------------------------------------------- history
    def load_history(self, target: Target, *, start: float, end: float, step: float) -> Series:
        """The target's mean load per bucket ``[t, t + step)`` on a grid of multiples of ``step``.

        Buckets with no data, or whose end is still in the future, are NaN (never 0); so are
        buckets whose value is NaN, infinite or negative (refused like a negative live
        signal, and counted in the ``history_values_refused`` warning). Range queries are
        chunked to at most ``max_points_per_query`` points each. A malformed answer fails
        this target's history only (:class:`~autoscaler.errors.MetricsMalformed`).

        Args:
            target: The target.
            start: First bucket start wanted (rounded up to a multiple of ``step``).
            end: Last bucket start wanted (rounded down).
            step: Bucket width in whole seconds.

        Returns:
            The load series in the policy's capacity unit.

        Raises:
            ValueError: if ``step`` is not a whole number of seconds >= 1.
            MetricsUnavailable: Prometheus did not answer (or the breaker is open).
            MetricsMalformed: an answer that is not a valid range-query answer.
            MetricsInvalid: the query was rejected or returned several series.
            MetricsEmpty: no bucket has data.
        """
        if step < 1 or step != int(step):
            raise ValueError(f"step must be whole seconds >= 1, got {step!r}")
        istep = int(step)
        first = math.ceil(start / istep) * istep
        last = min(math.floor(end / istep) * istep, math.floor((time.time() - istep) / istep) * istep)
        n = max(0, (last - first) // istep + 1)
        expr = queries.history_load(target, step=istep)
        buckets = range_buckets(
            self.client,
            "load_history",
            expr,
            first=first,
            count=n,
            step=istep,
            at_end=True,
            max_points=self.max_points_per_query,
        )
        values = buckets.values
        if buckets.refused:
            self.log.warning("history_values_refused", target=target.key, buckets=buckets.refused,
                             reason="NaN, infinite or negative load")  # fmt: skip
        if np.isnan(values).all():
            raise MetricsEmpty(f"load_history: no data for {target.key} in the requested range")
        return Series(start=float(first), step=float(istep), values=values)

    # -------------------------------------------------------------- lead times
    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """Measured lead times (P90s over the look-back), or ``None`` until enough start-ups.

        See :mod:`autoscaler.adapters.prometheus.leadtimes` for how measurements map onto the three
        lead times. Results are cached; all known targets are re-learned together at most
        every ``lead_time_refresh_seconds``.

        Args:
            target: The target.
            now: Evaluation time (unix seconds).

        Returns:
            The lead times, or ``None`` below ``learnMinSamples`` start-ups, when
            ``coldStart.learn`` is off (what was measured is still in :meth:`learned`) or
            when nothing could be read yet. Never raises.
        """
        measured = self._learner.lead_times(target, now)
        return measured if target.cold_start.learn else None

    def learned(self) -> dict[str, dict[str, Any]]:
        """What the measured cold start learned per target key.

        Returns:
            Per ``Target.key``: sample counts (``samples``, ``waited``, ``warm``, ``fresh``),
            ``p90_seconds`` of each kind, ``lead_times`` (a dict or ``None``),
            ``from_policy`` and ``refreshed_at``; JSON-ready.
        """
        return self._learner.learned()

    # --------------------------------------------------------- cluster signals
    def cluster_signals(self, targets: Sequence[Target], now: float) -> ClusterSignals:
        """kube-state-metrics' view: replicas, pending/unschedulable pods, GPU nodes.

        See :func:`autoscaler.adapters.prometheus.signals.cluster_signals` (six queries for
        all targets; never raises).
        """
        return signals.cluster_signals(self.client, targets, now)
