"""A soak in virtual time: the real Controller over days, faults on a schedule, a restart mid-way.

Why: the fault matrix shows that one fault at a time is held and reported; a soak shows
that nothing accumulates over weeks of them (memory, lost decisions, a scale-down that
slipped through on bad data) and that a restart in the middle carries on from the saved
fits. ``benchmarks/bench_soak.py`` runs it for 14 days at 100 targets; ``test_soak.py``
runs a short version.

The world is the simulator's: every target has its own :class:`SimCluster` (so its
decisions act on its own replicas) and all read one seeded daily-and-weekly load, the
history before the start and the live traffic after it coming from the same curve (a
restarted controller reloads what Prometheus would hold). :class:`FaultyMetrics` sits
between the controller and the simulated metrics and injects, per :class:`FaultWindow`:

* ``stale``: the target's newest sample is 10 minutes old and reads a load of 0;
* ``future``: the newest sample is dated an hour ahead of the controller's clock, load 0;
* ``nan``: the load is NaN (``metrics_invalid``);
* ``missing``: the target's series is absent from the answer;
* ``error``: Prometheus answers 503 to the cycle's queries (every target);
* ``hung``: Prometheus answers nothing: the call waits out its timeout on the
  controller's (virtual) monotonic clock, then fails (every target).

The per-target faults read a load of 0 where they carry one, so a decision that used
them would scale down: every decision taken on bad data is checked for that.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import Decision, MetricsSnapshot
from autoscaler.errors import MetricsUnavailable
from autoscaler.forecasting.fit_state import InMemoryFitStore
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Forecast, Policy, Target
from autoscaler.ports import ApplyResult, ClusterRead
from autoscaler.runtime.controller import Controller, CycleResult
from models.series import Series

DAY = 86400.0
START = 1_700_006_400.0  # a multiple of 300 s
DT = 10.0
HISTORY_DAYS = 14.0
#: Per-target faults, then the faults of the whole source.
TARGET_FAULTS = ("stale", "future", "nan", "missing")
SOURCE_FAULTS = ("error", "hung")
FAULT_KINDS = TARGET_FAULTS + SOURCE_FAULTS
#: What a hung call costs before it fails (``autoscaler run``'s default Prometheus timeout).
HUNG_SECONDS = 10.0
#: The cycle deadline, as ``autoscaler run`` sets it (the loop interval).
LOOP_SECONDS = 30.0


def load_curve(t: np.ndarray, seed: int) -> np.ndarray:
    """Requests/s at unix times ``t``: a daily cycle (~300 to ~2,100), quieter weekends, seeded noise."""
    rng = np.random.default_rng(seed)
    day = np.sin(2 * np.pi * (t - START) / DAY)
    weekend = np.where(((t - START) // DAY) % 7 >= 5, 0.7, 1.0)
    return np.maximum(0.0, (1200 + 900 * day) * weekend + rng.normal(0, 40, t.size))


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault: its kind, its time span ``[start, end)`` and the targets it hits."""

    kind: str
    start: float
    end: float
    targets: frozenset[str]


def fault_schedule(
    keys: Sequence[str], *, start: float, end: float, seed: int, every_seconds: float, quiet: tuple[float, float]
) -> list[FaultWindow]:
    """Seeded faults from ``start`` to ``end``: one window every ``every_seconds`` (jittered).

    Kinds take turns in a shuffled order per round, so each is injected about as often.
    A window lasts 2-20 minutes and a per-target fault hits 10-30 % of the targets; none
    overlaps ``quiet`` (the restart, whose first cycle loads histories). Pure.
    """
    rng = np.random.default_rng(seed)
    windows: list[FaultWindow] = []
    kinds: list[str] = []
    t = start + every_seconds / 2
    while t < end:
        if not kinds:
            kinds = [str(k) for k in rng.permutation(FAULT_KINDS)]
        kind = kinds.pop()
        begin = t + float(rng.uniform(-0.25, 0.25)) * every_seconds
        finish = begin + float(rng.uniform(120.0, 1200.0))
        t += every_seconds
        if finish > end or (begin < quiet[1] and finish > quiet[0]):
            continue
        if kind in TARGET_FAULTS:
            count = max(1, round(len(keys) * float(rng.uniform(0.1, 0.3))))
            hit = frozenset(str(k) for k in rng.choice(np.asarray(keys), size=count, replace=False))
        else:
            hit = frozenset(keys)
        windows.append(FaultWindow(kind, begin, finish, hit))
    return windows


