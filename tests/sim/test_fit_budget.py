"""The controller caps the CPU of each whole cycle: forecast work gets what the rest leaves.

Owed work (updates on completed buckets, then stand-ins for targets without a forecast)
may bring the cycle to ``fit_budget_seconds`` and at least ``OWED_WORK_SECONDS``; refits
get what is left, each admitted only if its expected cost fits (with ``FIT_COST_MARGIN``
and the headroom ``ADMIT_FRACTION`` leaves). Reading metrics, seeding,
deciding and saving the fitted state count against the same budget. Tests charge fixed
costs on a virtual CPU clock (:class:`Meter`), so every figure is exact. The admission
rules alone, on fake forecasters (a forced update in its bucket's last cycle among them),
are in ``tests/forecasting/test_fit_scheduler.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from autoscaler.core.types import Decision, MetricsSnapshot
from autoscaler.forecasting import fit_state
from autoscaler.forecasting.fit_scheduler import ADMIT_FRACTION, FIT_COST_MARGIN, OWED_WORK_SECONDS
from autoscaler.forecasting.fit_state import InMemoryFitStore
from autoscaler.forecasting.forecaster import TargetForecaster
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Forecast, Policy, Target
from autoscaler.ports import ApplyResult, ClusterRead
from autoscaler.runtime import controller as controller_module
from autoscaler.runtime import save_rounds
from autoscaler.runtime.controller import Controller
from models.series import Series

DAY = 86400.0
START = 1_700_006_400.0  # a multiple of 300 s


@dataclasses.dataclass
class Meter:
    """A virtual CPU clock: each forecast refresh advances it by a fixed cost (``charge`` for the rest)."""

    fit: float = 0.4
    other: float = 0.3  # an update or a stand-in
    seconds: float = 0.0
    #: The cost of each refresh, in order (cleared by the tests between cycles).
    charges: list[float] = dataclasses.field(default_factory=list)

    def __call__(self) -> float:
        return self.seconds

    def charge(self, seconds: float) -> None:
        """Spend ``seconds`` of CPU outside forecasting."""
        self.seconds += seconds


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch) -> Meter:
    """Each fit unit (the model's or, after it, the peak calibration's) costs ``fit``, any other refresh ``other``.

    Nothing else costs unless charged.
    """
    fake = Meter()
    refresh = TargetForecaster.refresh

    def charged(fc: TargetForecaster, now: float, *, bucket_completed: bool = False, allow_fit: bool = True) -> None:
        before, fits = fc.last_fit, allow_fit and fc.fit_due(now)
        refresh(fc, now, bucket_completed=bucket_completed, allow_fit=allow_fit)
        # A fit unit: the model's (a new last fit, also from a restore) or the peak calibration's after it.
        fitted = fits or fc.last_fit != before
        if fitted:
            fc.fit_seconds = dict.fromkeys(fc.fit_seconds or [False], fake.fit)
        fake.charges.append(fake.fit if fitted else fake.other)
        fake.seconds += fake.charges[-1]

    monkeypatch.setattr(TargetForecaster, "refresh", charged)
    return fake


class ChargedMetrics(SimMetrics):
    """The simulator's metrics, each ``observe`` costing ``seconds`` of the meter's CPU."""

    def __init__(self, *, traffic: TrafficRecord, history: Series, meter: Meter | None, seconds: float) -> None:
        super().__init__(traffic=traffic, history=history)
        self.meter, self.seconds = meter, seconds

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[str, MetricsSnapshot]:
        if self.meter is not None:
            self.meter.charge(self.seconds)
        return super().observe(targets, now)


class ChargedCluster(SimClusterPort):
    """The simulator's cluster, each ``apply`` (in the decide pass) costing ``seconds``."""

    def __init__(self, sim: SimCluster, clock: VirtualClock, *, meter: Meter | None, seconds: float) -> None:
        super().__init__(sim, clock)
        self.meter, self.seconds = meter, seconds

    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        if self.meter is not None:
            self.meter.charge(self.seconds)
        return super().apply(target, decision, read)


