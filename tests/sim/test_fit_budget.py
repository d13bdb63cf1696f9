"""The controller caps model fitting per cycle: due refits wait, the most overdue first."""

from __future__ import annotations

import dataclasses

import numpy as np

from autoscaler.controller import Controller
from autoscaler.policy.schema import Forecast, Policy, Target
from autoscaler.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.sim.cluster import ClusterPhases, SimCluster
from models.series import Series

DAY = 86400.0
START = 1_700_006_400.0  # a multiple of 300 s


def controller(targets: int, budget: float) -> Controller:
    """``targets`` Holt-Winters targets sharing one simulated world with three days of history."""
    t = np.arange(3 * 288) * 300.0
    history = Series(start=START - 3 * DAY, step=300.0, values=100 + 50 * np.sin(2 * np.pi * t / DAY))
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=1, now=START)
    clock = VirtualClock(START)
    traffic = TrafficRecord(
        start=START, dt=10.0, arrivals=np.full(10, 1000.0), latency=np.full(10, 0.1), queue=np.zeros(10), count=10
    )
    base = Target(
        namespace="llm",
        deployment="d0",
        mode="enforce",
        forecast=dataclasses.replace(
            Forecast(), model="holt_winters", trend_guard_points=0, seasons=("daily",), history_days=3
        ),
    )
    policy = Policy(
        targets=tuple(dataclasses.replace(base, deployment=f"d{i}") for i in range(targets)), fit_budget_seconds=budget
    )
    return Controller(
        policy=policy,
        metrics=SimMetrics(traffic=traffic, history=history),
        cluster=SimClusterPort(sim, clock),
        clock=clock,
    )


def models_in_use(c: Controller) -> list[str]:
    """The forecast model name of every target."""
    return [c.forecaster(t.key).prediction.model if c.forecaster(t.key).prediction else "-" for t in c.policy.targets]


def test_without_budget_every_target_still_gets_the_seasonal_naive_fallback() -> None:
    """With no fit budget left, targets forecast with seasonal-naive until their fit is allowed."""
    c = controller(5, budget=0.0)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["seasonal_naive"] * 5
    assert all(c.forecaster(t.key).fit_deferred for t in c.policy.targets)


def test_a_small_budget_fits_one_target_per_cycle_most_overdue_first() -> None:
    """With budget for one fit per cycle, each cycle upgrades one more target to its configured model."""
    c = controller(4, budget=1e-9)
    for cycle in range(4):
        c.reconcile_once(START + 100.0 + 30.0 * cycle)
        assert sum(m == "holt_winters" for m in models_in_use(c)) == cycle + 1
    assert all(m == "holt_winters" for m in models_in_use(c))


def test_an_ample_budget_fits_every_target_in_the_first_cycle() -> None:
    """With enough budget every target gets its configured model at once."""
    c = controller(4, budget=1e9)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["holt_winters"] * 4
