"""The controller caps forecast work per cycle: due refits wait, the most overdue first.

Owed work (stand-ins for targets without a forecast, updates on completed buckets) may
use ``fit_budget_seconds`` and at least ``OWED_WORK_SECONDS``; refits get what is left,
each admitted only if its expected cost fits. Tests that need exact costs replace the
controller's CPU meter with fixed costs per kind of work.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autoscaler import controller as controller_module
from autoscaler.controller import FIT_COST_MARGIN, OWED_WORK_SECONDS, Controller
from autoscaler.forecasting import TargetForecaster
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


def forecast_start(c: Controller, key: str) -> float:
    """Where a target's current prediction starts (one bucket after the last it conditioned on)."""
    prediction = c.forecaster(key).prediction
    assert prediction is not None
    return prediction.start


def test_without_budget_every_target_still_gets_the_seasonal_naive_fallback() -> None:
    """With no fit budget left, targets forecast with seasonal-naive until their fit is allowed."""
    c = controller(5, budget=0.0)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["seasonal_naive"] * 5
    assert all(c.forecaster(t.key).fit_deferred for t in c.policy.targets)


def test_a_fit_costlier_than_the_budget_runs_alone_one_per_cycle() -> None:
    """Stand-ins come first; then each cycle with nothing else to do upgrades one target, in order."""
    c = controller(4, budget=1e-9)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["seasonal_naive"] * 4, "the first cycle owes every target its stand-in"
    for cycle in range(1, 5):
        c.reconcile_once(START + 100.0 + 30.0 * cycle)
        assert models_in_use(c) == ["holt_winters"] * cycle + ["seasonal_naive"] * (4 - cycle)


def test_an_ample_budget_fits_every_target_in_the_first_cycle() -> None:
    """With enough budget every target gets its configured model at once."""
    c = controller(4, budget=1e9)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["holt_winters"] * 4


@dataclasses.dataclass
class Meter:
    """Fixed CPU costs the controller is charged instead of measured ones."""

    fit: float = 0.4
    other: float = 0.3  # an update or a stand-in
    charges: list[float] = dataclasses.field(default_factory=list)


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch) -> Meter:
    """Replace the controller's CPU meter: each refresh that fitted costs ``fit``, any other ``other``."""
    fake = Meter()

    def timed_refresh(fc: TargetForecaster, now: float, *, allow_fit: bool) -> float:
        before = fc.last_fit
        fc.refresh(now, allow_fit=allow_fit)
        fitted = fc.last_fit != before
        if fitted:
            fc.fit_seconds = dict.fromkeys(fc.fit_seconds or [False], fake.fit)
        fake.charges.append(fake.fit if fitted else fake.other)
        return fake.charges[-1]

    monkeypatch.setattr(controller_module, "_timed_refresh", timed_refresh)
    return fake


def test_refits_are_admitted_by_expected_cost_so_the_budget_is_not_overshot(meter: Meter) -> None:
    """1 s, 0.3 s fits expected at up to 0.45 s (FIT_COST_MARGIN): two per cycle; a third waits."""
    assert FIT_COST_MARGIN == 1.5
    meter.fit, meter.other = 0.3, 0.001
    c = controller(6, budget=1.0)
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=1e9))
    c.reconcile_once(START + 100.0)  # every target fitted
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=1.0))
    due = START + 100.0 + 3600.0  # every refit due
    fitted_at = []
    for cycle in range(3):
        meter.charges.clear()
        c.reconcile_once(due + 30.0 * cycle)
        assert sum(meter.charges) <= 1.0, meter.charges
        fitted_at.append(
            sorted(t.deployment for t in c.policy.targets if c.forecaster(t.key).last_fit == due + 30.0 * cycle)
        )
    assert fitted_at == [["d0", "d1"], ["d2", "d3"], ["d4", "d5"]], "two per cycle, the most overdue first"


def test_updates_beyond_the_budget_wait_but_never_past_their_bucket(meter: Meter) -> None:
    """Six 0.3 s updates do not fit in one 1 s cycle: the rest follow, all before the next bucket."""
    c = controller(6, budget=1.0)
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=1e9))
    c.reconcile_once(START + 100.0)
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=1.0))
    bucket_end = START + 300.0
    updated: list[int] = []
    for cycle in range(10):  # the cycles of one bucket
        now = bucket_end + 1.0 + 30.0 * cycle
        meter.charges.clear()
        result = c.reconcile_once(now)
        assert all(r.decision is not None for r in result.results), "every target decides every cycle"
        fresh = [forecast_start(c, t.key) == bucket_end for t in c.policy.targets]
        updated.append(sum(fresh))
        assert sum(meter.charges) <= max(1.0, OWED_WORK_SECONDS) + meter.other, meter.charges
    assert updated[0] == 4, "0.3 s updates start while under 1 s: four in the first cycle"
    assert updated[1] == 6, "the two deferred ones follow in the next cycle"
    assert all(c.forecaster(t.key).stale_since is None for t in c.policy.targets)


def test_a_deferred_update_is_forced_in_the_last_cycle_of_its_bucket(
    meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no allowance at all, updates wait, but each target still conditions on every bucket."""
    c = controller(2, budget=0.0)
    c.reconcile_once(START + 100.0)  # stand-ins
    monkeypatch.setattr(controller_module, "OWED_WORK_SECONDS", 0.0)
    for bucket in (1, 2):
        bucket_end = START + 300.0 * bucket
        for cycle in range(10):
            c.reconcile_once(bucket_end + 1.0 + 30.0 * cycle)
            starts = {forecast_start(c, t.key) for t in c.policy.targets}
            assert starts == {bucket_end if cycle == 9 else bucket_end - 300.0}, cycle


def test_stand_ins_beyond_the_owed_work_allowance_follow_in_the_next_cycle(
    meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Owed stand-ins stop at the allowance; targets without one hold (no forecast) for a cycle."""
    monkeypatch.setattr(controller_module, "OWED_WORK_SECONDS", 0.5)
    c = controller(4, budget=0.0)
    first = c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["seasonal_naive", "seasonal_naive", "-", "-"]  # 0.3 s each, started below 0.5 s
    assert all(r.decision is not None and r.decision.replicas >= 1 for r in first.results), "no scale-down"
    c.reconcile_once(START + 130.0)
    assert models_in_use(c) == ["seasonal_naive"] * 4
