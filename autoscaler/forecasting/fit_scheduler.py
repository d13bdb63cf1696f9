"""Which forecasts a cycle refreshes, so that the whole cycle stays within its CPU budget.

A cycle over a thousand targets cannot refit every model it would like to: a model
selection takes a large part of a CPU second. :class:`FitScheduler` spends what the rest of
the cycle leaves of ``fit_budget_seconds`` on the forecast work that matters most, owed
work (updates on completed buckets, restores of saved fits, stand-ins for targets without a
forecast) before due refits, and admits each piece only when its expected cost, learnt
from the latest of its kind, still fits.

It is a part of its own, apart from the controller, so its admission rules can be tested
with fake forecasters and a fake CPU meter (``cpu_meter``, injected), figure by figure,
without a simulated world. It reads no clock but that meter and logs nothing: what the
controller has to report comes back from :meth:`FitScheduler.run`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, TypeVar

#: A target's next fit is expected to cost up to this much more than its last: fit CPU
#: varies with the optimiser's iterations and with garbage collections (0.25-0.65 s
#: measured for the same 'auto' selection at 1,000 targets).
FIT_COST_MARGIN = 1.5

#: CPU seconds a whole cycle may reach with owed forecast work (updates on completed
#: buckets, stand-ins for targets without a forecast, restores of saved fits), even when
#: the policy's ``fit_budget_seconds`` is smaller; beyond it (and the budget) that work
#: waits a cycle. The cycle's other work (reading metrics, seeding, deciding, saving)
#: counts against it too, so a cycle stays within it whatever the number of targets.
OWED_WORK_SECONDS = 1.0

#: CPU seconds a fit of a kind never measured yet is expected to take: a first model
#: selection with its peak calibration takes up to ~0.7 s at the defaults, so at the
#: default budget the first one runs alone and the cycle stays within a second.
FIRST_FIT_SECONDS = 1.0

#: Work is admitted only while the cycle, with the latest cost of its kind, stays within
#: this fraction of what it may reach (the budget, or the owed-work allowance), besides
#: within all of it at ``cost_margin`` times that cost: the rest is headroom for what no
#: estimate of a piece foresees. At 1,000 targets a full garbage collection (0.13-0.26
#: s) lands in whatever piece triggers it, and the decide pass grows by ~0.15 s as
#: restored targets get a forecast: filled to the brim with restores and updates of a
#: few ms each (the margin adds next to nothing to them), cycles reached 1.0-1.12 s.
ADMIT_FRACTION = 0.8

#: What an owed refresh does (see :func:`owed_kind`).
OwedKind = Literal["update", "restore", "stand_in"]


class Schedulable(Protocol):
    """What the scheduler reads and sets on a forecaster (a ``TargetForecaster``, or a fake)."""

    #: Set after each run: a refit was due and did not run.
    fit_deferred: bool
    #: Why a saved fit could not be restored (reported by :meth:`FitScheduler.run`, then cleared).
    restore_ignored: str | None

    @property
    def prediction(self) -> object | None:
        """The forecast in force (``None``: none yet)."""

    @property
    def stale_since(self) -> float | None:
        """When a bucket completed that the forecast has not conditioned on yet."""

    @property
    def restoring(self) -> bool:
        """A saved fit waits to be restored."""

    @property
    def last_fit(self) -> float | None:
        """When the model was last fitted."""

    @property
    def fit_seconds(self) -> Mapping[bool, float]:
        """CPU seconds of this forecaster's latest fit, by whether it was a model selection."""

    @property
    def calibration_due(self) -> bool:
        """The next fit is the peak calibration owed since the model's refit (short, and urgent)."""

    def bucket_due(self, now: float) -> bool:
        """A completed bucket must be conditioned on by ``now`` (its last cycle)."""

    def fit_due(self, now: float) -> bool:
        """A refit is due."""

    def next_fit_selects(self) -> bool:
        """The next fit is a model selection."""

    def refresh(self, now: float, *, allow_fit: bool) -> None:
        """Bring the forecast up to date (refitting only with ``allow_fit``)."""


F = TypeVar("F", bound=Schedulable)


def owed_kind(fc: Schedulable) -> OwedKind:
    """What an owed refresh of ``fc`` will do, each kind with its own typical cost. Pure.

    An update is a pass of the model's recursion over new buckets (milliseconds); a
    restore rebuilds a saved fit with its saved parameters (a few times that); a stand-in
    fits the seasonal-naive fallback and a first peak calibration (a large part of a
    second): budgeting them at one cost would admit too many stand-ins or too few restores.
    """
    if fc.prediction is not None:
        return "update"
    return "restore" if fc.restoring else "stand_in"


def refit_order(fc: Schedulable) -> tuple[bool, bool, float]:
    """Sort key of the due fits: never fitted first, then owed peak calibrations, then the most overdue. Pure.

    A target never fitted serves a stand-in (or nothing): its first fit matters most. A
    peak calibration is owed right after its model's refit, whose forecast the old
    calibration prices until it runs: put behind the overdue refits (by last fit, it
    would be the latest), it waited for all of them. Refits of a target still serving a
    current model come last, the longest waiting first.
    """
    return fc.last_fit is not None, not fc.calibration_due, fc.last_fit or 0.0


