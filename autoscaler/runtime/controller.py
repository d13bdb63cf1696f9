"""One control cycle for every target: observe -> forecast -> decide -> act.

This is the single copy of the control logic. It reaches the world only through the
ports in :mod:`autoscaler.ports`, so the in-cluster loop, the simulator and the tests all
run it unchanged. Scheduling (when cycles run) lives elsewhere; ``reconcile_once`` is one
cycle and is what ``autoscaler run --once`` and the simulator call.

Failure handling: one target's failure never stops the others; a metrics outage yields
"unknown" signals (which ``decide`` turns into holds, never scale-downs); a cluster read
failure skips the target for this cycle (nothing is written on a state we could not see),
and so does a history that could not be read (no answer, or a malformed one): the target
is seeded on a later cycle. With ``cycle_deadline_seconds`` a cycle ends on time: targets
not reached by then hold and are reported (``cycle_deadline_exceeded``); the histories of
new targets are loaded a few at a time (:data:`HISTORY_CONCURRENCY`) within half of it.

With :class:`~autoscaler.ports.TargetOperations` (the in-cluster controller) every decision
is also published on the target (a failed publish is counted, the decision stands); a target
the operator paused is not decided at all (it holds, pinned when asked); and a target that
is not enforcing (dry-run or paused) is *released* when enforcing left something behind (a
raised HPA floor, placeholder pods): the only writes a dry-run makes.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from autoscaler.core.capacity import LearnedCapacity, learn_from, learner_for
from autoscaler.core.decide import decide
from autoscaler.core.forecast_view import ForecastView
from autoscaler.core.freshness import usable
from autoscaler.core.types import ClusterState, Decision, DecisionRecord, MetricsSnapshot, Observation
from autoscaler.errors import AutoscalerError, CycleDeadlineExceeded, MetricsError, MetricsUnavailable
from autoscaler.forecasting.demotion import score_and_demote, shadow_for
from autoscaler.forecasting.fit_scheduler import OWED_WORK_SECONDS, FitScheduler
from autoscaler.forecasting.fit_state import decision_records, decision_rows, decode, encode
from autoscaler.forecasting.forecaster import TargetForecaster
from autoscaler.forecasting.shadow import TargetShadow
from autoscaler.policy.schema import Policy, Target
from autoscaler.ports import (
    ApplyResult,
    Clock,
    Cluster,
    ClusterRead,
    FitStateStore,
    MetricsSource,
    TargetOperations,
    TargetStatus,
)
from autoscaler.runtime import heap
from autoscaler.runtime.actuators import Actuator, DryRun, Enforce, owes_release
from autoscaler.runtime.save_rounds import SaveRounds, group_of
from models.series import Series

Mode = Literal["dry-run", "enforce"]

#: Targets whose start-up history is loaded at once (each is one or a few range queries):
#: a slow metrics source costs one call time per this many new targets, not per target.
HISTORY_CONCURRENCY = 4

#: Seconds between saves of the fitted state (with a ``fit_store``): a fit changes hourly,
#: so a crash loses at most this much of it; a clean stop saves on the way out.
FIT_SAVE_INTERVAL_SECONDS = 300.0

#: CPU seconds reserved for a save whose cost is not known yet (the first after a start):
#: at 1,000 targets a whole save took ~0.6 s, and reserving nothing took that cycle to 1.3 s.
FIRST_SAVE_SECONDS = OWED_WORK_SECONDS / 2

#: Decide passes remembered to reserve CPU for the next one: one bucket's worth of cycles at
#: the defaults, so the costlier pass of a cycle that scores a completed bucket is among them.
DECIDE_PASSES_KEPT = 16


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
    #: The model the automatic selection dropped this cycle for under-forecasting, if any.
    demoted_model: str | None = None
    #: The operator paused the target: nothing was decided.
    paused: bool = False
    #: What releasing (or pinning) the target wrote this cycle.
    released: tuple[str, ...] = ()
    #: The error kind of a failed status publish (the decision still stands).
    status_error: str | None = None
    #: What the target's metrics showed when it was decided (``None``: not decided), for
    #: the caller's telemetry: returned with the result, not pushed through a callback.
    observation: Observation | None = None


@dataclass
class CycleResult:
    """The outcome of one cycle for all targets."""

    time: float
    results: list[TargetResult] = field(default_factory=list)
    metrics_error: MetricsError | None = None


@dataclass
class _Step:
    """One target's progress through a cycle."""

    target: Target
    snapshot: MetricsSnapshot
    result: TargetResult
    cluster: ClusterRead | None = None
    seconds: float = 0.0  # wall time spent on this target in the first pass


