"""Shared fakes for the controller's ports: a stepped clock, metrics and a cluster.

Why: each test module used to carry its own hand-moved clock and its own steady metrics
source. These are the one copy; they implement the protocols of :mod:`autoscaler.ports`
and nothing else, so a test that uses them drives the controller only through its public
constructor and ports (as ``benchmarks/bench_scale.py`` does).

- :class:`StepClock`: virtual time that moves only when the test says so. It serves both
  clock conventions of the code base: ``Clock.now()`` (the controller's port) and a bare
  callable (the leader elector's, the shard scope's and ``Health``'s monotonic clocks).
- :class:`FakeMetrics`: the same fresh snapshot for every target, no history.
- :class:`FakeCluster`: remembers each target's replicas and placeholders, records every
  ``apply``, and fails the test if ``apply`` is called while it is told the controller runs
  in dry-run (a dry-run must write nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import ClusterState, Decision, MetricsSnapshot
from autoscaler.errors import MetricsEmpty
from autoscaler.policy.schema import Target
from autoscaler.ports import ApplyResult, ClusterRead
from models.series import Series


class StepClock:
    """Virtual time, moved by hand (:meth:`advance`) and, with ``tick``, by every reading.

    Args:
        start: The first reading.
        tick: Seconds each reading adds after it is taken (0: time stands still between
            :meth:`advance` calls). A ticking clock stands in for a CPU meter that charges a
            fixed cost per measurement.
    """

    def __init__(self, start: float = 1000.0, *, tick: float = 0.0) -> None:
        self._now = start
        self.tick = tick

    def now(self) -> float:
        """The current virtual time (the :class:`autoscaler.ports.Clock` convention)."""
        value = self._now
        self._now += self.tick
        return value

    def __call__(self) -> float:
        """The current virtual time (the bare-callable convention)."""
        return self.now()

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError(f"a stepped clock does not go back ({seconds} s)")
        self._now += seconds
        return self._now


class FakeMetrics:
    """A :class:`~autoscaler.ports.MetricsSource`: one fresh snapshot for every target, no history.

    Args:
        load: Arrival rate reported for every target (the policy's capacity unit per second).
        latency: Mean latency (s) reported for every target.
    """

    def __init__(self, load: float = 300.0, latency: float = 0.1) -> None:
        self.load = load
        self.latency = latency
        #: The ``now`` of every ``observe`` call, in order.
        self.observed: list[float] = []

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[str, MetricsSnapshot]:
        """The configured load and latency, sampled at ``now``, for every target."""
        self.observed.append(now)
        return {
            t.key: MetricsSnapshot(time=now, load=self.load, latency_mean=self.latency, newest_sample_time=now)
            for t in targets
        }

    def load_history(self, target: Target, *, start: float, end: float, step: float) -> Series:
        """No history (the controller starts from the live load)."""
        raise MetricsEmpty("no history in this test")

    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """Nothing measured: the policy's cold start applies."""
        return None


@dataclass
class Applied:
    """One ``apply`` the fake cluster received."""

    target: str
    replicas: int
    placeholders: int


@dataclass
class FakeCluster:
    """A :class:`~autoscaler.ports.Cluster` whose replicas become ready as soon as they are set.

    Every target starts at ``replicas`` serving replicas and no placeholders. With
    ``dry_run``, any ``apply`` fails the test at once.
    """

    replicas: int = 1
    dry_run: bool = False
    #: Every ``apply``, in order.
    applied: list[Applied] = field(default_factory=list)
    #: The targets ``read`` was called for, in order.
    reads: list[str] = field(default_factory=list)
    _states: dict[str, ClusterState] = field(default_factory=dict)

    def state(self, key: str) -> ClusterState:
        """The cluster state of target ``key`` as the fake holds it."""
        return self._states.setdefault(key, ClusterState(spec_replicas=self.replicas, ready_replicas=self.replicas))

    def read(self, target: Target) -> ClusterRead:
        """The target's current state (no handle: the fake applies to what it holds)."""
        self.reads.append(target.key)
        return ClusterRead(target=target.key, state=self.state(target.key))

    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        """Set the decided replicas and placeholders (ready at once); fails the test in dry-run.

        Also fails it when ``read`` is another target's: the controller must hand each
        target's own read back.
        """
        if self.dry_run:
            pytest.fail(f"Cluster.apply called in dry-run for {target.key}: {decision.replicas} replicas")
        if read is not None and read.target != target.key:
            pytest.fail(f"Cluster.apply for {target.key} was handed the read of {read.target}")
        before = self.state(target.key)
        self.applied.append(Applied(target.key, decision.replicas, decision.placeholders))
        self._states[target.key] = dataclasses.replace(
            before,
            spec_replicas=decision.replicas,
            ready_replicas=decision.replicas,
            placeholder_replicas=decision.placeholders,
        )
        return ApplyResult(
            wrote_replicas=decision.replicas != before.spec_replicas,
            wrote_placeholders=decision.placeholders != before.placeholder_replicas,
        )