class FitScheduler:
    """Refreshes a cycle's forecasts within its CPU budget, learning what each kind of work costs.

    Args:
        cpu_meter: CPU seconds (the process's, all threads, by default): what the budget
            is counted in. Read before and after each refresh.
        cost_margin: How much more than its latest a piece of work is expected to cost.
        owed_work_seconds: What a cycle may reach with owed work, even beyond the budget.
        first_fit_seconds: What a fit of a kind never measured yet is expected to cost.
        admit_fraction: The fraction of the budget (or of the owed-work allowance) that
            admitted work may fill at its latest cost (see :meth:`expected`).
    """

    def __init__(
        self,
        cpu_meter: Callable[[], float] = time.process_time,
        *,
        cost_margin: float = FIT_COST_MARGIN,
        owed_work_seconds: float = OWED_WORK_SECONDS,
        first_fit_seconds: float = FIRST_FIT_SECONDS,
        admit_fraction: float = ADMIT_FRACTION,
    ) -> None:
        self.cpu_meter = cpu_meter
        self.cost_margin = cost_margin
        self.owed_work_seconds = owed_work_seconds
        self.first_fit_seconds = first_fit_seconds
        self.admit_fraction = admit_fraction
        #: CPU seconds of the latest owed refresh of any forecaster, by kind (:func:`owed_kind`).
        self.owed_seconds: dict[OwedKind, float] = {}
        #: CPU seconds of the latest fit of any forecaster, keyed by whether it was a model
        #: selection: the cost assumed for a forecaster that has not had such a fit yet.
        self.fit_seconds: dict[bool, float] = {}

    def run(
        self, forecasters: Sequence[F], now: float, *, spent: float, saving: float, budget: float, interval: float
    ) -> list[tuple[F, str]]:
        """Refresh the forecasts of this cycle so that the whole cycle stays within ``budget``.

        ``spent`` is the CPU the cycle uses beside forecasting: what reading metrics and
        seeding took so far, plus the decide pass and any save still to come (as much as
        they took lately; ``saving`` of it is the save). Forecasting gets only what is
        left, so the budget (the policy's ``fit_budget_seconds``) bounds the cycle, not
        just its forecasts. ``interval`` is the loop interval: the next cycle's distance.

        Owed work comes first and may bring the cycle to ``budget`` or to
        ``owed_work_seconds``, the larger (a zero fit budget disables refits, not
        forecasting): the updates of forecasters with completed buckets, the longest
        waiting first (cheap, and done early in a bucket they never pile up in its last
        cycle), then the restore or stand-in (seasonal-naive fallback) of each
        forecaster without a forecast. Each is admitted when its expected cost fits
        (:meth:`expected`, from the latest of its kind, :func:`owed_kind`); an update is
        deferred at most to its bucket's last cycle, so every target conditions on every
        bucket before the next one completes. What is left of ``budget`` goes to due
        fits in :func:`refit_order`, each only if its expected cost fits (from that
        forecaster's last fit of the same kind, model selection or refit, else the
        latest of any forecaster, else ``first_fit_seconds`` or the whole budget, when
        smaller). Work expected to take more than a cycle without a save can give runs
        alone, in a cycle with no other forecast work: it would never fit, and must not
        wait forever.

        Afterwards every forecaster's ``fit_deferred`` says whether its refit is still due.

        Returns:
            The forecasters whose saved fit could not be restored, each with the reason
            (in the order given; their ``restore_ignored`` is cleared).
        """
        allowance = max(budget, self.owed_work_seconds)
        next_loop = now + interval
        base, ran = spent - saving, False

        def admits(expected: float, cap: float) -> bool:
            if cap <= 0:
                return False
            return spent + expected <= cap or (not ran and expected > cap - base)

        owed = [fc for fc in forecasters if fc.prediction is None or fc.stale_since is not None]
        owed.sort(key=lambda fc: (fc.prediction is None, fc.stale_since or 0.0))
        for fc in owed:
            kind = owed_kind(fc)
            known = self.owed_seconds.get(kind)
            expected = allowance / 2 if known is None else self.expected(known, allowance)
            if admits(expected, allowance) or (fc.prediction is not None and fc.bucket_due(next_loop)):
                seconds = self._timed_refresh(fc, now, allow_fit=False)
                self.owed_seconds[kind] = seconds
                spent, ran = spent + seconds, True
        due = [fc for fc in forecasters if fc.fit_due(now)]
        due.sort(key=refit_order)
        for fc in due:
            if ran and spent >= budget:
                break
            selects = fc.next_fit_selects()
            known = fc.fit_seconds.get(selects, self.fit_seconds.get(selects))
            expected = min(budget, self.first_fit_seconds) if known is None else self.expected(known, budget)
            if not admits(expected, budget):
                continue
            spent += self._timed_refresh(fc, now, allow_fit=True)
            ran = True
            if selects in fc.fit_seconds:
                self.fit_seconds[selects] = fc.fit_seconds[selects]
        ignored: list[tuple[F, str]] = []
        for fc in forecasters:
            fc.fit_deferred = fc.fit_due(now)
            if fc.restore_ignored is not None:
                ignored.append((fc, fc.restore_ignored))
                fc.restore_ignored = None
        return ignored

    def expected(self, latest: float, cap: float) -> float:
        """What a piece of work whose kind last cost ``latest`` is expected to take of ``cap``. Pure.

        ``cost_margin`` times the latest (a fit's CPU varies with the optimiser's
        iterations), and at least the latest plus the headroom ``admit_fraction`` leaves
        of ``cap``: for pieces of a few ms the margin alone would fill the cycle to it.
        """
        return max(self.cost_margin * latest, latest + (1.0 - self.admit_fraction) * cap)

    def _timed_refresh(self, fc: Schedulable, now: float, *, allow_fit: bool) -> float:
        """Refresh one forecast; returns the CPU seconds it took."""
        started = self.cpu_meter()
        fc.refresh(now, allow_fit=allow_fit)
        return self.cpu_meter() - started
