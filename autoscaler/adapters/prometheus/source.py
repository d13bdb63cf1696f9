"""The controller's ``MetricsSource`` port over a real Prometheus (vLLM, DCGM, kube-state-metrics).

Why: the control loop needs load, latency, saturation and GPU signals per target every
cycle, the load history on start-up and the measured cold start, and it must be able to
tell "unknown" from "zero". This module turns PromQL answers into those values and turns
every bad answer (connection refused, timeout, 5xx, malformed JSON, no series, NaN/Inf,
several series where one was expected, stale samples) into ``None`` plus a ``problems``
entry, or into our :mod:`autoscaler.errors` types. It never reports a missing value as 0.

Cost: one query per signal for ALL targets (see :mod:`autoscaler.adapters.prometheus.promql`), split
per target in Python, so a loop costs the same ~14 queries for 1 or 1,000 targets (plus
one per target with an ``arrivalRateQuery`` override, sent a few at a time).

Time: every call ends by its timeout, whatever the server does (see
:mod:`autoscaler.adapters.prometheus.transport`: a trickled body cannot stretch it), and one loop's
queries share a budget (``loop_budget_seconds``). The first transport failure (refused,
timed out) opens a breaker: every later call fails at once until the next loop starts, so a
hung server costs one timeout per loop, not one per query, history load or lead-time query.

Talks to Prometheus with ``prometheus_api_client.PrometheusConnect`` without its retries
(the loop retries next cycle), TLS verification on by default (optionally a custom CA file)
and a bearer token re-read from its file when it changes (projected service-account tokens
rotate). The token is never logged. Every answer is read through
:mod:`autoscaler.adapters.prometheus.answers`, which refuses anything the HTTP API does not document.
"""

from __future__ import annotations

import math
import re
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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

from autoscaler.adapters.prometheus import answers, promql
from autoscaler.adapters.prometheus.connection import PrometheusConnection
from autoscaler.adapters.prometheus.leadtimes import LeadTimeLearner
from autoscaler.adapters.prometheus.promql import Answer, Query, Sample
from autoscaler.adapters.prometheus.transport import DEFAULT_MAX_BYTES, AnswerRejected, DeadlineAdapter
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import MetricsSnapshot
from autoscaler.errors import MetricsEmpty, MetricsError, MetricsInvalid, MetricsMalformed, MetricsUnavailable
from autoscaler.policy.schema import Target
from models.series import Series

T = TypeVar("T")
_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+)")
#: ``arrivalRateQuery`` overrides (one query per target) sent at once at most.
OVERRIDE_CONCURRENCY = 8


def transport_failure(exc: BaseException) -> bool:
    """True when Prometheus could not be reached at all (not merely a bad answer).

    Follows the ``__cause__`` chain, so a call refused by the open breaker (caused by the
    failure that opened it) counts too.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return True
        cause = cause.__cause__
    return False


class NotSent(MetricsUnavailable):
    """A call that was not sent: the breaker was open, or the loop's budget was spent."""

    @property
    def kind(self) -> str:
        """Reported like any query Prometheus did not answer (``metrics_unavailable``)."""
        return "metrics_unavailable"


#: Largest bearer token file read (service-account tokens are ~1 KB).
_MAX_TOKEN_BYTES = 64 * 1024


