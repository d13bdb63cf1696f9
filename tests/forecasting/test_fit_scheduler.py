"""``FitScheduler`` on fake forecasters and a fake CPU meter: its admission rules, figure by figure.

Each fake refresh advances the meter by a fixed cost (a fit, an update, a stand-in or a
restore), so what is admitted in which order is exact. The same rules driven through a
whole controller (other work charged too) are in ``tests/sim/test_fit_budget.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import pytest

from autoscaler.forecasting.fit_scheduler import (
    ADMIT_FRACTION,
    FIRST_FIT_SECONDS,
    FIT_COST_MARGIN,
    OWED_WORK_SECONDS,
    FitScheduler,
    owed_kind,
)

NOW = 10_000.0
LOOP = 30.0
REFIT = 3600.0


@dataclasses.dataclass
class Meter:
    """A virtual CPU clock, advanced only by the fakes' refreshes."""

    seconds: float = 0.0

    def __call__(self) -> float:
        return self.seconds


@dataclasses.dataclass
class Fake:
    """A forecaster whose refresh costs ``fit`` when it refits, else the cost of its owed kind."""

    meter: Meter
    name: str
    prediction: object | None = None
    stale_since: float | None = None
    restoring: bool = False
    last_fit: float | None = None
    fit_seconds: dict[bool, float] = dataclasses.field(default_factory=dict)
    fit_deferred: bool = False
    restore_ignored: str | None = None
    #: When observing completes the open bucket (``bucket_due`` from then on).
    bucket_end: float = math.inf
    selects: bool = False
    #: The next fit is a peak calibration owed since the model's refit (cleared by a fit).
    calibration_due: bool = False
    fit: float = 0.3
    update: float = 0.3
    stand_in: float = 0.3
    restore: float = 0.3
    #: The refreshes, in order: (name, whether a fit was allowed).
    log: list[tuple[str, bool]] = dataclasses.field(default_factory=list)

    def bucket_due(self, now: float) -> bool:
        return now >= self.bucket_end

    def fit_due(self, now: float) -> bool:
        return self.calibration_due or self.last_fit is None or now - self.last_fit >= REFIT

    def next_fit_selects(self) -> bool:
        return self.selects

    def refresh(self, now: float, *, allow_fit: bool) -> None:
        self.log.append((self.name, allow_fit))
        if allow_fit and self.calibration_due:
            self.meter.seconds += self.fit
            self.fit_seconds[False] = self.fit
            self.calibration_due = False
        elif allow_fit and self.fit_due(now):
            self.meter.seconds += self.fit
            self.fit_seconds[self.selects] = self.fit
            self.last_fit, self.prediction, self.stale_since = now, "fitted", None
        elif self.prediction is None:
            self.meter.seconds += self.restore if self.restoring else self.stand_in
            self.prediction, self.restoring = "stand-in", False
        elif self.stale_since is not None:
            self.meter.seconds += self.update
            self.stale_since = None


def fakes(meter: Meter, log: list[tuple[str, bool]], count: int, **fields: Any) -> list[Fake]:
    """``count`` fakes named f0, f1, ... sharing ``log`` (each with its own copy of ``fields``)."""
    return [Fake(meter, f"f{i}", log=log, **copy.deepcopy(fields)) for i in range(count)]


def run(
    scheduler: FitScheduler,
    fcs: list[Fake],
    *,
    spent: float = 0.0,
    saving: float = 0.0,
    budget: float = 1.0,
    now: float = NOW,
) -> list[tuple[Fake, str]]:
    return scheduler.run(fcs, now, spent=spent, saving=saving, budget=budget, interval=LOOP)


def test_the_defaults() -> None:
    """Process CPU, and the documented figures."""
    scheduler = FitScheduler()
    assert scheduler.cpu_meter is time.process_time
    assert (FIT_COST_MARGIN, OWED_WORK_SECONDS, FIRST_FIT_SECONDS, ADMIT_FRACTION) == (1.5, 1.0, 1.0, 0.8)
    settings = (scheduler.cost_margin, scheduler.owed_work_seconds, scheduler.first_fit_seconds)
    assert (*settings, scheduler.admit_fraction) == (1.5, 1.0, 1.0, 0.8)


def test_owed_kind() -> None:
    """A forecaster with a forecast owes an update; without one, a restore if saved, else a stand-in."""
    meter = Meter()
    assert owed_kind(Fake(meter, "a", prediction="p")) == "update"
    assert owed_kind(Fake(meter, "b", restoring=True)) == "restore"
    assert owed_kind(Fake(meter, "c")) == "stand_in"


def test_updates_come_first_the_longest_waiting_first_then_stand_ins() -> None:
    """Owed work in order: updates by staleness, then forecasters without a forecast; then refits."""
    meter, log = Meter(), list[tuple[str, bool]]()
    late = Fake(meter, "late", log=log, prediction="p", stale_since=NOW - 10.0, last_fit=NOW)
    early = Fake(meter, "early", log=log, prediction="p", stale_since=NOW - 20.0, last_fit=NOW)
    new = Fake(meter, "new", log=log, last_fit=NOW)
    due = Fake(meter, "due", log=log, prediction="p", last_fit=NOW - REFIT)
    for fc in (late, early, new, due):
        fc.update = fc.stand_in = fc.fit = 0.01
    run(FitScheduler(meter), [new, due, late, early], budget=1e9)
    assert log == [("early", False), ("late", False), ("new", False), ("due", True)]


