"""The ports the controller talks through: metrics, cluster, clock.

The control loop (:mod:`autoscaler.runtime.controller`) only ever sees these protocols. The
in-cluster wiring plugs in Prometheus and the Kubernetes API; the simulator plugs in its
in-process cluster with a virtual clock; tests plug in small fakes. There is one copy of
the control logic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import ClusterState, Decision, MetricsSnapshot
from autoscaler.policy.schema import Policy, Target
from models.series import Series


class Clock(Protocol):
    """Where "now" comes from (wall time in the cluster, virtual time in the simulator)."""

    def now(self) -> float:
        """Current time in unix seconds."""
        ...


class MetricsSource(Protocol):
    """Reads load, latency, saturation and GPU signals."""

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[str, MetricsSnapshot]:
        """Current signals for each target, keyed by ``Target.key``.

        Must not raise for a per-target problem: a failed signal is ``None`` in the
        snapshot with the error kind in ``problems``. May raise
        :class:`~autoscaler.errors.MetricsError` when the source as a whole is down.
        """
        ...

    def load_history(self, target: Target, *, start: float, end: float, step: float) -> Series:
        """The target's load on a regular grid (NaN where unknown).

        Raises:
            MetricsError: when the history cannot be read.
        """
        ...

    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """Measured cold-start lead times, or ``None`` until enough samples exist."""
        ...


@dataclass(frozen=True)
class ClusterRead:
    """One read of a target's cluster side: the state a decision is made on, and the port's handle.

    ``handle`` is the port's own record of what it read (for Kubernetes: the objects, their
    resourceVersions, and the HPA or KEDA object that owns the replicas). The controller
    never looks inside; it hands the read back to `Cluster.apply` or
    `TargetOperations.pin`, which then write against exactly what the decision saw. The
    port keeps nothing between the two calls, so their order cannot go wrong, and a read
    applied to another target is refused (``target`` is the key it was read for).
    """

    target: str
    state: ClusterState
    handle: object = None


@dataclass(frozen=True)
class ApplyResult:
    """What an actuator did with a decision."""

    wrote_replicas: bool = False
    wrote_placeholders: bool = False
    refused: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


TargetMode = Literal["enforce", "dry-run", "paused"]


@dataclass(frozen=True)
class TargetStatus:
    """A target's latest decision as published on the target itself (``kubectl get`` shows it).

    ``desired_*`` are ``None`` while paused (nothing was decided); ``forecast`` is the
    predicted load at the node horizon in the policy's capacity unit per second.
    """

    mode: TargetMode
    time: float
    current_replicas: int
    current_placeholders: int
    desired_replicas: int | None = None
    desired_placeholders: int | None = None
    reason: str = ""
    placeholder_reason: str | None = None
    model: str | None = None
    forecast: float | None = None


class TargetOperations(Protocol):
    """What the in-cluster controller does beside applying decisions: status, pause, release.

    Optional for the controller (the simulator has no objects to annotate); the Kubernetes
    implementation is :class:`autoscaler.kube.cluster.KubeCluster`.
    """

    def publish(self, target: Target, status: TargetStatus) -> str | None:
        """Publish the status on the target. Never raises.

        Returns:
            ``None`` when published (or unchanged), else the error kind (logged by the caller's
            metrics, never failing the decision).
        """
        ...

    def release(self, target: Target) -> tuple[str, ...]:
        """Undo what enforcing wrote: the HPA's own ``minReplicas`` back, placeholders to 0.

        Returns:
            One note per write (empty when there was nothing to undo).

        Raises:
            ActuationError: when a read or a write fails.
        """
        ...

    def pin(self, target: Target, replicas: int, read: ClusterRead | None = None) -> tuple[str, ...]:
        """Hold the serving replicas at ``replicas`` while paused (KEDA's ``paused-replicas``).

        Writes against ``read`` (this cycle's `Cluster.read` of the target), else reads afresh.

        Returns:
            One note per write or refusal (empty when already there).

        Raises:
            ActuationError: when the write fails.
        """
        ...


class Cluster(Protocol):
    """Reads and writes the Kubernetes side of one target."""

    def read(self, target: Target) -> ClusterRead:
        """Current replicas, placeholders and nodes, with the handle `apply` writes against.

        Raises:
            ActuationError: when the state cannot be read.
        """
        ...

    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        """Make the cluster match the decision (write only what changed).

        Writes against ``read``, the read the decision was made on; without one the port
        reads afresh.

        Raises:
            ActuationError: when a write fails (HandleMismatch: ``read`` is of another target).
        """
        ...


class PolicySource(Protocol):
    """Where the policy comes from (a file, a ConfigMap). Keeps the last good policy."""

    def current(self) -> tuple[Policy, int]:
        """The policy in force and its generation (increments on every accepted change).

        An invalid update never replaces the last good policy; the source reports the
        rejection itself (log, Event, metric).
        """
        ...


class LeaderElector(Protocol):
    """Tells whether this replica may write (two replicas must never both act)."""

    def is_leader(self) -> bool:
        """True while this replica holds leadership."""
        ...

    def stop(self) -> None:
        """Release leadership (if held) and stop renewing."""
        ...


class FitStateStore(Protocol):
    """Where the fitted forecast state of this controller's targets is kept across restarts.

    Moves opaque parts (:mod:`autoscaler.forecasting.fit_state` encodes them, each small enough for
    one Kubernetes object); a ConfigMap per part in the cluster, memory in the simulator.
    """

    def load(self) -> Sequence[bytes]:
        """The parts saved last (empty when nothing was saved).

        Raises:
            AutoscalerError: when the store cannot be read.
        """
        ...

    def save(self, parts: Sequence[bytes]) -> None:
        """Replace the saved parts with ``parts``.

        Raises:
            AutoscalerError: when the store cannot be written.
        """
        ...
