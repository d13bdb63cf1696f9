"""Two simulated days of the soak (``benchmarks/bench_soak.py`` runs 14 at 100 targets).

The real Controller over three targets, every fault kind injected on a seeded schedule
and a clean restart from the saved fits at the middle: every target decides every cycle,
nothing is scaled down on bad data, and the restarted controller serves its fitted models
from its first cycle.
"""

from __future__ import annotations

import pytest

from tests.sim.soak import FAULT_KINDS, Soak, SoakReport

TARGETS = 3


@pytest.fixture(scope="module")
def report() -> SoakReport:
    """One short soak, shared by the checks below (daily refits keep it to seconds)."""
    return Soak(targets=TARGETS, days=2.0, refit_seconds=86400, fault_every_seconds=2 * 3600.0).run()


def test_every_fault_kind_was_injected(report: SoakReport) -> None:
    """The schedule covers every kind, each more than once."""
    assert all(report.windows[kind] >= 2 for kind in FAULT_KINDS), report.windows
    assert all(report.bad_data_decisions[kind] > 0 for kind in FAULT_KINDS), report.bad_data_decisions


def test_no_decision_is_lost(report: SoakReport) -> None:
    """Every target decides in every cycle, through every fault and the restart."""
    assert report.cycles == 2 * 2880
    assert not report.lost, report.lost
    assert report.decisions == report.cycles * TARGETS


def test_nothing_is_scaled_down_on_bad_data(report: SoakReport) -> None:
    """Neither serving replicas nor serving + placeholders go down while a target's data is bad."""
    assert sum(report.bad_data_scale_downs.values()) == 0, report.bad_data_scale_downs
    assert sum(report.bad_data_capacity_downs.values()) == 0, report.bad_data_capacity_downs
    assert report.scale_downs > 0, "the daily load does scale down on good data: the check can fail"


def test_the_restart_carries_on_from_the_saved_fits(report: SoakReport) -> None:
    """The new controller serves the configured model for every target from its first cycle."""
    assert report.saved_bytes > 0
    assert report.restored_fitted == TARGETS