def test_owed_work_is_expected_at_half_the_allowance_then_at_the_margin_over_the_latest() -> None:
    """0.3 s updates at 1 s: the first expected at 0.5 s, the next at 0.45 s; a third would pass 1 s."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = fakes(meter, log, 6, prediction="p", stale_since=NOW - 1.0, last_fit=NOW)
    scheduler = FitScheduler(meter)
    counts = []
    for cycle in range(3):
        run(scheduler, fcs, now=NOW + LOOP * cycle)
        counts.append(sum(fc.stale_since is None for fc in fcs))
    assert counts == [2, 4, 6]
    assert scheduler.owed_seconds == {"update": pytest.approx(0.3)}


def test_each_owed_kind_has_its_own_cost() -> None:
    """A cheap restore's cost says nothing about a stand-in: that is still expected at half the allowance."""
    meter, log = Meter(), list[tuple[str, bool]]()
    restore = Fake(meter, "restore", log=log, restoring=True, restore=0.05, last_fit=NOW)
    stand_ins = fakes(meter, log, 2, stand_in=0.4, last_fit=NOW)
    scheduler = FitScheduler(meter)
    run(scheduler, [restore, *stand_ins], budget=0.0)
    # 0.05 restore; a stand-in expected at 0.5 (0.55 <= 1), 0.4 spent; the next at 0.6 (1.05 > 1).
    assert [name for name, _ in log] == ["restore", "f0"]
    assert scheduler.owed_seconds == {"restore": pytest.approx(0.05), "stand_in": pytest.approx(0.4)}


def test_owed_work_may_exceed_a_smaller_budget_up_to_its_allowance() -> None:
    """With no fit budget the stand-ins still run (up to the allowance) and every refit is deferred."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = fakes(meter, log, 5, stand_in=0.01)
    run(FitScheduler(meter), fcs, budget=0.0)
    assert all(fc.prediction == "stand-in" for fc in fcs)
    assert all(not allowed for _, allowed in log)
    assert all(fc.fit_deferred for fc in fcs)


def test_admitted_work_leaves_a_fifth_of_the_cap_as_headroom() -> None:
    """0.1 s restores: admitted while the cycle at their latest cost stays within 0.8 s (of 1 s), not 1 s."""
    meter, log = Meter(), list[tuple[str, bool]]()
    scheduler = FitScheduler(meter)
    assert scheduler.expected(0.1, 1.0) == pytest.approx(0.3)  # 0.1 + 0.2 of headroom > 1.5 x 0.1
    assert scheduler.expected(0.6, 1.0) == pytest.approx(0.9)  # 1.5 x 0.6 > 0.6 + 0.2
    scheduler.owed_seconds["restore"] = 0.1
    run(scheduler, fakes(meter, log, 10, restoring=True, restore=0.1, last_fit=NOW), spent=0.12)
    assert len(log) == 6  # 0.12 + 0.1 x k + 0.3 <= 1: k = 0..5; the seventh would end the cycle at 0.82 s
    brim = FitScheduler(meter, admit_fraction=1.0)
    brim.owed_seconds["restore"] = 0.1
    log.clear()
    run(brim, fakes(meter, log, 10, restoring=True, restore=0.1, last_fit=NOW), spent=0.12)
    assert len(log) == 8  # the margin alone: 0.12 + 0.1 x k + 0.15 <= 1, k = 0..7


def test_owed_peak_calibrations_run_before_overdue_refits() -> None:
    """A calibration owed since its model's refit (just now) goes before refits overdue for longer."""
    meter, log = Meter(), list[tuple[str, bool]]()
    overdue = fakes(meter, log, 2, prediction="p", last_fit=NOW - 2 * REFIT, fit_seconds={False: 0.2}, fit=0.2)
    calibrating = Fake(
        meter, "calibrating", log=log, prediction="p", last_fit=NOW, calibration_due=True, fit_seconds={False: 0.2}
    )
    calibrating.fit = 0.2
    run(FitScheduler(meter), [*overdue, calibrating])
    # 0.4 s expected each (0.2 + 0.2 of headroom): the calibration, then both refits (0.4 + 0.4 <= 1).
    assert [name for name, _ in log] == ["calibrating", "f0", "f1"]
    log.clear()
    calibrating.calibration_due, calibrating.last_fit = True, NOW
    overdue[0].last_fit = overdue[1].last_fit = NOW - 2 * REFIT
    run(FitScheduler(meter), [*overdue, calibrating], budget=0.7)  # 0.34 s expected each: two of the three
    assert [name for name, _ in log] == ["calibrating", "f0"]