class VirtualMonotonic:
    """The controller's monotonic clock: moves only when a (simulated) call waits."""

    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


class FaultyMetrics:
    """The simulated metrics with the scheduled faults injected (a :class:`~autoscaler.ports.MetricsSource`)."""

    def __init__(self, inner: SimMetrics, windows: Sequence[FaultWindow], monotonic: VirtualMonotonic) -> None:
        self.inner = inner
        self.windows = sorted(windows, key=lambda w: w.start)
        self.monotonic = monotonic
        #: Target-cycles each kind was injected into (a source fault counts once per target).
        self.injected: Counter[str] = Counter()

    def active(self, now: float) -> list[FaultWindow]:
        """The windows in force at ``now``."""
        return [w for w in self.windows if w.start <= now < w.end]

    def bad(self, key: str, now: float) -> str | None:
        """The kind of fault hitting ``key`` at ``now``, if any (a source fault hits every target)."""
        return next((w.kind for w in self.active(now) if key in w.targets), None)

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[str, MetricsSnapshot]:
        """The simulated signals, with this cycle's faults applied."""
        active = self.active(now)
        for window in active:
            if window.kind in SOURCE_FAULTS:
                self.injected[window.kind] += len(targets)
                if window.kind == "hung":
                    self.monotonic.value += HUNG_SECONDS
                    raise MetricsUnavailable(f"Prometheus: no answer within {HUNG_SECONDS:g}s (injected)")
                raise MetricsUnavailable("Prometheus: HTTP 503 (injected)")
        snapshots = dict(self.inner.observe(targets, now))
        for window in active:
            for key in window.targets & snapshots.keys():
                self.injected[window.kind] += 1
                snapshot = snapshots[key]
                if window.kind == "missing":
                    del snapshots[key]
                elif window.kind == "nan":
                    problems = {**snapshot.problems, "load": "metrics_invalid"}
                    snapshots[key] = dataclasses.replace(snapshot, load=math.nan, problems=problems)
                else:
                    newest = now - 600.0 if window.kind == "stale" else now + 3600.0
                    snapshots[key] = dataclasses.replace(snapshot, load=0.0, newest_sample_time=newest)
        return snapshots

    def load_history(self, target: Target, *, start: float, end: float, step: float) -> Series:
        """The simulated history (faults hit the live queries only)."""
        return self.inner.load_history(target, start=start, end=end, step=step)

    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """None: the simulator's phases are the policy's."""
        return self.inner.lead_times(target, now)


class FleetPort:
    """A :class:`~autoscaler.ports.Cluster` of one simulated cluster per target."""

    def __init__(self, keys: Sequence[str], clock: VirtualClock, *, serving: int) -> None:
        self.ports: dict[str, SimClusterPort] = {}
        for key in keys:
            sim = SimCluster(phases=ClusterPhases())
            sim.bootstrap(serving=serving, now=clock.now())
            self.ports[key] = SimClusterPort(sim, clock)

    def read(self, target: Target) -> ClusterRead:
        """The target's own cluster."""
        return self.ports[target.key].read(target)

    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        """Scale the target's own cluster."""
        return self.ports[target.key].apply(target, decision, read)

    def advance(self, now: float) -> None:
        """Bring every cluster to ``now``."""
        for port in self.ports.values():
            port.sim.advance(now)


