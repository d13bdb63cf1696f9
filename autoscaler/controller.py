"""One control cycle for every target: observe -> forecast -> decide -> act.

This is the single copy of the control logic. It reaches the world only through the
ports in :mod:`autoscaler.ports`, so the in-cluster loop, the simulator and the tests all
run it unchanged. Scheduling (when cycles run) lives elsewhere; ``reconcile_once`` is one
cycle and is what ``autoscaler run --once`` and the simulator call.

Failure handling: one target's failure never stops the others; a metrics outage yields
"unknown" signals (which ``decide`` turns into holds, never scale-downs); a cluster read
failure skips the target for this cycle (nothing is written on a state we could not see).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from autoscaler.core.capacity import LearnedCapacity
from autoscaler.core.decide import decide
from autoscaler.core.forecast_view import ForecastView
from autoscaler.core.types import Decision, DecisionRecord, MetricsSnapshot, Observation
from autoscaler.errors import AutoscalerError, MetricsError
from autoscaler.forecasting import TargetForecaster
from autoscaler.policy.schema import Policy, Target
from autoscaler.ports import ApplyResult, Clock, Cluster, MetricsSource

Mode = Literal["dry-run", "enforce"]


class NullLog:
    """A logger that drops everything (the simulator's default: it records decisions itself)."""

    def info(self, event: str, **kw: Any) -> None:
        """Drop an info event."""

    def warning(self, event: str, **kw: Any) -> None:
        """Drop a warning event."""

    def error(self, event: str, **kw: Any) -> None:
        """Drop an error event."""


@dataclass
class TargetResult:
    """The outcome of one cycle for one target."""

    target: str
    decision: Decision | None = None
    applied: ApplyResult | None = None
    dry_run: bool = True
    error: AutoscalerError | None = None
    duration_seconds: float = 0.0


@dataclass
class CycleResult:
    """The outcome of one cycle for all targets."""

    time: float
    results: list[TargetResult] = field(default_factory=list)
    metrics_error: MetricsError | None = None


@dataclass
class _TargetState:
    forecaster: TargetForecaster
    history: deque[DecisionRecord] = field(default_factory=lambda: deque(maxlen=4096))
    capacity: LearnedCapacity | None = None
    seeded: bool = False
    last: Decision | None = None


class Controller:
    """Runs control cycles over the targets of a policy through the given ports."""

    def __init__(
        self,
        *,
        policy: Policy,
        metrics: MetricsSource,
        cluster: Cluster,
        clock: Clock,
        mode_override: Mode | None = None,
        log: Any = None,
        on_result: Callable[[TargetResult, Observation | None], None] | None = None,
        forecast_source: Callable[[Target, float], ForecastView | None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.cluster = cluster
        self.clock = clock
        self.mode_override = mode_override
        self.log = log if log is not None else NullLog()
        self.on_result = on_result
        #: Replaces the fitted models (the simulator's perfect-foresight oracle uses it).
        self.forecast_source = forecast_source
        self.policy = policy
        self._state: dict[str, _TargetState] = {}
        self._fit_spent = 0.0
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        """Switch to a new (already validated) policy without losing per-target state.

        A target whose forecast settings changed gets a new model (the series is kept
        when the resolution is unchanged); targets no longer listed are forgotten.
        """
        old = {t.key: t for t in self.policy.targets}
        states: dict[str, _TargetState] = {}
        for target in policy.targets:
            state = self._state.get(target.key)
            horizon = self._horizon(target, policy)
            if state is None:
                state = _TargetState(forecaster=TargetForecaster(target, horizon_seconds=horizon))
            elif old.get(target.key) != target:
                previous = state.forecaster
                state.forecaster = TargetForecaster(target, horizon_seconds=horizon)
                if previous.series is not None and previous.step == state.forecaster.step:
                    state.forecaster.seed(previous.series)
            if target.capacity.learn and state.capacity is None:
                state.capacity = LearnedCapacity(
                    policy_value=target.capacity.per_replica,
                    slo_seconds=target.slo.latency_seconds,
                    min_samples=target.capacity.learn_min_samples,
                )
            elif not target.capacity.learn:
                state.capacity = None
            states[target.key] = state
        self.policy = policy
        self._state = states

    @staticmethod
    def _horizon(target: Target, policy: Policy) -> float:
        """Forecast horizon: the full cold start, a loop, and a bucket of slack."""
        cold = target.cold_start
        return cold.total_seconds * 1.5 + policy.loop_interval_seconds + target.forecast.resolution_seconds

    def _fit_priority(self, target: Target) -> tuple[bool, float]:
        fc = self._state[target.key].forecaster
        return (fc.model is not None, fc.last_fit if fc.last_fit is not None else float("-inf"))

    def is_dry_run(self, target: Target) -> bool:
        """Whether this target's decisions are only logged."""
        mode = self.mode_override or target.mode
        return mode == "dry-run"

    def forecaster(self, key: str) -> TargetForecaster:
        """The forecasting state of a target (for observability and tests)."""
        return self._state[key].forecaster

    def last_decision(self, key: str) -> Decision | None:
        """The most recent decision for a target."""
        return self._state[key].last

    def reconcile_once(self, now: float | None = None) -> CycleResult:
        """Run one cycle for every target. Never raises for a per-target failure."""
        now = self.clock.now() if now is None else now
        cycle = CycleResult(time=now)
        # The most overdue refits first, so a spent fit budget defers the least overdue ones.
        targets = sorted(self.policy.targets, key=self._fit_priority)
        snapshots: Mapping[str, MetricsSnapshot]
        try:
            snapshots = self.metrics.observe(targets, now)
        except MetricsError as exc:
            cycle.metrics_error = exc
            self.log.warning("metrics_unavailable", error=str(exc), kind=exc.kind)
            snapshots = {}
        self._fit_spent = 0.0
        for target in targets:
            started = time.perf_counter()
            snapshot = snapshots.get(target.key) or MetricsSnapshot(
                time=now, problems={"load": cycle.metrics_error.kind if cycle.metrics_error else "missing"}
            )
            result = TargetResult(target=target.key, dry_run=self.is_dry_run(target))
            observation: Observation | None = None
            try:
                observation = self._reconcile_target(target, snapshot, now, result)
            except AutoscalerError as exc:
                result.error = exc
                self.log.warning("target_failed", target=target.key, error=str(exc), kind=exc.kind)
            result.duration_seconds = time.perf_counter() - started
            cycle.results.append(result)
            if self.on_result is not None:
                self.on_result(result, observation)
        return cycle

    def _reconcile_target(
        self, target: Target, snapshot: MetricsSnapshot, now: float, result: TargetResult
    ) -> Observation:
        state = self._state[target.key]
        cluster_state = self.cluster.read(target)
        observation = Observation(metrics=snapshot, cluster=cluster_state)
        fc = state.forecaster
        if not state.seeded:
            self._seed(target, state, now, cluster_state.spec_replicas, cluster_state.placeholder_replicas)
        fresh = (
            snapshot.newest_sample_time is None
            or now - snapshot.newest_sample_time <= target.scaling.stale_after_seconds
        )
        forecast: ForecastView | None
        if self.forecast_source is None:
            completed = fc.observe(now, snapshot.load if fresh else None)
            cpu = time.process_time()
            fc.refresh(now, bucket_completed=completed, allow_fit=self._fit_spent < self.policy.fit_budget_seconds)
            self._fit_spent += time.process_time() - cpu
            forecast = fc.view(now)
        else:
            forecast = self.forecast_source(target, now)
        if state.capacity is not None and fresh:
            self._learn_capacity(state.capacity, target, snapshot, cluster_state.ready_replicas)
        lead_times = self.metrics.lead_times(target, now) if target.cold_start.learn else None
        decision = decide(
            target=target,
            observation=observation,
            forecast=forecast,
            history=tuple(state.history),
            now=now,
            loop_interval=self.policy.loop_interval_seconds,
            lead_times=lead_times,
            per_replica_capacity=state.capacity.estimate() if state.capacity else None,
        )
        state.history.append(decision.record())
        self._prune(state, target, now)
        state.last = decision
        result.decision = decision
        if result.dry_run:
            self.log.info(
                "decision",
                dry_run=True,
                would_set_replicas=decision.replicas,
                would_set_placeholders=decision.placeholders,
                observation=_observation_dict(observation),
                **decision.to_dict(),
            )
            return observation
        result.applied = self.cluster.apply(target, decision)
        self.log.info(
            "decision",
            dry_run=False,
            observation=_observation_dict(observation),
            applied=result.applied.__dict__,
            **decision.to_dict(),
        )
        return observation

    def _seed(self, target: Target, state: _TargetState, now: float, replicas: int, placeholders: int) -> None:
        """Load history and assume the current size was recommended (no scale-down on restart)."""
        fc = state.forecaster
        start = now - target.forecast.history_days * 86400
        end = (now // fc.step) * fc.step - fc.step
        if self.forecast_source is None:
            try:
                fc.seed(self.metrics.load_history(target, start=start, end=end, step=fc.step))
            except MetricsError as exc:
                self.log.warning("history_unavailable", target=target.key, error=str(exc), kind=exc.kind)
        state.history.append(
            DecisionRecord(
                time=now,
                serving_recommendation=replicas,
                total_recommendation=replicas + placeholders,
                replicas=replicas,
                placeholders=placeholders,
            )
        )
        state.seeded = True

    @staticmethod
    def _learn_capacity(capacity: LearnedCapacity, target: Target, snapshot: MetricsSnapshot, ready: int) -> None:
        latency = snapshot.latency_mean if target.slo.latency_signal == "mean" else snapshot.latency_quantile
        if snapshot.load is None or latency is None or ready <= 0:
            return
        capacity.add(per_replica_load=snapshot.load / ready, latency=latency)

    @staticmethod
    def _prune(state: _TargetState, target: Target, now: float) -> None:
        keep = max(
            target.scaling.scale_down_stabilization_seconds,
            target.placeholders.scale_down_stabilization_seconds,
            target.scaling.scale_up.period_seconds,
            target.scaling.scale_down.period_seconds,
        )
        while state.history and now - state.history[0].time > keep:
            state.history.popleft()


def _observation_dict(observation: Observation) -> dict[str, Any]:
    m, c = observation.metrics, observation.cluster
    out = {k: v for k, v in m.__dict__.items() if v is not None and k != "problems"}
    if m.problems:
        out["problems"] = dict(m.problems)
    out.update({f"cluster_{k}": v for k, v in c.__dict__.items() if v is not None})
    return out
