"""The control loop over a hostile Prometheus: one target's bad data is that target's problem only.

Why: the source turns bad answers into our errors (``test_prometheus.py``); the controller
must then hold the target they belong to, report it, and go on with the others, and a cycle
must end on time however slow the source is. The cluster side is the simulator's in-process
cluster (fast, deterministic); Prometheus is the hostile server over real HTTP.
"""

from __future__ import annotations

import dataclasses
import time

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.offline.sim.adapters import SimClusterPort, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime.controller import Controller
from tests.hostile.server import HostileServer, Reply, Request, by_query, matrix, success, vector

T = Target(namespace="llm", deployment="vllm")
LABELS = {"namespace": "llm", "deployment": "vllm", "model_name": "m"}


def _controller(source: PrometheusSource, n: int) -> tuple[Controller, VirtualClock]:
    clock = VirtualClock(time.time())
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=3, now=clock.now())
    targets = tuple(dataclasses.replace(T, deployment=f"vllm-{i}", mode="enforce") for i in range(n))
    policy = Policy(targets=targets)
    return Controller(policy=policy, metrics=source, cluster=SimClusterPort(sim, clock), clock=clock), clock


def test_one_bad_history_is_that_targets_problem_only(hostile: HostileServer) -> None:
    """vllm-1's history answer has a null timestamp: vllm-1 holds and is reported, vllm-0 and vllm-2 decide."""
    now = time.time()
    good = matrix(LABELS, [[now - 3600, "5"], [now - 1800, "6"]])
    bad = matrix(LABELS, [[now - 3600, "5"], [None, "6"]])

    def history(request: Request) -> Reply:
        return bad if "vllm\\\\-1" in request.query else good  # re.escape'd in the pod selector

    hostile.set(by_query(success([]), range=history))
    controller, _ = _controller(PrometheusSource(hostile.url, timeout_seconds=2.0), 3)
    cycle = controller.reconcile_once()
    by_target = {r.target: r for r in cycle.results}
    failed = by_target["llm/vllm-1"]
    assert failed.error is not None and failed.error.kind == "metrics_malformed", failed
    assert failed.decision is None and failed.applied is None  # held: nothing decided or written
    for key in ("llm/vllm-0", "llm/vllm-2"):
        assert by_target[key].error is None and by_target[key].decision is not None
    hostile.set(by_query(success([]), range=good))
    again = {r.target: r for r in controller.reconcile_once(now + 30).results}
    assert again["llm/vllm-1"].error is None and again["llm/vllm-1"].decision is not None  # seeded later


def test_future_dated_answers_hold_for_fifty_cycles(hostile: HostileServer) -> None:
    """Every answer is dated an hour ahead and the load reads 0: no scale-down in 50 cycles (was 5 -> 3)."""
    clock = VirtualClock(time.time())

    def ahead(request: Request) -> Reply:
        at = clock.now() + 3600
        value = str(at) if "timestamp(" in request.query else "0"
        return vector(LABELS | {"deployment": "vllm-0"}, value, at=at)

    hostile.set(by_query(ahead, range=success([], "matrix")))
    source = PrometheusSource(hostile.url, timeout_seconds=2.0)
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=5, now=clock.now())
    target = dataclasses.replace(T, deployment="vllm-0", mode="enforce")
    controller = Controller(policy=Policy(targets=(target,)), metrics=source,
                            cluster=SimClusterPort(sim, clock), clock=clock)  # fmt: skip
    for _ in range(50):
        result = controller.reconcile_once().results[0]
        assert result.decision is not None and result.decision.replicas >= 5, result.decision
        assert not result.decision.data_ok and "StaleDataHold" in result.decision.reasons
        clock.time += 30.0
    snap = source.observe([target], clock.now())[target.key]
    assert snap.problems["load"] == "future_dated"


def test_a_slow_history_source_cannot_stretch_a_cycle(hostile: HostileServer) -> None:
    """12 new targets whose history takes 1 s each, 4 at a time, and a 3 s cycle deadline (half of it for
    histories): the cycle ends on time; the 4 targets whose history arrived decide, the others hold with
    cycle_deadline_exceeded and are seeded on the next cycles."""
    now = time.time()
    slow_history = Reply(body=matrix(LABELS, [[now - 3600, "5"]]).body, delay=1.0)
    hostile.set(by_query(success([]), range=slow_history))
    controller, clock = _controller(PrometheusSource(hostile.url, timeout_seconds=5.0), 12)
    controller.cycle_deadline_seconds = 3.0
    began = time.monotonic()
    cycle = controller.reconcile_once()
    assert time.monotonic() - began < 3.0
    decided = [r for r in cycle.results if r.error is None]
    held = [r for r in cycle.results if r.error is not None]
    assert len(decided) == 4, [r.error for r in cycle.results]
    assert {r.error.kind for r in held if r.error} == {"cycle_deadline_exceeded"}
    assert all(r.decision is None and r.applied is None for r in held)
    for _ in range(4):  # the rest are seeded within a few cycles
        clock.time += 30
        cycle = controller.reconcile_once()
    assert all(r.error is None for r in cycle.results), [r.error for r in cycle.results]
