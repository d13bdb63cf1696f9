"""The controller's ``MetricsSource`` port over a real Prometheus (vLLM, DCGM, kube-state-metrics).

Why: the control loop needs load, latency, saturation and GPU signals per target every
cycle, the load history on start-up and the measured cold start, and it must be able to
tell "unknown" from "zero". This module turns PromQL answers into those values and turns
every bad answer (connection refused, timeout, 5xx, malformed JSON, no series, NaN/Inf,
several series where one was expected, stale samples) into ``None`` plus a ``problems``
entry, or into our :mod:`autoscaler.errors` types. It never reports a missing value as 0.

Cost: one query per signal for ALL targets (see :mod:`autoscaler.adapters.promql`), split
per target in Python, so a loop costs the same ~14 queries for 1 or 1,000 targets (plus
one per target with an ``arrivalRateQuery`` override). The first transport failure
(refused, timed out) ends the loop's querying, so a hung server costs one timeout, not 14.

Talks to Prometheus with ``prometheus_api_client.PrometheusConnect`` without its retries
(the loop retries next cycle), with a per-query timeout, TLS verification on by default
(optionally a custom CA file) and a bearer token re-read from its file when it changes
(projected service-account tokens rotate). The token is never logged.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import requests
import structlog
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from autoscaler.adapters import promql
from autoscaler.adapters.leadtimes import LeadTimeLearner
from autoscaler.adapters.promql import Answer, Query, Sample
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import MetricsSnapshot
from autoscaler.errors import MetricsEmpty, MetricsError, MetricsInvalid, MetricsUnavailable
from autoscaler.policy.schema import Target
from models.series import Series

T = TypeVar("T")
_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+)")


def _transport_failure(exc: MetricsError) -> bool:
    """True when Prometheus could not be reached at all (not merely a bad answer)."""
    return isinstance(exc.__cause__, requests.ConnectionError | requests.Timeout)


class _BearerToken:
    """A bearer token read from a file, re-read when the file changes (rotation)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        # Empty until the token file is read (bandit B105 takes it for a hard-coded password).
        self._token = ""  # nosec B105

    def header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer …"}`` with the file's current token.

        Raises:
            MetricsUnavailable: if the file cannot be read or is empty (content never shown).
        """
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._token = self.path.read_text().strip()
                self._stamp = stamp
        except OSError as exc:
            raise MetricsUnavailable(f"cannot read the bearer token file {self.path}: {exc.strerror}") from exc
        if not self._token:
            raise MetricsUnavailable(f"the bearer token file {self.path} is empty")
        return {"Authorization": f"Bearer {self._token}"}

    def scrub(self, text: str) -> str:
        """``text`` with the token masked (an error body may echo the request's headers)."""
        return text.replace(self._token, "***") if self._token else text


class PrometheusClient:
    """``PrometheusConnect`` with our timeouts, auth and error types, counting its queries."""

    def __init__(
        self,
        url: str,
        *,
        bearer_token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        verify_tls: bool = True,
        timeout_seconds: float = 10.0,
    ) -> None:
        session = requests.Session()
        # PrometheusConnect passes session.verify with every request, which (unlike a
        # session default) wins over REQUESTS_CA_BUNDLE from the environment.
        session.verify = str(ca_file) if ca_file is not None else verify_tls
        self._verify = bool(session.verify)
        self._token = _BearerToken(bearer_token_file) if bearer_token_file is not None else None
        self.timeout_seconds = timeout_seconds
        self.url = url.rstrip("/")
        self.queries = 0
        self._prom = PrometheusConnect(
            url=self.url,
            session=session,
            retry=Retry(total=0, read=False, raise_on_status=False),
            # requests takes float seconds; the library annotates int
            timeout=cast("int", timeout_seconds),
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._prom.close()

    @property
    def _server_timeout(self) -> str:
        """The server-side query timeout as a Prometheus duration.

        Whole milliseconds: Prometheus durations take no fractions ("1.5s" is refused with
        HTTP 400, which would fail every query of a controller run with a fractional
        ``--prometheus-timeout``).
        """
        return f"{max(1, round(self.timeout_seconds * 1000))}ms"

    def instant(self, name: str, expr: str, *, at: float) -> list[Sample]:
        """An instant query.

        Args:
            name: What the query is for (used in error messages and logs).
            expr: The PromQL expression.
            at: Evaluation time (unix seconds).

        Returns:
            The answer's samples (vector results).

        Raises:
            MetricsUnavailable: no answer, 5xx, an auth failure or a malformed body.
            MetricsInvalid: Prometheus rejected the query (4xx).
        """
        params = {"time": f"{at:.3f}", "timeout": self._server_timeout}
        result = self._call(name, lambda: self._prom.custom_query(expr, params=params))
        try:
            return [
                Sample(labels=dict(r["metric"]), time=float(r["value"][0]), value=float(r["value"][1])) for r in result
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsUnavailable(f"{name}: malformed instant-query result") from exc

    def range_query(
        self, name: str, expr: str, *, start: float, end: float, step: int
    ) -> list[tuple[dict[str, str], Any]]:
        """A range query.

        Args:
            name: What the query is for (used in error messages and logs).
            expr: The PromQL expression.
            start: First evaluation time (unix seconds, whole seconds).
            end: Last evaluation time.
            step: Seconds between evaluations.

        Returns:
            ``(labels, [[time, "value"], …])`` per series.

        Raises:
            MetricsUnavailable: as :meth:`instant`.
            MetricsInvalid: as :meth:`instant` (e.g. more than 11,000 points).
        """
        params = {"timeout": self._server_timeout}
        result = self._call(
            name,
            lambda: self._prom.custom_query_range(
                expr,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=f"{step}s",
                params=params,
            ),
        )
        try:
            return [(dict(r["metric"]), list(r["values"])) for r in result]
        except (KeyError, TypeError) as exc:
            raise MetricsUnavailable(f"{name}: malformed range-query result") from exc

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        self.queries += 1
        if self._token is not None:
            self._prom.headers = self._token.header()
        try:
            with warnings.catch_warnings():
                if not self._verify:  # the operator chose --insecure-skip-tls-verify; say it once, not per query
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return fn()
        except requests.exceptions.JSONDecodeError as exc:
            raise MetricsUnavailable(f"{name}: malformed JSON from Prometheus") from exc
        except requests.Timeout as exc:
            raise MetricsUnavailable(f"{name}: no answer within {self.timeout_seconds:g}s") from exc
        except requests.ConnectionError as exc:
            raise MetricsUnavailable(f"{name}: cannot connect to {self.url} ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"{name}: request failed ({type(exc).__name__})") from exc
        except PrometheusApiClientException as exc:
            text = str(exc)
            match = _HTTP_STATUS.match(text)
            code = int(match.group(1)) if match else 0
            body = text[match.end() if match else 0 :]
            body = self._token.scrub(body) if self._token is not None else body
            detail = f"{name}: Prometheus answered HTTP {code}:{body[:200]}"
            if 400 <= code < 500 and code not in (401, 403, 404, 408, 429):
                raise MetricsInvalid(detail) from exc
            raise MetricsUnavailable(detail) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise MetricsUnavailable(f"{name}: malformed answer from Prometheus") from exc


@dataclass
class LoopStats:
    """What the last :meth:`PrometheusSource.observe` call cost and what failed.

    ``queries`` counts the queries sent (after a transport failure the rest are skipped),
    ``answered`` those that got an answer; ``failed`` maps a sent query's signal to its
    error kind; ``details`` the reason per unknown field per target.
    """

    time: float = 0.0
    targets: int = 0
    queries: int = 0
    answered: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    details: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def unreachable(self) -> bool:
        """True when the loop sent queries and Prometheus answered none of them."""
        return self.queries > 0 and self.answered == 0


class PrometheusSource:
    """Implements :class:`autoscaler.ports.MetricsSource` against one Prometheus server.

    Args:
        url: Base URL, e.g. ``https://prometheus.monitoring:9090``.
        bearer_token_file: File holding a bearer token (re-read when it changes).
        ca_file: PEM bundle to verify the server with (instead of the system CAs).
        verify_tls: Verify the server's certificate (keep on outside tests).
        timeout_seconds: Per-query timeout, client and server side.
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
        targets = list(targets)
        self._learner.remember(targets)
        stats = LoopStats(time=now, targets=len(targets))
        if not targets:
            self.last_loop = stats
            return {}
        need_arrivals = any(t.capacity.unit == "requests" and not t.metrics.arrival_rate_query for t in targets)
        plan = promql.loop_queries(targets, need_arrivals=need_arrivals)
        plan += [
            Query("arrival_rate_query", t.metrics.arrival_rate_query, window=t.key)
            for t in targets
            if t.metrics.arrival_rate_query
        ]
        answers: dict[tuple[str, str | None, float | None], Answer] = {}
        down: MetricsError | None = None
        for query in plan:
            if down is not None:
                answers[query.key] = down
                continue
            try:
                answers[query.key] = self.client.instant(query.signal, query.expr, at=now)
                stats.answered += 1
            except MetricsError as exc:
                answers[query.key] = exc
                stats.failed[query.signal] = exc.kind
                self.log.warning("prometheus_query_failed", signal=query.signal, kind=exc.kind, error=str(exc))
                if _transport_failure(exc):
                    down = exc
        out = {}
        for target in targets:
            out[target.key], details = promql.snapshot(
                target, answers, now=now, stale_slack=self.clock_skew_tolerance_seconds
            )
            if details:
                stats.details[target.key] = details
        stats.queries = self.client.queries - before
        stats.seconds = time.perf_counter() - started
        self.last_loop = stats
        self.log.debug("metrics_observed", targets=stats.targets, queries=stats.queries, seconds=stats.seconds)
        return out

    # ----------------------------------------------------------------- history
    def load_history(self, target: Target, *, start: float, end: float, step: float) -> Series:
        """The target's mean load per bucket ``[t, t + step)`` on a grid of multiples of ``step``.

        Buckets with no data, or whose end is still in the future, are NaN (never 0).
        Range queries are chunked to at most ``max_points_per_query`` points each.

        Args:
            target: The target.
            start: First bucket start wanted (rounded up to a multiple of ``step``).
            end: Last bucket start wanted (rounded down).
            step: Bucket width in whole seconds.

        Returns:
            The load series in the policy's capacity unit.

        Raises:
            ValueError: if ``step`` is not a whole number of seconds >= 1.
            MetricsUnavailable: Prometheus did not answer or answered malformed.
            MetricsInvalid: the query was rejected or returned several series.
            MetricsEmpty: no bucket has data.
        """
        if step < 1 or step != int(step):
            raise ValueError(f"step must be whole seconds >= 1, got {step!r}")
        istep = int(step)
        first = math.ceil(start / istep) * istep
        last = min(math.floor(end / istep) * istep, math.floor((time.time() - istep) / istep) * istep)
        n = max(0, (last - first) // istep + 1)
        values = np.full(n, np.nan)
        expr = promql.history_load(target, step=istep)
        seen = False
        for i0 in range(0, n, self.max_points_per_query):
            i1 = min(n, i0 + self.max_points_per_query)
            series = self.client.range_query(
                "load_history", expr, start=first + (i0 + 1) * istep, end=first + i1 * istep, step=istep
            )
            if len(series) > 1:
                raise MetricsInvalid(f"load_history: {len(series)} series where one was expected")
            for t, v in series[0][1] if series else ():
                idx = round((float(t) - istep - first) / istep)
                value = float(v)
                if 0 <= idx < n and math.isfinite(value):
                    values[idx] = value
                    seen = True
        if not seen:
            raise MetricsEmpty(f"load_history: no data for {target.key} in the requested range")
        return Series(start=float(first), step=float(istep), values=values)

    # -------------------------------------------------------------- lead times
    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """Measured lead times (P90s over the look-back), or ``None`` until enough start-ups.

        See :mod:`autoscaler.adapters.leadtimes` for how measurements map onto the three
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

        Optional extras for ``autoscaler observe`` and backtests; the Kubernetes API stays
        authoritative for replica counts. Six queries for all targets.

        Args:
            targets: The targets whose Deployments to report.
            now: Evaluation time (unix seconds; a past time works for backtests).

        Returns:
            Per-target :class:`DeploymentSignals` (pod counts only for Deployments that
            kube-state-metrics reports, else ``None``, never 0) and the GPU nodes.
            Never raises: failures are in the ``problems`` maps.
        """
        answers: dict[str, Answer] = {}
        for name, expr in promql.cluster_queries(t.namespace for t in targets).items():
            try:
                answers[name] = self.client.instant(name, expr, at=now)
            except MetricsError as exc:
                answers[name] = exc
        deployments = {}
        for target in targets:
            counts: dict[str, int | None] = {}
            problems: dict[str, str] = {}
            for name in ("spec_replicas", "ready_replicas", "pending_pods", "unschedulable_pods"):
                try:
                    if not name.endswith("_pods"):
                        counts[name] = int(promql.pick(target, answers[name], signal=name, how="max"))
                    elif counts["spec_replicas"] is None:
                        raise MetricsEmpty("kube-state-metrics does not report the Deployment")
                    else:
                        counts[name] = promql.count_pods(target, answers[name])
                except MetricsError as exc:
                    counts[name], problems[name] = None, exc.kind
            deployments[target.key] = DeploymentSignals(**counts, problems=problems)
        nodes: dict[str, GpuNode] = {}
        gpus, ready = answers["node_gpus"], answers["node_ready"]
        if isinstance(gpus, MetricsError):
            return ClusterSignals(deployments=deployments, gpu_nodes=nodes, problems={"gpu_nodes": gpus.kind})
        up = {} if isinstance(ready, MetricsError) else {s.labels.get("node", ""): s.value == 1 for s in ready}
        for s in gpus:
            node = s.labels.get("node", "")
            nodes[node] = GpuNode(allocatable_gpus=s.value, ready=up.get(node))
        return ClusterSignals(deployments=deployments, gpu_nodes=nodes)


@dataclass(frozen=True)
class DeploymentSignals:
    """kube-state-metrics about one target's Deployment (``None`` = unknown)."""

    spec_replicas: int | None = None
    ready_replicas: int | None = None
    pending_pods: int | None = None
    unschedulable_pods: int | None = None
    problems: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuNode:
    """A node's allocatable ``nvidia.com/gpu`` and its Ready condition (``None`` = unknown)."""

    allocatable_gpus: float
    ready: bool | None


@dataclass(frozen=True)
class ClusterSignals:
    """Per-target Deployment signals and the cluster's GPU nodes."""

    deployments: dict[str, DeploymentSignals]
    gpu_nodes: dict[str, GpuNode]
    problems: dict[str, str] = field(default_factory=dict)