class ChargedStore(InMemoryFitStore):
    """An in-memory fit store whose ``save`` costs ``seconds``."""

    def __init__(self, meter: Meter, seconds: float) -> None:
        super().__init__()
        self.meter, self.seconds = meter, seconds

    def save(self, parts: Sequence[bytes]) -> None:
        self.meter.charge(self.seconds)
        super().save(parts)


def controller(
    targets: int, budget: float, cpu: Meter | None = None, *, observe: float = 0.0, apply: float = 0.0
) -> Controller:
    """``targets`` Holt-Winters targets sharing one simulated world with three days of history.

    With ``cpu``, the controller counts CPU on that meter, and each ``observe`` and each
    target's ``apply`` charge it the given seconds.
    """
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
        metrics=ChargedMetrics(traffic=traffic, history=history, meter=cpu, seconds=observe),
        cluster=ChargedCluster(sim, clock, meter=cpu, seconds=apply),
        clock=clock,
        cpu_clock=time.process_time if cpu is None else cpu,
    )


def models_in_use(c: Controller) -> list[str]:
    """The forecast model name of every target."""
    return [c.forecaster(t.key).prediction.model if c.forecaster(t.key).prediction else "-" for t in c.policy.targets]


def forecast_start(c: Controller, key: str) -> float:
    """Where a target's current prediction starts (one bucket after the last it conditioned on)."""
    prediction = c.forecaster(key).prediction
    assert prediction is not None
    return prediction.start


def test_without_budget_every_target_still_gets_the_seasonal_naive_fallback(meter: Meter) -> None:
    """With no fit budget, targets forecast with seasonal-naive until their fit is allowed."""
    meter.other = 0.01
    c = controller(5, budget=0.0, cpu=meter)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["seasonal_naive"] * 5
    assert all(c.forecaster(t.key).fit_deferred for t in c.policy.targets)


def test_a_fit_costlier_than_the_budget_runs_alone_one_per_cycle(meter: Meter) -> None:
    """Stand-ins come first; then each cycle with nothing else to do upgrades one target, in order."""
    meter.other = 0.01
    c = controller(4, budget=1e-9, cpu=meter)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["seasonal_naive"] * 4, "the first cycle owes every target its stand-in"
    for cycle in range(1, 5):
        c.reconcile_once(START + 100.0 + 30.0 * cycle)
        assert models_in_use(c) == ["holt_winters"] * cycle + ["seasonal_naive"] * (4 - cycle)


def test_an_ample_budget_fits_every_target_in_the_first_cycle() -> None:
    """With enough budget every target gets its configured model at once (real CPU, real fits)."""
    c = controller(4, budget=1e9)
    c.reconcile_once(START + 100.0)
    assert models_in_use(c) == ["holt_winters"] * 4


def test_refits_are_admitted_by_expected_cost_so_the_budget_is_not_overshot(meter: Meter) -> None:
    """1 s, 0.3 s fit units expected at 0.5 s (0.2 s of headroom, ADMIT_FRACTION): two per cycle.

    Each pair of refits is followed by the pair's peak calibrations (fit units of their
    own, owed at once), before the next pair's refits.
    """
    assert (FIT_COST_MARGIN, ADMIT_FRACTION) == (1.5, 0.8)
    meter.fit, meter.other = 0.3, 0.001
    c = controller(6, budget=1e9, cpu=meter)
    c.reconcile_once(START + 100.0)  # every target fitted
    c.reconcile_once(START + 130.0)  # and its peak calibration, a fit unit of its own
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=1.0))
    due = START + 100.0 + 3600.0  # every refit due
    fitted_at = []
    for cycle in range(6):
        meter.charges.clear()
        c.reconcile_once(due + 30.0 * cycle)
        assert sum(meter.charges) <= 1.0, meter.charges
        fitted_at.append(
            sorted(t.deployment for t in c.policy.targets if c.forecaster(t.key).last_fit == due + 30.0 * cycle)
        )
    expected = [["d0", "d1"], [], ["d2", "d3"], [], ["d4", "d5"], []]
    assert fitted_at == expected, "two per cycle, the most overdue first, each pair then calibrated"


