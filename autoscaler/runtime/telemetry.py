"""The controller's own metrics, and the HTTP endpoints /metrics, /healthz and /readyz.

Conventions (Prometheus naming): cumulative values are counters in base units
(``*_seconds_total``, ``*_points_total``), load gauges carry a ``unit`` label (``requests`` or
``tokens``, per second, from the target's ``capacity.unit``), ``autoscaler_build_info``
says which version runs, the process and Python collectors are on the same registry, and
``autoscaler_leader`` names its Lease (a sharded install shows which shard has no leader).
Renamed series stay exported under their old names for one release (see CHANGELOG.md,
:data:`DEPRECATED`).

Operators watch the controller the way they watch everything else: Prometheus scrapes
``/metrics`` (forecast mean and upper quantile per target and horizon, desired replicas
and placeholders, decisions by reason, loop duration and lateness, errors by kind
(including failed metrics queries), unknown decision signals by kind, clock jumps,
leader status, policy generation). ``/healthz`` says the control loop is alive (a cycle
ended recently, see :class:`Health`); ``/readyz`` says a cycle completed recently (or, for a
standby replica, that it is following).
"""

from __future__ import annotations

import math
import platform
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from autoscaler import __version__
from autoscaler.core.types import Observation
from autoscaler.forecasting.shadow import TargetShadow
from autoscaler.runtime.controller import CycleResult

#: Snapshot signals ``decide`` reads: an unknown one is counted in ``autoscaler_metrics_problems``.
DECISION_SIGNALS = ("load", "waiting", "latency_mean", "latency_quantile")

#: Series renamed in 0.2.0, old -> new; the old ones are still exported until 0.3.0, except
#: ``autoscaler_forecast_scored_points`` (the new counter's family name: one name, one type).
DEPRECATED = {
    "autoscaler_underprovisioned_minutes": "autoscaler_underprovisioned_seconds_total",
    "autoscaler_forecast_under_forecast_minutes": "autoscaler_forecast_under_forecast_seconds_total",
    "autoscaler_shadow_observed_minutes": "autoscaler_shadow_observed_seconds_total",
    "autoscaler_forecast_scored_points": "autoscaler_forecast_scored_points_total",
}