def rss_mb() -> float:
    """Resident memory now (not the peak), MB."""
    with Path("/proc/self/statm").open() as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class SoakReport:
    """What a soak found."""

    targets: int
    days: float
    cycles: int = 0
    decisions: int = 0
    #: Target-cycles without a decision (an error, a deadline), by error kind.
    lost: Counter[str] = field(default_factory=Counter)
    #: Decisions on a target whose data was bad that cycle, by fault kind.
    bad_data_decisions: Counter[str] = field(default_factory=Counter)
    #: Those that lowered serving replicas, or serving + placeholders, by fault kind.
    bad_data_scale_downs: Counter[str] = field(default_factory=Counter)
    bad_data_capacity_downs: Counter[str] = field(default_factory=Counter)
    scale_downs: int = 0
    #: Fault windows and target-cycles injected, by kind.
    windows: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    #: Resident MB at the end of each simulated day (after a collection).
    rss_by_day: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    cycle_cpu: list[float] = field(default_factory=list)
    #: The five costliest cycles: (virtual time, CPU seconds, what was going on then).
    costliest: list[tuple[float, float, str]] = field(default_factory=list)
    restart_at: float | None = None
    #: Targets serving their configured model right after the restart's first cycle.
    restored_fitted: int = 0
    saved_bytes: int = 0
    wall_seconds: float = 0.0

    @property
    def rss_growth_pct(self) -> float | None:
        """Resident memory growth from the end of day 1 to the end, in percent."""
        if len(self.rss_by_day) < 2:
            return None
        return 100.0 * (self.rss_by_day[-1] - self.rss_by_day[0]) / self.rss_by_day[0]

    @property
    def median_cycle_cpu(self) -> float:
        """Median CPU seconds per cycle."""
        return statistics.median(self.cycle_cpu) if self.cycle_cpu else 0.0


