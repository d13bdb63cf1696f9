"""A restart in the middle of a simulated day decides as a run without the restart.

The real :class:`~autoscaler.runtime.controller.Controller` runs through the simulator's ports
over a seeded daily load; the restarted run stops a controller at noon (a clean stop
saves the fitted state) and starts a new one on the same store, which restores the
saved fits instead of starting over from stand-ins.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from autoscaler.forecasting.fit_state import InMemoryFitStore
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime.controller import Controller
from models.series import Series

DAY = 86400.0
START = 1_700_006_400.0
DT = 10.0
LOOP = 30.0
TARGETS = 2


def daily_load(t: np.ndarray, seed: int = 3) -> np.ndarray:
    """Requests/s: a daily cycle between ~300 and ~2,100 with seeded noise."""
    rng = np.random.default_rng(seed)
    return np.maximum(0.0, 1200 + 900 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 40, t.size))


@dataclasses.dataclass
class World:
    """One simulated target world: a cluster, its metrics and a clock (nothing shared between runs)."""

    metrics: SimMetrics
    port: SimClusterPort
    clock: VirtualClock


def world(days_of_history: float = 7.0, sim_days: float = 1.0) -> World:
    """History before ``START`` and the traffic after it come from the same daily load."""
    steps = int(sim_days * DAY / DT)
    t_live = START + np.arange(steps) * DT
    t_hist = START - days_of_history * DAY + np.arange(int((days_of_history + sim_days) * DAY / 300)) * 300.0
    rates = daily_load(t_live - START, seed=4)
    # Buckets of the history after START hold what the simulated traffic will show: a
    # restarted controller reloads them as Prometheus would hand them over.
    history = daily_load(t_hist - START, seed=5)
    live_buckets = rates[: (steps // 30) * 30].reshape(-1, 30).mean(axis=1)
    first_live = int(days_of_history * DAY / 300)
    history[first_live : first_live + live_buckets.size] = live_buckets
    traffic = TrafficRecord(
        start=START,
        dt=DT,
        arrivals=rates * DT,
        latency=np.full(steps, 0.12),
        queue=np.zeros(steps),
        count=steps,
    )
    clock = VirtualClock(START)
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=8, now=START)
    return World(
        metrics=SimMetrics(traffic=traffic, history=Series(start=t_hist[0], step=300.0, values=history)),
        port=SimClusterPort(sim, clock),
        clock=clock,
    )


def controller(w: World, targets: int, store: InMemoryFitStore | None) -> Controller:
    base = Target(namespace="llm", deployment="d", mode="enforce")
    policy = Policy(
        targets=tuple(dataclasses.replace(base, deployment=f"vllm-{i}") for i in range(targets)),
        loop_interval_seconds=LOOP,
    )
    return Controller(policy=policy, metrics=w.metrics, cluster=w.port, clock=w.clock, fit_store=store)


def run(c: Controller, w: World, start: float, end: float) -> list[tuple[float, str, int, int]]:
    """Cycles every ``LOOP`` seconds in [start, end): (time, target, replicas, placeholders) per decision."""
    out = []
    t = start
    while t < end:
        w.clock.time = t
        w.port.sim.advance(t)
        for r in c.reconcile_once(t).results:
            if r.decision is not None:
                out.append((t, r.target, r.decision.replicas, r.decision.placeholders))
        t += LOOP
    return out


def by_cycle(decisions: list[tuple[float, str, int, int]]) -> dict[tuple[float, str], tuple[int, int]]:
    return {(t, key): (r, p) for t, key, r, p in decisions}


def mismatches(
    reference: dict[tuple[float, str], tuple[int, int]], other: dict[tuple[float, str], tuple[int, int]]
) -> list[tuple[float, str]]:
    """Cycles where ``other`` decided neither as the reference did then, nor a cycle before or after."""
    bad = []
    for (t, key), got in sorted(other.items()):
        near = {reference.get((t + d, key)) for d in (-LOOP, 0.0, LOOP)}
        if got not in near:
            bad.append((t, key))
    return bad


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    """The reference run (no restart), the run restarted at noon, and a restart without a store.

    The controller starts at 10:00 (with a week of history), is stopped at noon, and the
    runs go on to 14:00. Up to noon all runs are one run: the world is copied at the
    restart, so each run after it starts from the same cluster.
    """
    begin = START + 10 * 3600.0
    noon, end = START + 12 * 3600.0, START + 14 * 3600.0
    w = world()
    store = InMemoryFitStore()
    first = controller(w, TARGETS, store)
    before = run(first, w, begin, noon)
    first.save_fit_state(noon)  # a clean stop saves on the way out
    # What the stopped controller left (the reference run goes on saving into its own).
    restarted, amnesiac, store = copy.deepcopy(w), copy.deepcopy(w), copy.deepcopy(store)
    reference = before + run(first, w, noon, end)

    second = controller(restarted, TARGETS, store)
    after = run(second, restarted, noon, noon + LOOP)
    restored_model = second.forecaster(second.policy.targets[0].key).prediction
    after += run(second, restarted, noon + LOOP, end)

    third = controller(amnesiac, TARGETS, InMemoryFitStore())
    forgot = run(third, amnesiac, noon, noon + LOOP)
    amnesia_model = third.forecaster(third.policy.targets[0].key).prediction
    forgot += run(third, amnesiac, noon + LOOP, end)
    return {
        "noon": noon,
        "reference": by_cycle(reference),
        "restored": by_cycle(before + after),
        "restored_model": restored_model,
        "amnesia": by_cycle(before + forgot),
        "amnesia_model": amnesia_model,
        "store": store,
    }


def test_a_restart_mid_day_decides_as_without_it_within_one_cycle(runs: dict[str, object]) -> None:
    reference, restored = runs["reference"], runs["restored"]
    assert isinstance(reference, dict) and isinstance(restored, dict)
    assert set(reference) == set(restored)  # no decision lost
    assert mismatches(reference, restored) == []
    assert len({v for (t, _), v in reference.items() if t >= runs["noon"]}) > 1  # type: ignore[operator]


def test_the_restored_target_serves_its_configured_model_at_once(runs: dict[str, object]) -> None:
    prediction = runs["restored_model"]
    assert prediction is not None and prediction.model.startswith("auto(")  # type: ignore[attr-defined]
    store = runs["store"]
    assert isinstance(store, InMemoryFitStore) and store.saves >= 1 and store.parts


def test_without_the_saved_state_the_restart_starts_over(runs: dict[str, object]) -> None:
    """The control for the tests above: the same restart with an empty store (as before fit
    states were saved) serves the stand-in, and its decisions part from the reference."""
    prediction = runs["amnesia_model"]
    assert prediction is not None and not prediction.model.startswith("auto(")  # type: ignore[attr-defined]
    reference, amnesia = runs["reference"], runs["amnesia"]
    assert isinstance(reference, dict) and isinstance(amnesia, dict)
    assert len(mismatches(reference, amnesia)) > 10