class Telemetry:
    """All metrics of one controller process, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The default registry's process_*, python_info and python_gc_* collectors, on ours
        # (only ours is served).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        build = Gauge("autoscaler_build_info", "The running version (value 1).", ("version", "python"), registry=r)
        build.labels(__version__, platform.python_version()).set(1)
        #: Target key -> its load unit (``capacity.unit``), set when a policy is applied.
        self.units: dict[str, str] = {}
        labels = ("namespace", "deployment")
        self._declare_decisions(r, labels)
        self._declare_writes_and_errors(r, labels)
        self._declare_loop(r, labels)
        self._declare_shadow(r, labels)

    def _declare_decisions(self, r: CollectorRegistry, labels: tuple[str, ...]) -> None:
        """What each target's decision was made on and chose."""
        self.forecast = Gauge(
            "autoscaler_forecast_load",
            "Forecast peak load over a horizon, per second in the unit of the label unit (requests or tokens).",
            (*labels, "horizon", "stat", "unit"),
            registry=r,
        )
        self.observed_load = Gauge(
            "autoscaler_observed_load",
            "Observed load, per second in the unit of the label unit (requests or tokens).",
            (*labels, "unit"),
            registry=r,
        )
        self.desired_replicas = Gauge("autoscaler_desired_replicas", "Serving replicas decided.", labels, registry=r)
        self.current_replicas = Gauge(
            "autoscaler_current_replicas", "Serving replicas in the spec.", labels, registry=r
        )
        self.desired_placeholders = Gauge(
            "autoscaler_desired_placeholders", "Placeholder pods decided.", labels, registry=r
        )
        self.horizon = Gauge(
            "autoscaler_lead_time_seconds",
            "Lead times used (pod start-up, node cold start).",
            (*labels, "kind"),
            registry=r,
        )
        self.decisions = Counter("autoscaler_decisions", "Decisions by final reason.", (*labels, "reason"), registry=r)
        self.steps = Counter(
            "autoscaler_decision_steps", "Safety-pipeline steps met, by reason.", (*labels, "reason"), registry=r
        )

    def _declare_writes_and_errors(self, r: CollectorRegistry, labels: tuple[str, ...]) -> None:
        """Dry-run and pause state, cluster writes and errors."""
        self.dry_run = Gauge("autoscaler_dry_run", "1 if the target is in dry-run.", labels, registry=r)
        self.writes = Counter("autoscaler_writes", "Writes to the cluster.", (*labels, "object"), registry=r)
        self.errors = Counter("autoscaler_errors", "Errors by kind.", ("kind",), registry=r)
        self.status_errors = Counter(
            "autoscaler_status_write_errors",
            "Status annotation writes that failed, by kind (the decision stood).",
            (*labels, "kind"),
            registry=r,
        )
        self.paused = Gauge("autoscaler_paused", "1 while the target is paused by its annotation.", labels, registry=r)
        self.target_errors = Counter(
            "autoscaler_target_errors", "Per-target errors by kind.", (*labels, "kind"), registry=r
        )

    def _declare_loop(self, r: CollectorRegistry, labels: tuple[str, ...]) -> None:
        """The control loop's timing, leadership, policy, models and metrics-source failures."""
        self.loop_duration = Histogram(
            "autoscaler_loop_duration_seconds",
            "Duration of one control cycle.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.loop_lateness = Gauge("autoscaler_loop_lateness_seconds", "Start delay of the last cycle.", registry=r)
        self.last_cycle = Gauge("autoscaler_last_cycle_timestamp_seconds", "End time of the last cycle.", registry=r)
        self.leader = Gauge(
            "autoscaler_leader", "1 while this replica holds the leader Lease named by lease.", ("lease",), registry=r
        )
        self.policy_generation = Gauge("autoscaler_policy_generation", "Generation of the policy in force.", registry=r)
        self.policy_rejected = Counter("autoscaler_policy_rejected", "Policy updates rejected.", registry=r)
        self.forecast_model = Gauge(
            "autoscaler_forecast_model_info", "Forecast model in use (value 1).", (*labels, "model"), registry=r
        )
        self.metrics_query_failures = Counter(
            "autoscaler_metrics_query_failures",
            "Metrics-source queries that failed, by signal and error kind.",
            ("signal", "kind"),
            registry=r,
        )
        self.metrics_problems = Counter(
            "autoscaler_metrics_problems",
            "Cycles in which a signal the decision uses was unknown, by signal and error kind.",
            (*labels, "signal", "kind"),
            registry=r,
        )

    def _declare_shadow(self, r: CollectorRegistry, labels: tuple[str, ...]) -> None:
        """Shadow scoring's forecast quality and provisioning, with the deprecated minute gauges."""
        # Shadow scoring (autoscaler.forecasting.shadow): live forecast quality and provisioning.
        self.shadow_pinball = Gauge(
            "autoscaler_forecast_pinball_loss",
            "Pinball loss of scored forecast points over the last day (policy unit/s), by model and quantile.",
            (*labels, "model", "quantile"),
            registry=r,
        )
        self.shadow_coverage = Gauge(
            "autoscaler_forecast_coverage_ratio",
            "Fraction of scored points at or below the upper (policy) quantile over the last day.",
            (*labels, "model"),
            registry=r,
        )
        self.shadow_points = Counter(
            "autoscaler_forecast_scored_points",
            "Forecast points scored, by model.",
            (*labels, "model"),
            registry=r,
        )
        self.shadow_under_forecast = Counter(
            "autoscaler_forecast_under_forecast_seconds",
            "Seconds in which load exceeded the upper quantile forecast a cold start ahead, by model.",
            (*labels, "model"),
            registry=r,
        )
        self.underprovisioned = Counter(
            "autoscaler_underprovisioned_seconds",
            "Seconds under-provisioned: setup=current (replicas in place) or predictive (our decisions).",
            (*labels, "setup"),
            registry=r,
        )
        self.shadow_observed = Counter(
            "autoscaler_shadow_observed_seconds",
            "Seconds over which the under-provisioned seconds were compared.",
            labels,
            registry=r,
        )
        #: The scorers' totals last exported, per series: counters advance by the difference.
        self._totals: dict[tuple[Counter, tuple[str, ...]], float] = {}
        # Deprecated gauges of cumulative minutes, exported until 0.3.0 (the old points gauge cannot
        # be: its name is the new counter's family name, and one family has one type).
        self.old_under_forecast = Gauge(
            "autoscaler_forecast_under_forecast_minutes",
            "Deprecated (removed in 0.3.0): use autoscaler_forecast_under_forecast_seconds_total.",
            (*labels, "model"),
            registry=r,
        )
        self.old_underprovisioned = Gauge(
            "autoscaler_underprovisioned_minutes",
            "Deprecated (removed in 0.3.0): use autoscaler_underprovisioned_seconds_total.",
            (*labels, "setup"),
            registry=r,
        )
        self.old_observed = Gauge(
            "autoscaler_shadow_observed_minutes",
            "Deprecated (removed in 0.3.0): use autoscaler_shadow_observed_seconds_total.",
            labels,
            registry=r,
        )
        self.model_demotions = Counter(
            "autoscaler_forecast_model_demotions",
            "Automatic selections that dropped a model for under-forecasting live traffic.",
            (*labels, "model"),
            registry=r,
        )
        self.clock_jumps = Counter(
            "autoscaler_clock_jumps",
            "Steps of the controller clock against the monotonic clock between two cycles.",
            ("direction",),
            registry=r,
        )

    def record_cycle(self, cycle: CycleResult, *, started: float, scheduled: float | None) -> None:
        """Export one cycle's decisions, errors and timing."""
        duration = time.time() - started
        self.loop_duration.observe(duration)
        if scheduled is not None:
            self.loop_lateness.set(max(0.0, started - scheduled))
        self.last_cycle.set(time.time())
        if cycle.metrics_error is not None:
            self.errors.labels(cycle.metrics_error.kind).inc()
        for result in cycle.results:
            ns, name = result.target.split("/", 1)
            if result.error is not None:
                self.errors.labels(result.error.kind).inc()
                self.target_errors.labels(ns, name, result.error.kind).inc()
                continue
            if result.status_error is not None:
                self.status_errors.labels(ns, name, result.status_error).inc()
            self.paused.labels(ns, name).set(1 if result.paused else 0)
            if result.demoted_model is not None:
                self.model_demotions.labels(ns, name, result.demoted_model).inc()
            d = result.decision
            if d is None:
                continue
            self.dry_run.labels(ns, name).set(1 if result.dry_run else 0)
            self.desired_replicas.labels(ns, name).set(d.replicas)
            self.current_replicas.labels(ns, name).set(d.current_replicas)
            self.desired_placeholders.labels(ns, name).set(d.placeholders)
            unit = self.units.get(result.target, "requests")
            if d.observed_load is not None:
                self.observed_load.labels(ns, name, unit).set(d.observed_load)
            self.decisions.labels(ns, name, d.reason.value).inc()
            for reason in d.reasons:
                self.steps.labels(ns, name, reason).inc()
            self.horizon.labels(ns, name, "pod").set(d.pod_horizon_seconds)
            self.horizon.labels(ns, name, "node").set(d.node_horizon_seconds)
            for horizon, value in (("pod", d.predicted_load_pod_horizon), ("node", d.predicted_load_node_horizon)):
                if value is not None:
                    self.forecast.labels(ns, name, horizon, "quantile", unit).set(value)
            if result.applied is not None:
                if result.applied.wrote_replicas:
                    self.writes.labels(ns, name, "replicas").inc()
                if result.applied.wrote_placeholders:
                    self.writes.labels(ns, name, "placeholders").inc()

    def record_metrics_loop(self, failed: Mapping[str, str]) -> None:
        """Export the metrics source's failed queries of one cycle (signal -> error kind).

        Every failed query counts in ``autoscaler_metrics_query_failures``; each distinct kind
        counts once per cycle in ``autoscaler_errors`` (a source that never raises, such as
        Prometheus, would otherwise leave an outage out of the error count).
        """
        for signal, kind in failed.items():
            self.metrics_query_failures.labels(signal, kind).inc()
        for kind in sorted(set(failed.values())):
            self.errors.labels(kind).inc()

    def record_observation(self, key: str, observation: Observation) -> None:
        """Count the decision signals a target's observation lacked, by error kind."""
        problems = observation.metrics.problems
        ns, name = key.split("/", 1)
        for signal in DECISION_SIGNALS:
            kind = problems.get(signal)
            if kind is not None:
                self.metrics_problems.labels(ns, name, signal, kind).inc()

    def record_clock_jump(self, seconds: float) -> None:
        """Count a step of the controller clock (positive: forward)."""
        self.clock_jumps.labels("forward" if seconds > 0 else "backward").inc()

    def record_forecast_mean(self, key: str, horizon: str, value: float | None) -> None:
        """Export the forecast mean at a horizon (the quantile comes with the decision)."""
        if value is None:
            return
        ns, name = key.split("/", 1)
        self.forecast.labels(ns, name, horizon, "mean", self.units.get(key, "requests")).set(value)

    def _advance(self, counter: Counter, labels: tuple[str, ...], total: float) -> None:
        """Advance a counter to a scorer's running total (its difference since the last export).

        Exporting twice in a cycle adds nothing. A total below the last one means the scorer
        restarted (the target's policy changed): the counter then advances by the new total,
        so it never goes down.
        """
        key = (counter, labels)
        last = self._totals.get(key, 0.0)
        step = total - last if total >= last else total
        if step > 0:
            counter.labels(*labels).inc(step)
        else:
            counter.labels(*labels)  # the series exists from the first export, at 0
        self._totals[key] = total

    def record_shadow(self, key: str, shadow: TargetShadow) -> None:
        """Export one target's shadow scores (rolling quality per model, cumulative seconds and points)."""
        ns, name = key.split("/", 1)
        quantile = f"{shadow.forecasts.quantile:g}"
        for model, score in shadow.forecasts.scores().items():
            self.shadow_pinball.labels(ns, name, model, quantile).set(score.pinball_upper)
            self.shadow_pinball.labels(ns, name, model, "0.5").set(score.pinball_median)
            self.shadow_coverage.labels(ns, name, model).set(score.coverage)
        for model, points in shadow.forecasts.total_points.items():
            self._advance(self.shadow_points, (ns, name, model), float(points))
        for model, minutes in shadow.forecasts.total_under_forecast_minutes.items():
            self._advance(self.shadow_under_forecast, (ns, name, model), 60.0 * minutes)
            self.old_under_forecast.labels(ns, name, model).set(minutes)
        totals = shadow.provisioning.totals()
        under = (("current", totals.current_under_minutes), ("predictive", totals.predictive_under_minutes))
        for setup, minutes in under:
            self._advance(self.underprovisioned, (ns, name, setup), 60.0 * minutes)
            self.old_underprovisioned.labels(ns, name, setup).set(minutes)
        self._advance(self.shadow_observed, (ns, name), 60.0 * totals.observed_minutes)
        self.old_observed.labels(ns, name).set(totals.observed_minutes)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class Health:
    """Liveness and readiness state shared between the loop and the HTTP server.

    Liveness means the control loop is alive, not merely the process: every cycle that
    ends (leading, standing by or failing) is progress, and :meth:`alive` fails once none
    ended for ``stall_seconds`` (a loop stuck in a call or a deadlock). ``/healthz`` then
    answers 503, so the kubelet restarts the container, and the Lease elector, which asks
    the same question, stops renewing so that the standby takes over. Progress is measured
    on the monotonic clock: a wall-clock step is not a stall.
    """

    def __init__(
        self,
        *,
        max_cycle_age: float,
        stall_seconds: float = math.inf,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_cycle_age = max_cycle_age
        #: Seconds without an ended cycle after which the loop counts as stuck.
        self.stall_seconds = stall_seconds
        self.started = time.time()
        self.last_cycle: float | None = None
        self.standby = False
        self._monotonic = monotonic
        self._progress = monotonic()
        self._lock = threading.Lock()

    def cycle_done(self) -> None:
        """Record a completed cycle (also progress)."""
        with self._lock:
            self.last_cycle = time.time()
            self._progress = self._monotonic()

    def progress(self) -> None:
        """Record that a cycle ended, whatever its outcome."""
        with self._lock:
            self._progress = self._monotonic()

    def alive(self) -> tuple[bool, str]:
        """Whether a cycle ended within ``stall_seconds`` (or the process started that recently)."""
        with self._lock:
            idle = self._monotonic() - self._progress
        if idle > self.stall_seconds:
            return False, f"control loop made no progress for {idle:.0f}s (limit {self.stall_seconds:.0f}s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Ready when a cycle completed recently, or when following another leader."""
        with self._lock:
            if self.standby:
                return True, "standby (not leader)"
            if self.last_cycle is None:
                return False, "no cycle completed yet"
            age = time.time() - self.last_cycle
            if age > self.max_cycle_age:
                return False, f"last cycle {age:.0f}s ago"
            return True, "ok"


def serve(*, telemetry: Telemetry, health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the /metrics, /healthz, /readyz server in a daemon thread and return it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, telemetry.render(), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                ok, why = health.alive()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            elif self.path.startswith("/readyz"):
                ok, why = health.ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
