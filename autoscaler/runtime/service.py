"""The long-running controller process: schedule cycles, follow the policy, lead or stand by.

A thin shell around :meth:`Controller.reconcile_once` (one cycle), in the style of KEDA's
scale loop: an apscheduler interval job with ``max_instances=1`` (cycles never overlap),
``coalesce=True`` (no catch-up burst after a pause) and a bounded ``misfire_grace_time``.
Each cycle first picks up a new policy generation (accepted updates only), narrowed to this
controller's shard when one is configured (:mod:`autoscaler.kube.sharding`: re-evaluated every
cycle, so relabelled Deployments and unreadable ones are followed without a new generation),
then acts only if this replica is the leader. SIGTERM stops the scheduler after the running
cycle ends.

Besides the cycle's decisions, the service exports what the control loop cannot see about
itself: failed metrics queries and unknown decision signals by error kind (a metrics
source such as Prometheus reports an outage as unknown values, never by raising), and
clock jumps — the controller's clock stepping against the monotonic clock between two
cycles by more than :data:`CLOCK_JUMP_TOLERANCE_SECONDS` (logged as ``clock_jump``).

Every ended cycle is progress for :class:`~autoscaler.runtime.telemetry.Health`: ``/healthz`` fails and
the Lease elector stops renewing when none ended for :func:`stall_seconds` (a stuck loop
gives up leadership instead of holding it forever), and :class:`LeaderGuardedCluster`
re-checks leadership before each write.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from autoscaler.core.types import Decision
from autoscaler.errors import NotLeader
from autoscaler.policy.schema import Policy, Target
from autoscaler.ports import (
    ApplyResult,
    Cluster,
    ClusterRead,
    LeaderElector,
    PolicySource,
    TargetOperations,
    TargetStatus,
)
from autoscaler.runtime.controller import Controller, CycleResult
from autoscaler.runtime.telemetry import Health, Telemetry

#: A step of the controller clock against the monotonic clock above this between two cycles
#: is reported as a clock jump (NTP slews are far smaller; staleness needs >= 10 s).
CLOCK_JUMP_TOLERANCE_SECONDS = 10.0
#: The loop is stuck when no cycle ended for this many loop intervals ...
STALL_INTERVALS = 3
#: ... plus this much: a cycle may run up to its deadline (one interval) plus the calls
#: still in flight then (an API-server call times out after 15 s, a Prometheus one sooner).
STALL_GRACE_SECONDS = 30.0


def stall_seconds(loop_interval: float) -> float:
    """Seconds without an ended cycle after which the loop counts as stuck (``/healthz`` fails). Pure."""
    return STALL_INTERVALS * loop_interval + STALL_GRACE_SECONDS


class Scope(Protocol):
    """Narrows a policy to the targets this controller owns (a shard), before the Controller sees it."""

    def select(self, policy: Policy, generation: int) -> Policy:
        """The policy with only this controller's targets (may read the cluster; must not raise)."""
        ...


class AlwaysLeader:
    """Leader election for a single replica (or ``--once``): always the leader."""

    def is_leader(self) -> bool:
        """Always true."""
        return True

    def stop(self) -> None:
        """Nothing to release."""


class LeaderGuardedCluster:
    """A :class:`~autoscaler.ports.Cluster` that writes only while this replica leads.

    The service checks leadership when a cycle starts; a cycle that was stuck meanwhile
    (and lost the Lease, see :mod:`autoscaler.kube.leader`) would otherwise still write
    what it decided, next to the new leader. Each write asks again; a refused one fails
    that target with :class:`~autoscaler.errors.NotLeader` (nothing written).
    """

    def __init__(self, cluster: Cluster, is_leader: Callable[[], bool]) -> None:
        self.cluster = cluster
        self.is_leader = is_leader

    def read(self, target: Target) -> ClusterRead:
        """The wrapped cluster's read."""
        return self.cluster.read(target)

    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        """The wrapped cluster's write, if this replica still leads."""
        if not self.is_leader():
            raise NotLeader(f"write {target.key}: this replica no longer holds the leader Lease")
        return self.cluster.apply(target, decision, read)

    def reset_memory(self) -> None:
        """Forwarded (what another leader wrote is not a manual edit)."""
        reset = getattr(self.cluster, "reset_memory", None)
        if callable(reset):
            reset()