@dataclass
class _TargetState:
    forecaster: TargetForecaster
    history: deque[DecisionRecord] = field(default_factory=lambda: deque(maxlen=4096))
    capacity: LearnedCapacity | None = None
    seeded: bool = False
    last: Decision | None = None
    shadow: TargetShadow | None = None


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
        forecast_source: Callable[[Target, float], ForecastView | None] | None = None,
        cycle_deadline_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        operations: TargetOperations | None = None,
        fit_store: FitStateStore | None = None,
        fit_save_interval_seconds: float = FIT_SAVE_INTERVAL_SECONDS,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.metrics = metrics
        #: Status, pause and release on the cluster (``None``: no objects to annotate).
        self.operations = operations
        #: Where fitted states and recent decisions are kept across restarts (``None``: nowhere).
        self.fit_store = fit_store
        self.fit_save_interval_seconds = fit_save_interval_seconds
        #: Saved states of targets not seeded yet (read from ``fit_store`` on the first cycle).
        self._saved: dict[str, dict[str, Any]] | None = None
        #: Which group of targets' states each cycle encodes (a save spread over its interval).
        self._saves = SaveRounds()
        #: Wall seconds a cycle may take before the targets it has not reached hold
        #: (``None``: no deadline, as in the simulator, whose cycles must all complete).
        self.cycle_deadline_seconds = cycle_deadline_seconds
        self._monotonic = monotonic
        self.cluster = cluster
        #: What a decision is handed to, by the target's mode (built once: they hold only ports).
        self._actuators: dict[bool, Actuator] = {False: Enforce(cluster), True: DryRun(operations)}
        self.clock = clock
        self.mode_override = mode_override
        self.log = log if log is not None else NullLog()
        #: Replaces the fitted models (the simulator's perfect-foresight oracle uses it).
        self.forecast_source = forecast_source
        self.policy = policy
        self._state: dict[str, _TargetState] = {}
        #: Process CPU seconds (all threads): what the cycle budget is counted in.
        self._cpu_clock = cpu_clock
        #: Which forecasts each cycle refreshes within the budget (on the same CPU meter).
        self._fits = FitScheduler(cpu_clock)
        #: CPU seconds of the latest decide passes and of the latest save (``None``: none
        #: yet): reserved out of the cycle budget before the forecast pass, which runs
        #: before them.
        self._decide_seconds: deque[float] = deque(maxlen=DECIDE_PASSES_KEPT)
        self._save_seconds: float | None = None
        #: When the heap is next trimmed (``None``: one interval after the first cycle).
        self._next_trim: float | None = None
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
                loop = policy.loop_interval_seconds
                forecaster = TargetForecaster(target, horizon_seconds=horizon, loop_seconds=loop)
                state = _TargetState(forecaster=forecaster)
            elif old.get(target.key) != target:
                previous = state.forecaster
                state.forecaster = TargetForecaster(
                    target, horizon_seconds=horizon, loop_seconds=policy.loop_interval_seconds
                )
                if previous.series is not None and previous.step == state.forecaster.step:
                    state.forecaster.seed(previous.series, previous.peak_series())
                state.shadow = None
            if state.shadow is None:
                state.shadow = shadow_for(target, loop_seconds=policy.loop_interval_seconds)
            state.capacity = learner_for(target, state.capacity)
            states[target.key] = state
        self.policy = policy
        self._state = states

    @staticmethod
    def _horizon(target: Target, policy: Policy) -> float:
        """Forecast horizon: the full cold start, a loop, and a bucket of slack."""
        cold = target.cold_start
        return cold.total_seconds * 1.5 + policy.loop_interval_seconds + target.forecast.resolution_seconds

    def is_dry_run(self, target: Target) -> bool:
        """Whether this target's decisions are only logged."""
        mode = self.mode_override or target.mode
        return mode == "dry-run"

    def forecaster(self, key: str) -> TargetForecaster:
        """The forecasting state of a target (for observability and tests)."""
        return self._state[key].forecaster

    def shadow(self, key: str) -> TargetShadow | None:
        """A target's shadow scores (``None`` before its first cycle)."""
        return self._state[key].shadow

    def last_decision(self, key: str) -> Decision | None:
        """The most recent decision for a target."""
        return self._state[key].last

    def reconcile_once(self, now: float | None = None) -> CycleResult:
        """Run one cycle for every target. Never raises for a per-target failure.

        Three passes, so the forecast work can be budgeted across targets before any
        decision uses it: read each target's cluster state and observe its load, refresh
        the forecasts (:class:`FitScheduler`) within what the other passes leave of the
        cycle's CPU budget, then decide and act per target.
        """
        now = self.clock.now() if now is None else now
        cpu_started = self._cpu_clock()
        if self._saved is None:
            self._saved = self._load_fit_states()
        budget = self.cycle_deadline_seconds
        deadline = None if budget is None else self._monotonic() + budget
        cycle = CycleResult(time=now)
        targets = self.policy.targets
        snapshots: Mapping[str, MetricsSnapshot]
        try:
            snapshots = self.metrics.observe(targets, now)
        except MetricsError as exc:
            cycle.metrics_error = exc
            self.log.warning("metrics_unavailable", error=str(exc), kind=exc.kind)
            snapshots = {}
        # New targets' histories may take half the budget: the other half is every target's cycle.
        histories = self._load_histories(targets, now, None if budget is None else self._monotonic() + budget / 2)
        steps = []
        for target in targets:
            started = time.perf_counter()
            snapshot = snapshots.get(target.key) or MetricsSnapshot(
                time=now, problems={"load": cycle.metrics_error.kind if cycle.metrics_error else "missing"}
            )
            result = TargetResult(target=target.key, dry_run=self.is_dry_run(target))
            step = _Step(target=target, snapshot=snapshot, result=result)
            try:
                self._check_deadline(deadline)
                step.cluster = self._observe_target(target, snapshot, now, histories)
            except AutoscalerError as exc:
                self._failed(step.result, exc)
            step.seconds = time.perf_counter() - started
            steps.append(step)
        started = time.perf_counter()
        save_group = None
        if self.fit_store is not None:
            self._plan_saves(now)
            save_group = self._saves.next_due(now)
        if self.forecast_source is None:
            forecasters = [self._state[s.target.key].forecaster for s in steps if s.cluster is not None]
            if save_group is not None and any(fc.restore_owed for fc in forecasters):
                # Saves yield to restores: the store holds the very states being restored,
                # and at 1,000 targets a group's encoding (~0.1 s) was a quarter of what a
                # restart's cycles had left for restoring. A crash meanwhile loses only the
                # decisions made since the start (the fits are still in the store).
                save_group = None
            # What the cycle has spent, and what its decide pass and save will take: not for forecasting.
            saving = 0.0
            if save_group is not None:
                saving = FIRST_SAVE_SECONDS if self._save_seconds is None else self._save_seconds
            spent = self._cpu_clock() - cpu_started + max(self._decide_seconds, default=0.0) + saving
            ignored = self._fits.run(
                forecasters,
                now,
                spent=spent,
                saving=saving,
                budget=self.policy.fit_budget_seconds,
                interval=self.policy.loop_interval_seconds,
            )
            for fc, reason in ignored:
                self.log.warning("fit_state_ignored", target=fc.target.key, reason=reason)
        shared = (time.perf_counter() - started) / max(1, len(steps))  # the forecast pass, split evenly
        decide_started = self._cpu_clock()
        for step in steps:
            started = time.perf_counter()
            if step.cluster is not None:
                try:
                    self._check_deadline(deadline)
                    step.result.observation = self._decide_target(
                        step.target, step.snapshot, step.cluster, now, step.result
                    )
                except AutoscalerError as exc:
                    self._failed(step.result, exc)
            step.result.duration_seconds = step.seconds + shared + time.perf_counter() - started
            cycle.results.append(step.result)
        self._decide_seconds.append(self._cpu_clock() - decide_started)
        if save_group is not None:
            self._save(now, groups=(save_group,))
        self._trim_heap_when_due(now)
        return cycle

    def _trim_heap_when_due(self, now: float) -> None:
        """Once per :data:`TRIM_INTERVAL_SECONDS`, return freed heap to the OS (see :mod:`.heap`)."""
        if self._next_trim is None or now >= self._next_trim:
            if self._next_trim is not None:
                heap.trim_heap()
            self._next_trim = now + heap.TRIM_INTERVAL_SECONDS

    def _load_fit_states(self) -> dict[str, dict[str, Any]]:
        """The saved states by target key; an unreadable store or part is logged and skipped."""
        if self.fit_store is None:
            return {}
        try:
            parts = self.fit_store.load()
        except AutoscalerError as exc:
            self.log.warning("fit_state_unavailable", error=str(exc), kind=exc.kind)
            return {}
        with collections_paused():
            decoded = decode(parts)
        for reason in decoded.ignored:
            self.log.warning("fit_state_ignored", reason=reason)
        self.log.info("fit_state_loaded", targets=len(decoded.states), parts=len(parts))
        return decoded.states

    def save_fit_state(self, now: float) -> None:
        """Save every target's fitted state and recent decisions to ``fit_store``; never raises.

        A clean stop calls it: every group is encoded now. While running, each cycle
        encodes at most one group that is due (`SaveRounds`), none while a saved fit is
        still being restored, and saves the set once every group has an encoding. A
        target not seeded yet keeps the state it was saved with, so a save soon after a
        start does not lose what the start has not restored yet.
        """
        if self.fit_store is None:
            return
        self._plan_saves(now)
        self._save(now, groups=range(self._saves.groups))

    def _plan_saves(self, now: float) -> None:
        targets, loop = len(self.policy.targets), self.policy.loop_interval_seconds
        self._saves.plan(targets, interval=self.fit_save_interval_seconds, loop=loop, now=now)

    def _save(self, now: float, *, groups: Iterable[int]) -> None:
        """Encode ``groups`` now, then hand the store the whole set if every group has an encoding."""
        assert self.fit_store is not None  # noqa: S101 - checked by the callers
        started = self._cpu_clock()
        with collections_paused():
            for group in groups:
                parts, count = self._encoded_states(group)
                self._saves.record(group, parts, count, now)
        complete = self._saves.complete()
        if complete is not None:
            parts, count = complete
            try:
                self.fit_store.save(parts)
            except AutoscalerError as exc:
                self.log.warning("fit_state_save_failed", error=str(exc), kind=exc.kind)
            else:
                self.log.info("fit_state_saved", targets=count, parts=len(parts), bytes=sum(map(len, parts)))
        self._save_seconds = self._cpu_clock() - started

    def _encoded_states(self, group: int) -> tuple[list[bytes], int]:
        """The states of the targets in ``group``, encoded (`save_fit_state`), and their number."""
        states: dict[str, dict[str, Any]] = {}
        for target in self.policy.targets:
            if group_of(target.key, self._saves.groups) != group:
                continue
            state = self._state[target.key]
            if not state.seeded:
                if self._saved and target.key in self._saved:
                    states[target.key] = self._saved[target.key]
                continue
            states[target.key] = {
                "forecast": state.forecaster.export_state(),
                "decisions": decision_rows(state.history),
                "capacity": None
                if state.capacity is None
                else [target.capacity.per_replica, state.capacity.export_bins()],
            }
        return encode(states), len(states)

    def _failed(self, result: TargetResult, exc: AutoscalerError) -> None:
        result.error = exc
        self.log.warning("target_failed", target=result.target, error=str(exc), kind=exc.kind)

    def _check_deadline(self, deadline: float | None) -> None:
        """Raise when the cycle's deadline has passed (the target holds this cycle)."""
        if deadline is not None and self._monotonic() > deadline:
            raise CycleDeadlineExceeded(
                f"the cycle's {self.cycle_deadline_seconds:g}s deadline passed before this target was reached"
            )

    def _history_range(self, target: Target, now: float) -> tuple[float, float, float]:
        step = self._state[target.key].forecaster.step
        return now - target.forecast.history_days * 86400, (now // step) * step - step, step

    def _load_histories(
        self, targets: Sequence[Target], now: float, deadline: float | None
    ) -> dict[str, Series | MetricsError]:
        """The start-up history of every target not seeded yet, loaded a few at a time.

        Returns what arrived before ``deadline``, by target key: a target missing from the
        result was not reached (it holds this cycle and is seeded on a later one).
        """
        pending = [t for t in targets if not self._state[t.key].seeded]
        if self.forecast_source is not None or not pending:
            return {}

        def load(target: Target) -> Series | MetricsError:
            start, end, step = self._history_range(target, now)
            try:
                return self.metrics.load_history(target, start=start, end=end, step=step)
            except MetricsError as exc:
                return exc

        pool = ThreadPoolExecutor(max_workers=min(HISTORY_CONCURRENCY, len(pending)), thread_name_prefix="history")
        futures: dict[str, Future[Series | MetricsError]] = {t.key: pool.submit(load, t) for t in pending}
        timeout = None if deadline is None else max(0.0, deadline - self._monotonic())
        done, _ = wait(futures.values(), timeout=timeout)
        # Calls still running end by their own timeout; their answers are dropped.
        pool.shutdown(wait=False, cancel_futures=True)
        return {key: future.result() for key, future in futures.items() if future in done}

    def _observe_target(
        self, target: Target, snapshot: MetricsSnapshot, now: float, histories: Mapping[str, Series | MetricsError]
    ) -> ClusterRead:
        """Read the target's cluster state, seed it on its first cycle, and bucket its load."""
        state = self._state[target.key]
        reading = self.cluster.read(target)
        if not state.seeded:
            self._seed(target, state, now, reading.state, histories)
        if self.forecast_source is None:
            state.forecaster.observe(now, snapshot.load if self._fresh(target, snapshot, now) else None)
        return reading

    @staticmethod
    def _fresh(target: Target, snapshot: MetricsSnapshot, now: float) -> bool:
        return usable(snapshot.newest_sample_time, now, stale_after=target.scaling.stale_after_seconds)

    def release(self, target: Target) -> tuple[str, ...]:
        """Undo what enforcing wrote for a target (a target removed from the policy). Never raises.

        Returns:
            What was written (empty without operations, on failure, or with nothing to undo).
        """
        if self.operations is None:
            return ()
        try:
            notes = self.operations.release(target)
        except AutoscalerError as exc:
            self.log.warning("release_failed", target=target.key, error=str(exc), kind=exc.kind)
            return ()
        self.log.info("released", target=target.key, notes=list(notes))
        return notes

    def _publish(self, target: Target, result: TargetResult, status: TargetStatus) -> None:
        if self.operations is None:
            return
        result.status_error = self.operations.publish(target, status)

    def _paused(self, target: Target, reading: ClusterRead, now: float, result: TargetResult) -> None:
        """A paused target: pin it if asked, release it, say so; nothing is decided."""
        cluster_state = reading.state
        result.paused = True
        ops = self.operations
        if ops is not None:
            notes: tuple[str, ...] = ()
            if cluster_state.paused_replicas is not None:
                notes = ops.pin(target, cluster_state.paused_replicas, reading)
            if owes_release(cluster_state):
                notes += ops.release(target)
            result.released = notes
            if notes:  # publish the state as it is now, not as it was before the writes
                cluster_state = self.cluster.read(target).state
        self.log.info("paused", target=target.key, pinned=cluster_state.paused_replicas, wrote=list(result.released))
        fc = self._state[target.key].forecaster
        self._publish(
            target,
            result,
            TargetStatus(
                mode="paused",
                time=now,
                current_replicas=cluster_state.spec_replicas,
                current_placeholders=cluster_state.placeholder_replicas,
                reason="Paused",
                model=fc.prediction.model if fc.prediction is not None else None,
            ),
        )

    def _decision_status(self, target: Target, decision: Decision, result: TargetResult) -> TargetStatus:
        fc = self._state[target.key].forecaster
        return TargetStatus(
            mode="dry-run" if result.dry_run else "enforce",
            time=decision.time,
            current_replicas=decision.current_replicas,
            current_placeholders=decision.current_placeholders,
            desired_replicas=decision.replicas,
            desired_placeholders=decision.placeholders,
            reason=decision.reason.value,
            placeholder_reason=decision.placeholder_reason.value,
            model=fc.prediction.model if fc.prediction is not None else None,
            forecast=decision.predicted_load_node_horizon,
        )

    def _decide_target(
        self, target: Target, snapshot: MetricsSnapshot, reading: ClusterRead, now: float, result: TargetResult
    ) -> Observation:
        state = self._state[target.key]
        cluster_state = reading.state
        observation = Observation(metrics=snapshot, cluster=cluster_state)
        if cluster_state.paused:
            self._paused(target, reading, now, result)
            return observation
        source = self.forecast_source
        forecast: ForecastView | None = state.forecaster.view(now) if source is None else source(target, now)
        if source is None and state.shadow is not None:
            demotion = score_and_demote(
                state.forecaster, state.shadow, now=now, automatic=target.forecast.model == "auto"
            )
            if demotion is not None:
                result.demoted_model = demotion.model
                self.log.warning(
                    "model_demoted",
                    target=target.key,
                    model=demotion.model,
                    served=demotion.served,
                    coverage=round(demotion.coverage, 3),
                    points=demotion.points,
                    quantile=target.forecast.quantile,
                )
        if state.capacity is not None and self._fresh(target, snapshot, now):
            learn_from(state.capacity, snapshot, ready=cluster_state.ready_replicas, signal=target.slo.latency_signal)
        lead_times = self.metrics.lead_times(target, now) if target.cold_start.learn else None
        learned = state.capacity.estimate() if state.capacity else None
        state.forecaster.unit_capacity = learned
        decision = decide(
            target=target,
            observation=observation,
            forecast=forecast,
            history=tuple(state.history),
            now=now,
            loop_interval=self.policy.loop_interval_seconds,
            lead_times=lead_times,
            per_replica_capacity=learned,
        )
        state.history.append(decision.record())
        self._prune(state, target, now)
        if state.shadow is not None:
            slo = target.slo
            state.shadow.after_decision(
                decision, observation, slo_seconds=slo.latency_seconds, signal=slo.latency_signal
            )
        state.last = decision
        result.decision = decision
        actuation = self._actuators[result.dry_run].act(target, decision, reading)
        result.applied, result.released = actuation.applied, actuation.released
        self.log.info("decision", **actuation.log, observation=_observation_dict(observation), **decision.to_dict())
        self._publish(target, result, self._decision_status(target, decision, result))
        return observation

    def _seed(
        self,
        target: Target,
        state: _TargetState,
        now: float,
        cluster: ClusterState,
        histories: Mapping[str, Series | MetricsError],
    ) -> None:
        """Seed the history and assume the current size was recommended (no scale-down on restart).

        A history that could not be read (no answer, a malformed one, or not reached before
        the deadline) fails the target for this cycle, so it holds and is seeded later; a
        target without history (new, or its query refused) starts from its live load.
        """
        fc = state.forecaster
        replicas, placeholders = cluster.spec_replicas, cluster.placeholder_replicas
        if self.forecast_source is None:
            history = histories.get(target.key)
            if history is None:
                raise CycleDeadlineExceeded(
                    f"the cycle's {self.cycle_deadline_seconds:g}s deadline passed before this target's history loaded"
                )
            if isinstance(history, MetricsError):
                self.log.warning("history_unavailable", target=target.key, error=str(history), kind=history.kind)
                if isinstance(history, MetricsUnavailable):
                    raise history
            else:
                fc.seed(history)
        saved = (self._saved or {}).pop(target.key, None) or {}
        forecast = saved.get("forecast")
        if self.forecast_source is None and isinstance(forecast, dict) and fc.series is not None:
            reason = fc.restore_state(forecast)
            if reason is not None:
                self.log.warning("fit_state_ignored", target=target.key, reason=reason)
        capacity = saved.get("capacity")
        # The bins are fractions of the policy value: kept only while it is unchanged.
        if state.capacity is not None and isinstance(capacity, list) and len(capacity) == 2:
            per_replica, bins = capacity
            if per_replica == target.capacity.per_replica:
                state.capacity.restore_bins(bins)
        records = decision_records(saved.get("decisions"), now)
        last = records[-1] if records else None
        if last is not None and (last.replicas, last.placeholders) == (replicas, placeholders):
            # The cluster is as the saved decisions left it: carry on from them, so the
            # stabilization windows and rate limits run as if there had been no restart.
            state.history.extend(records)
        else:
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
    def _prune(state: _TargetState, target: Target, now: float) -> None:
        keep = max(
            target.scaling.scale_down_stabilization_seconds,
            target.placeholders.scale_down_stabilization_seconds,
            target.scaling.scale_up.period_seconds,
            target.scaling.scale_down.period_seconds,
        )
        while state.history and now - state.history[0].time > keep:
            state.history.popleft()


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for encoding and decoding the saved fit state.

    A save exports every target as lists and dicts: hundreds of thousands of containers
    at 1,000 targets, all freed by reference counting when the parts are built (they
    hold no cycles), which would otherwise trigger collections of the whole heap on the
    way (0.2-0.25 s each at 1,000 targets, measured at a third of a save's CPU). A load
    decodes as many containers, all kept (the saved states until their targets are
    seeded): four full collections, 0.6 of its 0.8 s at 1,000 targets, that could free
    nothing. Collection resumes after, also when the block raises.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _observation_dict(observation: Observation) -> dict[str, Any]:
    m, c = observation.metrics, observation.cluster
    out = {k: v for k, v in m.__dict__.items() if v is not None and k != "problems"}
    if m.problems:
        out["problems"] = dict(m.problems)
    out.update({f"cluster_{k}": v for k, v in c.__dict__.items() if v is not None})
    return out