def test_a_deferred_update_is_forced_in_the_last_cycle_of_its_bucket() -> None:
    """With no allowance at all updates wait, but one whose next bucket would complete runs anyway."""
    meter, log = Meter(), list[tuple[str, bool]]()
    scheduler = FitScheduler(meter, owed_work_seconds=0.0)
    waiting = Fake(meter, "waiting", log=log, prediction="p", stale_since=NOW, last_fit=NOW, bucket_end=NOW + 300)
    forced = Fake(meter, "forced", log=log, prediction="p", stale_since=NOW, last_fit=NOW, bucket_end=NOW + LOOP)
    run(scheduler, [waiting, forced], budget=0.0)
    assert log == [("forced", False)]
    assert waiting.stale_since == NOW


def test_work_costlier_than_what_the_cycle_leaves_runs_alone() -> None:
    """0.8 s already spent of 1 s: a stand-in expected at 0.5 s cannot fit, so it runs alone, one per cycle."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = fakes(meter, log, 3, last_fit=NOW)
    scheduler = FitScheduler(meter)
    run(scheduler, fcs, spent=0.8)
    assert [name for name, _ in log] == ["f0"]
    run(scheduler, fcs, spent=0.8, now=NOW + LOOP)  # known: 0.8 + 0.45 > 1, nothing else ran
    assert [name for name, _ in log] == ["f0", "f1"]


def test_work_that_fits_a_cycle_without_its_save_waits_for_such_a_cycle() -> None:
    """Running alone is for work that would never fit: not for work that only a save crowds out."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = fakes(meter, log, 1, last_fit=NOW)
    scheduler = FitScheduler(meter)
    run(scheduler, fcs, spent=0.9, saving=0.5)  # 0.5 expected <= 1 - 0.4: fits a cycle without the save
    assert log == []
    run(scheduler, fcs, spent=0.9)  # 0.5 > 1 - 0.9: would never fit
    assert log == [("f0", False)]


def test_refits_run_the_most_overdue_first_as_far_as_their_expected_cost_fits() -> None:
    """0.3 s fits expected at 0.5 s (0.2 s of headroom, more than the margin's 0.15): two a cycle, oldest first."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = [
        Fake(meter, f"f{i}", log=log, prediction="p", last_fit=NOW - REFIT - i, fit_seconds={False: 0.3})
        for i in range(6)
    ]
    scheduler = FitScheduler(meter)
    fitted = []
    for cycle in range(3):
        log.clear()
        before = meter()
        run(scheduler, fcs, now=NOW + LOOP * cycle)
        assert meter() - before <= 1.0
        fitted.append([name for name, _ in log])
    assert fitted == [["f5", "f4"], ["f3", "f2"], ["f1", "f0"]]
    assert [fc.fit_deferred for fc in fcs] == [False] * 6


def test_a_fit_never_measured_is_expected_at_the_latest_of_its_kind_else_the_first_fit_figure() -> None:
    """The first fit of a kind is expected at ``first_fit_seconds`` (at most the budget) and runs alone."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = fakes(meter, log, 3, prediction="p", fit=0.2)
    scheduler = FitScheduler(meter)
    run(scheduler, fcs, budget=1.0)
    # The first expected at 1.0 s (just fits); the next at 1.5 x 0.2 = 0.3 s, the latest of any.
    assert [name for name, _ in log] == ["f0", "f1", "f2"]
    assert scheduler.fit_seconds == {False: pytest.approx(0.2)}
    selecting = Fake(meter, "selecting", log=log, prediction="p", selects=True)
    log.clear()
    run(scheduler, [selecting], spent=0.5, budget=1.0)  # a selection: unknown kind, 0.5 + 1.0 > 1, alone
    assert log == [("selecting", True)]
    assert scheduler.fit_seconds == {False: pytest.approx(0.2), True: pytest.approx(0.3)}


def test_refits_stop_once_the_budget_is_spent() -> None:
    """Once something ran and the budget is reached no further refit is even considered."""
    meter, log = Meter(), list[tuple[str, bool]]()
    fcs = fakes(meter, log, 3, prediction="p", fit_seconds={False: 0.01}, fit=0.6)
    run(FitScheduler(meter), fcs, budget=1.0)
    assert [name for name, _ in log] == ["f0", "f1"]  # 0.6, then 1.2 >= 1
    assert [fc.fit_deferred for fc in fcs] == [False, False, True]


def test_ignored_restores_are_returned_once_in_order() -> None:
    """Why a saved fit could not be restored comes back to the caller (to log), then is cleared."""
    meter, log = Meter(), list[tuple[str, bool]]()
    a, b, c = fakes(meter, log, 3, prediction="p", last_fit=NOW)
    a.restore_ignored, c.restore_ignored = "version", "shape"
    scheduler = FitScheduler(meter)
    assert run(scheduler, [a, b, c]) == [(a, "version"), (c, "shape")]
    assert [fc.restore_ignored for fc in (a, b, c)] == [None, None, None]
    assert run(scheduler, [a, b, c]) == []