class LeaderGuardedOperations:
    """:class:`~autoscaler.ports.TargetOperations` that write only while this replica leads.

    Same reason as :class:`LeaderGuardedCluster`: status, release and pin are writes too.
    """

    def __init__(self, operations: TargetOperations, is_leader: Callable[[], bool]) -> None:
        self.operations = operations
        self.is_leader = is_leader

    def publish(self, target: Target, status: TargetStatus) -> str | None:
        """The wrapped status publish, if this replica still leads (else ``not_leader``)."""
        if not self.is_leader():
            return "not_leader"
        return self.operations.publish(target, status)

    def release(self, target: Target) -> tuple[str, ...]:
        """The wrapped release, if this replica still leads."""
        if not self.is_leader():
            raise NotLeader(f"release {target.key}: this replica no longer holds the leader Lease")
        return self.operations.release(target)

    def pin(self, target: Target, replicas: int, read: ClusterRead | None = None) -> tuple[str, ...]:
        """The wrapped pin, if this replica still leads."""
        if not self.is_leader():
            raise NotLeader(f"pin {target.key}: this replica no longer holds the leader Lease")
        return self.operations.pin(target, replicas, read)


class Service:
    """Runs controller cycles on a schedule while this replica leads."""

    def __init__(
        self,
        *,
        controller: Controller,
        policy_source: PolicySource,
        elector: LeaderElector,
        telemetry: Telemetry,
        health: Health,
        log: Any,
        scope: Scope | None = None,
        lease: str = "",
    ) -> None:
        """Wire the service.

        Args:
            controller: Runs one cycle.
            policy_source: The policy in force and its generation.
            elector: Whether this replica may act.
            telemetry: Metrics.
            health: Liveness/readiness state.
            log: structlog-style logger.
            scope: This controller's shard, applied to every policy (``None`` = all targets).
            lease: ``namespace/name`` of the leader Lease (the ``lease`` label of
                ``autoscaler_leader``; empty without leader election).
        """
        self.controller = controller
        self.scope = scope
        self.policy_source = policy_source
        self.elector = elector
        self.telemetry = telemetry
        self.health = health
        self.log = log
        self.generation: int | None = None
        self.interval = controller.policy.loop_interval_seconds
        self._scheduler: BackgroundScheduler | None = None
        self._next_scheduled: float | None = None
        self._lock = threading.Lock()
        self._was_leader = False
        #: (controller time, monotonic time) at the start of the last reconcile.
        self._last_times: tuple[float, float] | None = None
        # Read at every scrape: a replica whose loop is stuck shows it stopped leading.
        telemetry.leader.labels(lease).set_function(lambda: 1.0 if self.elector.is_leader() else 0.0)

    def cycle(self, *, scheduled: float | None = None) -> CycleResult | None:
        """One cycle: follow the policy, then reconcile if leading. Never raises.

        Returns:
            The cycle's result, or ``None`` when standing by (not the leader) or on an
            unexpected error (logged and counted).
        """
        with self._lock:
            started = time.time()
            try:
                self.follow_policy()
                leader = self.elector.is_leader()
                if leader and not self._was_leader:
                    # What another leader wrote meanwhile is not a manual edit.
                    reset = getattr(self.controller.cluster, "reset_memory", None)
                    if callable(reset):
                        reset()
                self._was_leader = leader
                self.health.standby = not leader
                if not leader:
                    self.log.info("standby", reason="another replica holds the lease")
                    self.health.cycle_done()
                    return None
                monotonic = time.monotonic()
                result = self.controller.reconcile_once()
                self._check_clock(result.time, monotonic)
                for target_result in result.results:
                    if target_result.observation is not None:
                        self.telemetry.record_observation(target_result.target, target_result.observation)
                self.telemetry.record_cycle(result, started=started, scheduled=scheduled)
                loop = getattr(self.controller.metrics, "last_loop", None)
                if loop is not None and getattr(loop, "time", None) == result.time:
                    self.telemetry.record_metrics_loop(dict(getattr(loop, "failed", {})))
                for key in (t.key for t in self.controller.policy.targets):
                    self._export_forecast(key, result.time)
                    shadow = self.controller.shadow(key)
                    if shadow is not None:
                        self.telemetry.record_shadow(key, shadow)
                self.health.cycle_done()
                return result
            except Exception as exc:
                self.telemetry.errors.labels("unexpected").inc()
                self.log.error("cycle_failed", error=repr(exc), exc_info=True)
                return None
            finally:
                self.health.progress()  # the loop is alive even when a cycle failed

    def _check_clock(self, now: float, monotonic: float) -> None:
        """Report a step of the controller clock against the monotonic clock since the last cycle."""
        last, self._last_times = self._last_times, (now, monotonic)
        if last is None:
            return
        jump = (now - last[0]) - (monotonic - last[1])
        if abs(jump) <= CLOCK_JUMP_TOLERANCE_SECONDS:
            return
        self.telemetry.record_clock_jump(jump)
        self.log.warning(
            "clock_jump",
            kind="clock_jump",
            direction="forward" if jump > 0 else "backward",
            seconds=round(jump, 3),
            previous_cycle_time=last[0],
            cycle_time=now,
        )

    def follow_policy(self) -> None:
        """Apply the policy source's policy when its generation, or this shard's share, changed (each cycle)."""
        policy, generation = self.policy_source.current()
        # Targets deleted from the policy document itself are released (their HPA floor and
        # placeholders restored). Not those a shard merely stopped admitting, or could not
        # read this cycle: another shard, or this one next cycle, owns them.
        listed = {t.key for t in policy.targets}
        removed = [] if generation == self.generation else [
            t for t in self.controller.policy.targets if t.key not in listed
        ]
        if self.scope is not None:
            # Every cycle: shard membership can change without a new generation.
            policy = self.scope.select(policy, generation)
            if generation == self.generation and policy == self.controller.policy:
                return
        elif generation == self.generation:
            return
        self.controller.set_policy(policy)
        self.telemetry.units = {t.key: t.capacity.unit for t in policy.targets}
        self.generation = generation
        for target in removed:
            self.controller.release(target)
        self.telemetry.policy_generation.set(generation)
        self.log.info("policy_applied", generation=generation, targets=[t.key for t in policy.targets])
        if policy.loop_interval_seconds != self.interval:
            self.interval = policy.loop_interval_seconds
            if math.isfinite(self.health.stall_seconds):
                self.health.stall_seconds = stall_seconds(self.interval)
            if self.controller.cycle_deadline_seconds is not None:
                self.controller.cycle_deadline_seconds = self.interval
            if self._scheduler is not None:
                self._scheduler.reschedule_job("cycle", trigger="interval", seconds=self.interval)

    def _export_forecast(self, key: str, now: float) -> None:
        fc = self.controller.forecaster(key)
        view = fc.view(now)
        decision = self.controller.last_decision(key)
        if view is None or decision is None:
            return
        p = view.prediction
        for horizon, seconds in (("pod", decision.pod_horizon_seconds), ("node", decision.node_horizon_seconds)):
            k = int((now + seconds - p.start) // p.step)
            if 0 <= k < len(p.mean):
                self.telemetry.record_forecast_mean(key, horizon, float(p.mean[: k + 1].max()))
        self.telemetry.forecast_model.labels(*key.split("/", 1), p.model).set(1)

    def run(self, stop: threading.Event) -> None:
        """Run cycles every loop interval until ``stop`` is set, then shut down cleanly."""
        scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler = scheduler

        def job() -> None:
            self.cycle(scheduled=self._next_scheduled)
            self._next_scheduled = time.time() + self.interval

        scheduler.add_job(
            job,
            "interval",
            id="cycle",
            seconds=self.interval,
            next_run_time=None,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.interval)),
        )
        self._next_scheduled = time.time()
        scheduler.start()
        scheduler.modify_job("cycle", next_run_time=_now_dt())
        self.log.info("started", interval_seconds=self.interval)
        stop.wait()
        self.log.info("stopping")
        scheduler.shutdown(wait=True)
        if self.elector.is_leader():  # a clean stop keeps the latest fits for the next leader
            self.controller.save_fit_state(time.time())
        self.elector.stop()
        self.log.info("stopped")


def _now_dt() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