@dataclass
class Soak:
    """One soak's world and settings; :meth:`run` runs it."""

    targets: int = 100
    days: float = 14.0
    seed: int = 7
    loop_seconds: float = LOOP_SECONDS
    #: ``forecast.refitIntervalSeconds`` of every target.
    refit_seconds: int = 3600
    model: str = "auto"
    fault_every_seconds: float = 3 * 3600.0
    #: When the controller stops cleanly and a new one starts (fraction of the soak).
    restart_fraction: float = 0.5
    progress: bool = False

    def _policy(self) -> Policy:
        forecast = dataclasses.replace(Forecast(), model=self.model, refit_interval_seconds=self.refit_seconds)
        base = Target(namespace="llm", deployment="d", mode="enforce", forecast=forecast)
        targets = tuple(dataclasses.replace(base, deployment=f"vllm-{i}") for i in range(self.targets))
        return Policy(targets=targets, loop_interval_seconds=self.loop_seconds)

    def _metrics(self) -> SimMetrics:
        steps = int(self.days * DAY / DT) + 1
        t_live = START + np.arange(steps) * DT
        rates = load_curve(t_live, self.seed)
        buckets = int((HISTORY_DAYS + self.days) * DAY / 300.0)
        t_hist = START - HISTORY_DAYS * DAY + np.arange(buckets) * 300.0
        history = load_curve(t_hist, self.seed + 1)
        # Buckets after START hold the live traffic's means: what Prometheus holds at a restart.
        live = rates[: (steps // 30) * 30].reshape(-1, 30).mean(axis=1)
        first = int(HISTORY_DAYS * DAY / 300.0)
        history[first : first + live.size] = live[: buckets - first]
        traffic = TrafficRecord(
            start=START, dt=DT, arrivals=rates * DT, latency=np.full(steps, 0.12), queue=np.zeros(steps), count=steps
        )
        return SimMetrics(traffic=traffic, history=Series(start=float(t_hist[0]), step=300.0, values=history))

    def _controller(
        self,
        metrics: FaultyMetrics,
        fleet: FleetPort,
        clock: VirtualClock,
        store: InMemoryFitStore,
        monotonic: VirtualMonotonic,
    ) -> Controller:
        return Controller(
            policy=self._policy(),
            metrics=metrics,
            cluster=fleet,
            clock=clock,
            fit_store=store,
            cycle_deadline_seconds=self.loop_seconds,
            monotonic=monotonic,
        )

    def run(self) -> SoakReport:
        """Run the soak; never stops early (every finding is in the report)."""
        began = time.monotonic()
        policy = self._policy()
        keys = [t.key for t in policy.targets]
        end = START + self.days * DAY
        restart_at = START + round(self.restart_fraction * self.days * DAY / self.loop_seconds) * self.loop_seconds
        windows = fault_schedule(
            keys,
            start=START,
            end=end,
            seed=self.seed,
            every_seconds=self.fault_every_seconds,
            quiet=(restart_at - 2 * self.loop_seconds, restart_at + 2 * self.loop_seconds),
        )
        clock, monotonic = VirtualClock(START), VirtualMonotonic()
        metrics = FaultyMetrics(self._metrics(), windows, monotonic)
        fleet = FleetPort(keys, clock, serving=8)
        store = InMemoryFitStore()
        controller = self._controller(metrics, fleet, clock, store, monotonic)
        report = SoakReport(targets=self.targets, days=self.days, restart_at=restart_at)
        report.windows.update(w.kind for w in windows)
        t, next_day = START, START + DAY
        while t < end:
            if t >= restart_at and report.saved_bytes == 0:
                controller.save_fit_state(t)  # a clean stop saves on the way out
                report.saved_bytes = sum(map(len, store.parts))
                controller = self._controller(metrics, fleet, clock, store, monotonic)
                cycle = self._cycle(controller, metrics, fleet, clock, t, report)
                report.restored_fitted = sum(
                    (p := controller.forecaster(k).prediction) is not None and p.model.startswith(self.model)
                    for k in keys
                )
            else:
                cycle = self._cycle(controller, metrics, fleet, clock, t, report)
            del cycle
            t += self.loop_seconds
            if t >= next_day:
                gc.collect()
                report.rss_by_day.append(rss_mb())
                if self.progress:
                    day = round((t - START) / DAY)
                    print(
                        f"  day {day}: rss {report.rss_by_day[-1]:.1f} MB, lost {sum(report.lost.values())}, "
                        f"bad-data scale-downs {sum(report.bad_data_scale_downs.values())}, "
                        f"{time.monotonic() - began:.0f} s",
                        flush=True,
                    )
                next_day += DAY
        report.injected = metrics.injected
        report.costliest = self._costliest(report.cycle_cpu, metrics, restart_at)
        report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        report.wall_seconds = time.monotonic() - began
        return report

    def _costliest(
        self, cycle_cpu: Sequence[float], metrics: FaultyMetrics, restart_at: float
    ) -> list[tuple[float, float, str]]:
        """The five costliest cycles with their virtual time and the faults (or restart) then.

        One cycle runs per loop interval from ``START``, so a cycle's index gives its time.
        """
        top = sorted(range(len(cycle_cpu)), key=lambda i: -cycle_cpu[i])[:5]
        rows = []
        for i in top:
            t = START + i * self.loop_seconds
            what = sorted({w.kind for w in metrics.active(t)})
            if t == restart_at:
                what.append("restart")
            rows.append((t, cycle_cpu[i], ",".join(what) or "-"))
        return rows

    @staticmethod
    def _cycle(
        controller: Controller,
        metrics: FaultyMetrics,
        fleet: FleetPort,
        clock: VirtualClock,
        t: float,
        report: SoakReport,
    ) -> CycleResult:
        """One cycle at ``t``, judged: lost decisions and decisions on bad data."""
        clock.time = t
        fleet.advance(t)
        started = time.process_time()
        cycle = controller.reconcile_once(t)
        report.cycle_cpu.append(time.process_time() - started)
        report.cycles += 1
        for result in cycle.results:
            decision = result.decision
            if decision is None:
                report.lost[result.error.kind if result.error is not None else "none"] += 1
                continue
            report.decisions += 1
            down = decision.replicas < decision.current_replicas
            capacity_down = (
                decision.replicas + decision.placeholders < decision.current_replicas + decision.current_placeholders
            )
            report.scale_downs += down
            kind = metrics.bad(result.target, t)
            if kind is not None:
                report.bad_data_decisions[kind] += 1
                report.bad_data_scale_downs[kind] += down
                report.bad_data_capacity_downs[kind] += capacity_down
        return cycle