def test_updates_beyond_the_budget_wait_but_never_past_their_bucket(meter: Meter) -> None:
    """Six 0.3 s updates (expected at 0.45 s) do not fit in one 1 s cycle: two a cycle, all within the bucket."""
    c = controller(6, budget=1e9, cpu=meter)
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
        assert sum(meter.charges) <= 1.0, meter.charges
    assert updated[:3] == [2, 4, 6], "the first of a kind is expected at half the allowance, then at 1.5 x 0.3 s"
    assert all(c.forecaster(t.key).stale_since is None for t in c.policy.targets)


def test_stand_ins_beyond_the_owed_work_allowance_follow_in_the_next_cycle(meter: Meter) -> None:
    """Owed stand-ins stop at the allowance; targets without one hold (no forecast) for a cycle."""
    assert OWED_WORK_SECONDS == 1.0
    c = controller(4, budget=0.0, cpu=meter)
    first = c.reconcile_once(START + 100.0)
    # 0.3 s each: the first expected at 0.5 s (half the allowance), the next at 0.45 s; a third would pass 1 s.
    assert models_in_use(c) == ["seasonal_naive", "seasonal_naive", "-", "-"]
    assert all(r.decision is not None and r.decision.replicas >= 1 for r in first.results), "no scale-down"
    c.reconcile_once(START + 130.0)
    assert models_in_use(c) == ["seasonal_naive"] * 4


def test_a_stand_in_costlier_than_what_the_cycle_leaves_runs_alone(meter: Meter) -> None:
    """Observing takes 0.8 s of the 1 s: a 0.3 s stand-in cannot fit, so one runs per cycle, not none."""
    c = controller(3, budget=1.0, cpu=meter, observe=0.8)
    c.reconcile_once(START + 100.0)  # unknown cost, expected at 0.5 s: runs alone
    assert models_in_use(c) == ["seasonal_naive", "-", "-"]
    c.reconcile_once(START + 130.0)  # known: 0.8 + 1.5 x 0.3 > 1, nothing else ran: alone again
    assert models_in_use(c) == ["seasonal_naive", "seasonal_naive", "-"]


def test_the_cycles_other_work_counts_against_the_budget(meter: Meter) -> None:
    """Observing, deciding and saving are charged: every cycle stays <= 1 s, and fits still progress.

    Observe 0.3 s, apply 0.025 s per target (the decide pass: 0.3 s), a save every 4
    cycles 0.2 s, fits 0.18 s (expected 0.38 s: 0.2 s of headroom): the forecast pass
    gets 0.4 s, one fit, and none in a cycle that saves. Counting the forecast pass
    alone, four fits would start within its 1 s and the cycle take 1.3 s.
    """
    meter.fit, meter.other = 0.18, 0.01
    c = controller(12, budget=1.0, cpu=meter, observe=0.3, apply=0.025)
    store = ChargedStore(meter, 0.2)
    c.fit_store, c.fit_save_interval_seconds = store, 120.0
    c.reconcile_once(START + 10.0)  # stand-ins and first fits; no decide pass yet to go by
    c.save_fit_state(START + 10.0)  # nor a save
    costs, fits = [], []
    for cycle in range(1, 6):
        before, charges = meter(), len(meter.charges)
        c.reconcile_once(START + 10.0 + 30.0 * cycle)
        costs.append(round(meter() - before, 6))
        fits.append(meter.charges[charges:].count(meter.fit))
    assert store.saves == 2, "a save in cycle 4"
    assert costs == [0.78, 0.78, 0.78, 0.8, 0.78]
    assert fits == [1, 1, 1, 0, 1]


def test_the_first_save_after_a_start_is_reserved_before_its_cost_is_known(meter: Meter) -> None:
    """A save of unknown cost gets half the owed-work allowance: the cycle that makes it stays <= 1 s.

    Observe 0.1 s, fits 0.18 s (expected 0.38 s: 0.2 s of headroom), the first save
    0.4 s, 30 targets (fits due in every cycle): with 0.5 s reserved the save cycle runs
    two fits fewer and takes 0.68 s; reserving nothing, it ran as many fits as any cycle
    (0.64 s) and then the save (1.04 s).
    """
    meter.fit, meter.other = 0.18, 0.01
    c = controller(30, budget=1.0, cpu=meter, observe=0.1)
    store = ChargedStore(meter, 0.4)
    c.fit_store, c.fit_save_interval_seconds = store, 120.0
    costs = []
    for cycle in range(6):
        before = meter()
        c.reconcile_once(START + 10.0 + 30.0 * cycle)
        costs.append(round(meter() - before, 6))
    assert store.saves == 1, "the first save in cycle 4"
    assert max(costs[1:]) <= OWED_WORK_SECONDS, costs
    assert costs == [0.4, 0.64, 0.64, 0.64, 0.68, 0.64]


