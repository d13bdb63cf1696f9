"""One offline experiment: a scenario, the policy runs on it and the trade-off sweep.

Why: ``autoscaler simulate`` and ``autoscaler backtest`` replay a load through the same
pipeline: one shared noisy load, each policy run on it through
:func:`autoscaler.offline.sim.engine.run_policy`, optionally the predictive policy once per
forecast quantile (reusing the run already made at the policy's own quantile), all under
one progress bar. They differ in where the scenario comes from (a bundled trace, a target's
recorded history) and in what they print and write, so those parts stay with each command;
the pipeline is here, once.

Runs happen in a fixed order: :attr:`Experiment.runs`, then the sweep's reference runs,
then the sweep's quantiles. Every run is deterministic given the scenario, so the same
experiment gives the same results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.sim.engine import PolicyResult, Scenario, run_policy
from autoscaler.offline.sim.progress import progress_bar
from autoscaler.offline.sim.tradeoff import run_tradeoff, tradeoff_rows
from autoscaler.policy.schema import Target


@dataclass(frozen=True)
class Run:
    """One policy run: which policy (:data:`~autoscaler.offline.sim.engine.POLICIES`), on which target."""

    policy: str
    target: Target
    loop_interval: float = 30.0
    """The controller's loop period (the policy file's ``loopIntervalSeconds``)."""
    label: str | None = None
    """The result's name (e.g. ``candidate`` for a second predictive policy); default ``policy``."""


@dataclass(frozen=True)
class Sweep:
    """The trade-off curve: the predictive ``target`` at each forecast quantile."""

    target: Target
    quantiles: tuple[float, ...]
    loop_interval: float = 30.0
    reuse: str | None = None
    """Label of the run that is already the point at the target's own quantile, if any.

    Reused only when the target sizes at one fixed level (no ``cost`` section, which would
    choose the level itself)."""
    references: tuple[Run, ...] = ()
    """Runs the curve is drawn against that :attr:`Experiment.runs` does not hold."""

    @property
    def reusable(self) -> bool:
        """Whether the run labelled :attr:`reuse` is a point of the curve."""
        return self.reuse is not None and self.target.cost is None

    def to_simulate(self) -> list[float]:
        """The quantiles that need a run of their own."""
        own = self.target.forecast.quantile
        return [q for q in self.quantiles if not (self.reusable and q == own)]


@dataclass(frozen=True)
class Experiment:
    """A scenario and what to run on it."""

    scenario: Scenario
    runs: tuple[Run, ...]
    sweep: Sweep | None = None
    initial_replicas: int | None = None
    """Serving replicas ready at the start of every run (default: what the first step needs)."""

    def simulated_runs(self) -> int:
        """How many policy runs the experiment simulates."""
        if self.sweep is None:
            return len(self.runs)
        return len(self.runs) + len(self.sweep.references) + len(self.sweep.to_simulate())


@dataclass
class Results:
    """What an experiment produced."""

    experiment: Experiment
    load: NDArray[np.float64]
    """The per-step load every run saw."""
    results: list[PolicyResult]
    """One result per :attr:`Experiment.runs`, in order."""
    references: list[PolicyResult] = field(default_factory=list)
    """One result per :attr:`Sweep.references`, in order."""
    points: list[tuple[float, PolicyResult]] = field(default_factory=list)
    """``(quantile, result)`` per swept quantile, in the order asked."""
    wall_seconds: float = 0.0
    """Time the runs took."""

    @property
    def steps(self) -> int:
        """Simulated steps per run."""
        return int(self.load.size)

    @property
    def simulated_days(self) -> float:
        """Length of one run in days."""
        return self.steps * self.experiment.scenario.dt / 86400.0

    def by_name(self) -> dict[str, PolicyResult]:
        """Every run's result (the references too) by its name."""
        return {r.name: r for r in (*self.results, *self.references)}

    def tradeoff_rows(self) -> list[dict[str, Any]]:
        """The trade-off curve's rows (empty without a sweep)."""
        sweep = self.experiment.sweep
        if sweep is None or not self.points:
            return []
        return tradeoff_rows(self.points, gpus_per_replica=sweep.target.placeholders.gpus_per_pod)


def run(experiment: Experiment, *, progress: bool = True, desc: str = "simulating") -> Results:
    """Run every policy of the experiment on one shared load, then the sweep.

    Args:
        experiment: What to run.
        progress: Show a progress bar on stderr (see :func:`~autoscaler.offline.sim.progress.progress_bar`).
        desc: The bar's label.
    """
    scenario = experiment.scenario
    load = scenario.load()
    advance, close = progress_bar(progress, load.size * experiment.simulated_runs(), desc=desc)
    started = time.perf_counter()

    def simulate(r: Run) -> PolicyResult:
        return run_policy(
            r.policy,
            scenario,
            r.target,
            loop_interval=r.loop_interval,
            load=load,
            progress=advance,
            initial_replicas=experiment.initial_replicas,
            label=r.label,
        )

    out = Results(experiment=experiment, load=load, results=[simulate(r) for r in experiment.runs])
    sweep = experiment.sweep
    if sweep is not None:
        out.references = [simulate(r) for r in sweep.references]
        reused = out.by_name()[sweep.reuse] if sweep.reusable and sweep.reuse is not None else None
        out.points = run_tradeoff(
            scenario,
            sweep.target,
            sweep.quantiles,
            load=load,
            loop_interval=sweep.loop_interval,
            known={sweep.target.forecast.quantile: reused} if reused is not None else {},
            initial_replicas=experiment.initial_replicas,
            progress=advance,
        )
    close()
    out.wall_seconds = time.perf_counter() - started
    return out