class _BearerToken:
    """A bearer token read from a file, re-read when the file changes (rotation)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        # Empty until the token file is read (bandit B105 takes it for a hard-coded password).
        self._token = ""  # nosec B105
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer …"}`` with the file's current token.

        Raises:
            MetricsUnavailable: if the file cannot be read or is empty (content never shown).
        """
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    with self.path.open("rb") as f:
                        raw = f.read(_MAX_TOKEN_BYTES + 1)
                    if len(raw) > _MAX_TOKEN_BYTES:
                        raise MetricsUnavailable(f"the bearer token file {self.path} is larger than 64 KiB")
                    self._token = raw.decode("utf-8", "replace").strip()
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
    """``PrometheusConnect`` with our deadlines, auth, breaker and error types, counting its queries.

    Thread-safe: the per-target override queries of a loop run a few at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        verify_tls: bool = True,
        timeout_seconds: float = 10.0,
        max_answer_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not 0 < timeout_seconds < math.inf:
            raise ValueError(f"timeout_seconds must be a finite number > 0, got {timeout_seconds!r}")
        session = requests.Session()
        # PrometheusConnect passes session.verify with every request, which (unlike a
        # session default) wins over REQUESTS_CA_BUNDLE from the environment.
        session.verify = str(ca_file) if ca_file is not None else verify_tls
        self._verify = bool(session.verify)
        self._token = _BearerToken(bearer_token_file) if bearer_token_file is not None else None
        self.timeout_seconds = timeout_seconds
        self.url = url.rstrip("/")
        self.queries = 0
        self._lock = threading.Lock()
        #: The transport failure that opened the breaker (``None``: closed).
        self._down: MetricsUnavailable | None = None
        self._prom = PrometheusConnect(
            url=self.url,
            session=session,
            retry=Retry(total=0, read=False, raise_on_status=False),
            # requests takes float seconds; the library annotates int
            timeout=cast("int", timeout_seconds),
        )
        # Replaces the adapter PrometheusConnect mounted: the same (absent) retries, plus a
        # deadline on the whole call and a bounded answer.
        session.mount(
            self.url,
            DeadlineAdapter(
                max_bytes=max_answer_bytes,
                connect_timeout=min(5.0, timeout_seconds),
                max_retries=Retry(total=0, read=False, raise_on_status=False),
            ),
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._prom.close()

    def reset_breaker(self) -> None:
        """Close the breaker: the next call is sent even if the last one found Prometheus down."""
        with self._lock:
            self._down = None

    def _server_timeout(self, seconds: float) -> str:
        """The server-side query timeout as a Prometheus duration.

        Whole milliseconds: Prometheus durations take no fractions ("1.5s" is refused with
        HTTP 400, which would fail every query of a controller run with a fractional
        ``--prometheus-timeout``).
        """
        return f"{max(1, round(seconds * 1000))}ms"

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout_seconds if timeout is None else max(0.001, min(self.timeout_seconds, timeout))

    def instant(self, name: str, expr: str, *, at: float, timeout: float | None = None) -> list[Sample]:
        """An instant query.

        Args:
            name: What the query is for (used in error messages and logs).
            expr: The PromQL expression.
            at: Evaluation time (unix seconds).
            timeout: Seconds for this call (default and upper bound: ``timeout_seconds``).

        Returns:
            The answer's samples (vector results), every field checked.

        Raises:
            MetricsUnavailable: no answer, 5xx/429, an auth failure, or the breaker is open.
            MetricsMalformed: an answer that is not a valid instant-query answer.
            MetricsInvalid: Prometheus rejected the query (4xx).
        """
        seconds = self._timeout(timeout)
        params = {"time": f"{at:.3f}", "timeout": self._server_timeout(seconds)}
        result = self._call(
            name, lambda: self._prom.custom_query(expr, params=params, timeout=cast("int", seconds)), seconds=seconds
        )
        return answers.instant_samples(name, result)

    def range_query(
        self, name: str, expr: str, *, start: float, end: float, step: int
    ) -> list[tuple[dict[str, str], list[answers.Point]]]:
        """A range query.

        Args:
            name: What the query is for (used in error messages and logs).
            expr: The PromQL expression.
            start: First evaluation time (unix seconds, whole seconds).
            end: Last evaluation time.
            step: Seconds between evaluations.

        Returns:
            ``(labels, [(time, value), …])`` per series, every field checked.

        Raises:
            MetricsUnavailable: as :meth:`instant`.
            MetricsMalformed: an answer that is not a valid range-query answer.
            MetricsInvalid: as :meth:`instant` (e.g. more than 11,000 points).
        """
        params = {"timeout": self._server_timeout(self.timeout_seconds)}
        result = self._call(
            name,
            lambda: self._prom.custom_query_range(
                expr,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=f"{step}s",
                params=params,
                timeout=cast("int", self.timeout_seconds),
            ),
            seconds=self.timeout_seconds,
        )
        return answers.range_series(name, result)

    def _call(self, name: str, fn: Callable[[], T], *, seconds: float) -> T:
        with self._lock:
            down = self._down
        if down is not None:
            raise NotSent(f"{name}: not sent: {down}") from down
        with self._lock:
            self.queries += 1
        if self._token is not None:
            self._prom.headers = self._token.header()
        try:
            with warnings.catch_warnings():
                if not self._verify:  # the operator chose --insecure-skip-tls-verify; say it once, not per query
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return fn()
        except requests.exceptions.JSONDecodeError as exc:
            raise MetricsMalformed(f"{name}: malformed JSON from Prometheus") from exc
        except RecursionError as exc:
            raise MetricsMalformed(f"{name}: JSON from Prometheus nested too deeply to read") from exc
        except AnswerRejected as exc:
            raise MetricsMalformed(f"{name}: {exc}") from exc
        except requests.Timeout as exc:
            raise self._open(MetricsUnavailable(f"{name}: no answer within {seconds:g}s"), exc) from exc
        except requests.exceptions.SSLError as exc:
            error = MetricsUnavailable(f"{name}: cannot connect to {self.url} (SSLError: {_ssl_reason(exc)})")
            raise self._open(error, exc) from exc
        except requests.ConnectionError as exc:
            error = MetricsUnavailable(f"{name}: cannot connect to {self.url} ({type(exc).__name__})")
            raise self._open(error, exc) from exc
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
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # PrometheusConnect reads data.result itself: a body without it lands here.
            raise MetricsMalformed(f"{name}: malformed answer from Prometheus (no data.result)") from exc

    def _open(self, error: MetricsUnavailable, cause: BaseException) -> MetricsUnavailable:
        """Open the breaker with ``error`` (a transport failure) and return it, chained to ``cause``."""
        error.__cause__ = cause
        with self._lock:
            self._down = error
        return error


def _ssl_reason(exc: BaseException) -> str:
    """The innermost TLS reason of a ``requests`` SSL error (e.g. ``certificate verify failed``)."""
    cause: BaseException | None = exc
    while cause is not None:
        reason = getattr(cause, "reason", None)
        if isinstance(cause, ssl.SSLError) and isinstance(reason, str):
            return reason
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


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
        plan = promql.loop_queries(targets, need_arrivals=need_arrivals)
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
            out[target.key], details = promql.snapshot(
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
        values = np.full(n, np.nan)
        expr = promql.history_load(target, step=istep)
        seen = False
        refused = 0
        for i0 in range(0, n, self.max_points_per_query):
            i1 = min(n, i0 + self.max_points_per_query)
            series = self.client.range_query(
                "load_history", expr, start=first + (i0 + 1) * istep, end=first + i1 * istep, step=istep
            )
            if len(series) > 1:
                raise MetricsInvalid(f"load_history: {len(series)} series where one was expected")
            for t, value in series[0][1] if series else ():
                idx = round((t - istep - first) / istep)
                if not 0 <= idx < n:
                    continue
                if not math.isfinite(value) or value < 0:
                    refused += 1
                    continue
                values[idx] = value
                seen = True
        if refused:
            self.log.warning("history_values_refused", target=target.key, buckets=refused,
                             reason="NaN, infinite or negative load")  # fmt: skip
        if not seen:
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
    """A node's allocatable accelerators (GPUs, MIG slices, AMD GPUs) and its Ready condition (``None`` = unknown)."""

    allocatable_gpus: float
    ready: bool | None


@dataclass(frozen=True)
class ClusterSignals:
    """Per-target Deployment signals and the cluster's GPU nodes."""

    deployments: dict[str, DeploymentSignals]
    gpu_nodes: dict[str, GpuNode]
    problems: dict[str, str] = field(default_factory=dict)