def test_a_save_is_spread_over_its_interval_one_group_of_targets_per_cycle(
    meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 targets in groups of 2 and a 240-s interval (8 cycles of 30 s): 8 groups, each
    encoded in a cycle of its own, never all 16 states in one cycle (before: all 16 in the
    cycle that saved). The store gets the whole set once every group was encoded, then
    again at each group's next encoding, and a restart from it restores every target."""
    monkeypatch.setattr(save_rounds, "GROUP_TARGETS", 2)
    encoded: list[list[str]] = []

    def recording(states: Mapping[str, object], **kwargs: int) -> list[bytes]:
        encoded[-1].extend(states)
        return fit_state.encode(states, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controller_module, "encode", recording)
    meter.fit, meter.other = 0.01, 0.001
    c = controller(16, budget=1.0, cpu=meter)
    store = InMemoryFitStore()
    c.fit_store, c.fit_save_interval_seconds = store, 240.0
    saves = []
    for cycle in range(17):
        encoded.append([])
        c.reconcile_once(START + 10.0 + 30.0 * cycle)
        saves.append(store.saves)
    per_cycle = [len(keys) for keys in encoded]
    assert max(per_cycle) <= 6 and sum(per_cycle[:9]) == 16, per_cycle  # 2 +- 4 per group
    assert [sum(1 for keys in encoded[:9] if key in keys) for key in (t.key for t in c.policy.targets)] == [1] * 16
    assert saves[:8] == [0] * 8 and saves[8] == 1, "the first save once the eighth group is encoded (240 s)"
    assert saves[-1] > 2, "then one at each later group's encoding"
    assert set(fit_state.decode(store.load()).states) == {t.key for t in c.policy.targets}


def test_saves_yield_to_the_restores_of_a_restart(meter: Meter, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart restores 8 saved fits, two a cycle (0.3 s each in a 1-s cycle): no group is
    encoded while a restore is owed (the store already holds those states; at 1,000 targets a
    group's ~0.1 s was a quarter of what a restart's cycles had left for restoring), and the
    save resumes once every target is restored. Before, the groups due meanwhile were encoded
    in the cycles that restored."""
    monkeypatch.setattr(save_rounds, "GROUP_TARGETS", 2)
    encoded: list[list[str]] = []

    def recording(states: Mapping[str, object], **kwargs: int) -> list[bytes]:
        if encoded:
            encoded[-1].extend(states)
        return fit_state.encode(states, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controller_module, "encode", recording)
    meter.fit, meter.other = 0.3, 0.001
    store = InMemoryFitStore()
    first = controller(8, budget=1e9, cpu=meter)
    first.fit_store = store
    first.reconcile_once(START + 100.0)  # every target fitted
    first.reconcile_once(START + 130.0)  # and calibrated
    first.save_fit_state(START + 130.0)  # a clean stop
    c = controller(8, budget=1.0, cpu=meter)
    c.fit_store, c.fit_save_interval_seconds = store, 60.0  # 4 groups, one due every 15 s
    restoring = []
    for cycle in range(10):
        encoded.append([])
        c.reconcile_once(START + 160.0 + 30.0 * cycle)
        restoring.append(sum(c.forecaster(t.key).restoring for t in c.policy.targets))
    assert restoring[:4] == [6, 4, 2, 0], "two restores a cycle"
    assert models_in_use(c) == ["holt_winters"] * 8
    assert [len(keys) for keys in encoded[:4]] == [0, 0, 0, 0], "no encoding while a restore is owed"
    assert sum(len(keys) for keys in encoded[4:]) >= 8, "then every group is encoded again"
    assert set(fit_state.decode(store.load()).states) == {t.key for t in c.policy.targets}
