"""Liveness that means the loop is alive: ``/healthz``, the stall rule, and writes after a lost Lease.

Why: ``/healthz`` used to answer 200 whatever the loop did, so a loop stuck in a call kept
its pod (and, through the elector's own thread, its Lease) forever. These tests pin the
parts that make a stall visible and harmless, on a hand-moved monotonic clock: the rule
itself, the HTTP endpoint over a real socket, the service counting a failed cycle as
progress, and the guard that refuses a write once leadership is gone. The two-process
failover against the real control plane is in ``tests/e2e/test_liveness.py``.
"""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from autoscaler.core.types import ClusterState, Decision
from autoscaler.errors import NotLeader
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Policy, Target
from autoscaler.ports import ApplyResult, ClusterRead
from autoscaler.runtime.controller import Controller
from autoscaler.runtime.service import STALL_GRACE_SECONDS, LeaderGuardedCluster, Service, stall_seconds
from autoscaler.runtime.telemetry import Health, Telemetry, serve
from models.series import Series
from tests.fakes import StepClock
from tests.prom.server import free_port


def test_the_loop_is_stuck_after_three_intervals_and_the_grace() -> None:
    """Alive while a cycle ended within 3 intervals + 30 s; a wall-clock jump is not a stall."""
    mono = StepClock(100.0)
    health = Health(max_cycle_age=120, stall_seconds=stall_seconds(30.0), monotonic=mono)
    assert stall_seconds(30.0) == 3 * 30 + STALL_GRACE_SECONDS
    assert health.alive() == (True, "ok")
    mono.advance(120.0)
    assert health.alive()[0]
    mono.advance(0.5)
    ok, why = health.alive()
    assert not ok and why == "control loop made no progress for 120s (limit 120s)"
    health.progress()
    assert health.alive()[0]
    mono.advance(100)
    health.cycle_done()
    mono.advance(100)
    assert health.alive()[0]


def test_without_a_stall_limit_the_loop_is_always_alive() -> None:
    """Health built without a limit (tests, simulators) never reports a stall."""
    mono = StepClock(100.0)
    health = Health(max_cycle_age=120, monotonic=mono)
    mono.advance(1e9)
    assert health.alive()[0]


@pytest.fixture
def stuck_server() -> Iterator[tuple[Health, StepClock, int]]:
    """The real /healthz server over a Health on a hand-moved clock."""
    mono = StepClock(100.0)
    health = Health(max_cycle_age=120, stall_seconds=60, monotonic=mono)
    port = free_port()
    server = serve(telemetry=Telemetry(), health=health, host="127.0.0.1", port=port)
    yield health, mono, port
    server.shutdown()
    server.server_close()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_fails_when_the_loop_makes_no_progress(stuck_server: tuple[Health, StepClock, int]) -> None:
    """200 while cycles end; 503 naming the stall once none ended for the limit; 200 again after one."""
    health, mono, port = stuck_server
    assert _get(port, "/healthz") == (200, "ok\n")
    mono.advance(61)
    code, body = _get(port, "/healthz")
    assert code == 503 and "control loop made no progress for 61s" in body
    health.progress()
    assert _get(port, "/healthz") == (200, "ok\n")


START = 1_700_000_000.0


def steady_metrics() -> SimMetrics:
    steps = 1000
    traffic = TrafficRecord(start=START - 600, dt=10.0, arrivals=np.full(steps, 100.0),
                            latency=np.full(steps, 0.1), queue=np.zeros(steps), count=steps)  # fmt: skip
    history = Series(start=START - 86400, step=300.0, values=np.full(288, 10.0))
    return SimMetrics(traffic=traffic, history=history)


def _controller(policy: Policy) -> Controller:
    clock = VirtualClock(START)
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=2, now=clock.now())
    return Controller(policy=policy, metrics=steady_metrics(), cluster=SimClusterPort(sim, clock), clock=clock)


class _BrokenSource:
    def current(self) -> tuple[Policy, int]:
        raise RuntimeError("policy source bug")


class _Leader:
    def __init__(self) -> None:
        self.leading = True

    def is_leader(self) -> bool:
        return self.leading

    def stop(self) -> None:
        self.leading = False


class _Quiet:
    def info(self, *_: Any, **__: Any) -> None:
        """Drop."""

    def warning(self, *_: Any, **__: Any) -> None:
        """Drop."""

    def error(self, *_: Any, **__: Any) -> None:
        """Drop."""


def test_a_failed_cycle_is_still_progress_and_the_leader_gauge_is_live() -> None:
    """A cycle that fails (a bug in the policy source) keeps /healthz alive; the leader gauge follows the elector."""
    mono = StepClock(100.0)
    health = Health(max_cycle_age=120, stall_seconds=60, monotonic=mono)
    policy = Policy(targets=(Target(namespace="llm", deployment="vllm"),))
    elector = _Leader()
    telemetry = Telemetry()
    service = Service(controller=_controller(policy), policy_source=_BrokenSource(), elector=elector,
                      telemetry=telemetry, health=health, log=_Quiet())  # fmt: skip
    mono.advance(59)
    assert service.cycle() is None  # failed, logged as cycle_failed
    mono.advance(59)
    assert health.alive()[0], "the failed cycle ended: progress"
    assert telemetry.registry.get_sample_value("autoscaler_leader", {"lease": ""}) == 1.0
    elector.leading = False  # e.g. the elector stopped renewing: scraped at once, no cycle needed
    assert telemetry.registry.get_sample_value("autoscaler_leader", {"lease": ""}) == 0.0


def test_writes_after_losing_the_lease_are_refused() -> None:
    """A cycle that decided while leading and writes after leadership moved writes nothing."""
    elector = _Leader()
    writes: list[str] = []

    class Recording:
        def read(self, target: Target) -> ClusterRead:
            return ClusterRead(target=target.key, state=ClusterState(spec_replicas=2))

        def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
            writes.append(target.key)
            return ApplyResult(wrote_replicas=True)

    guarded = LeaderGuardedCluster(Recording(), elector.is_leader)
    target = Target(namespace="llm", deployment="vllm", mode="enforce")
    controller = Controller(policy=Policy(targets=(target,)), metrics=steady_metrics(), cluster=guarded,
                            clock=VirtualClock(START))  # fmt: skip
    assert controller.reconcile_once().results[0].applied is not None and writes == ["llm/vllm"]
    elector.leading = False
    result = controller.reconcile_once(START + 30.0).results[0]
    assert isinstance(result.error, NotLeader) and result.error.kind == "not_leader"
    assert writes == ["llm/vllm"] and result.applied is None
    assert guarded.read(target).state.spec_replicas == 2  # reads still pass


class _Source:
    def __init__(self, policy: Policy) -> None:
        self.policy, self.generation = policy, 1

    def current(self) -> tuple[Policy, int]:
        return self.policy, self.generation


def test_the_stall_limit_follows_the_policy_interval() -> None:
    """A policy with another loop interval moves the stall limit with it (3 intervals + the grace)."""
    policy = Policy(targets=(Target(namespace="llm", deployment="vllm"),), loop_interval_seconds=30.0)
    health = Health(max_cycle_age=120, stall_seconds=stall_seconds(30.0))
    source = _Source(policy)
    service = Service(controller=_controller(policy), policy_source=source, elector=_Leader(),
                      telemetry=Telemetry(), health=health, log=_Quiet())  # fmt: skip
    service.cycle()
    assert health.stall_seconds == 120.0
    source.policy, source.generation = dataclasses.replace(policy, loop_interval_seconds=5.0), 2
    service.cycle()
    assert health.stall_seconds == stall_seconds(5.0) == 45.0
