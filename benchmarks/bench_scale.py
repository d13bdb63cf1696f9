"""Controller CPU, memory and time to all-fitted at 10 / 100 / 1,000 targets (network excluded).

Each size runs in its own process (clean RSS). Targets share one simulated world whose
metrics port answers instantly from 14 days of recorded 5-minute history per target, so
what is measured is the controller itself: seeding, forecast refresh, ``decide`` and
saving the fitted state. Prometheus query cost is measured separately by
``bench_prometheus.py`` (batched: 14 queries per loop whatever the number of targets).

Goal at 1,000 targets (issue 14): every target on its configured model within 15 minutes
of a start, every cycle <= 1 s CPU, peak RSS <= 250 MB. Each size runs, in virtual time,
cycles every 30 s:

* ``cold``: a first start (no saved fit state) until every target serves its configured
  model, not the seasonal-naive stand-in: ``cold_fitted`` is that virtual time; then
  ``--steady-hours`` more (hourly refits within the budget);
* ``restart``: the controller stops cleanly (its fitted state saved to an in-memory
  :class:`~autoscaler.ports.FitStateStore`, through the same encoding as the ConfigMaps)
  and a new one starts on the same store and world: ``restart_fitted`` is the virtual
  time from its start until every target serves its configured model again; then
  ``--after-restart-minutes`` more.

With ``--cold-targets M`` (sizes above ``M``), the cold run has ``M`` targets and the
restart the whole size, each target restoring the saved state of cold target ``i % M``:
the restart from a complete saved state at 1,000 targets is measured in minutes of wall
time, where the full cold start takes hours (a first model selection with its peak
calibration is ~0.8 s of CPU per target, plus ~0.5 s for its stand-in, at most one cycle's
budget each, so at 1,000 targets it needs > 16 h of 30-s cycles, and a restart after
a cold run that did not finish refits whatever it had not fitted).

``worst`` and ``median`` are process CPU seconds (all threads) per cycle over both runs;
``rss_mb`` the peak resident memory (the imports alone are ~160 MB, mostly statsmodels).
A run that does not get every target fitted within ``--max-hours`` reports ``>`` that.

The controller runs single-threaded, but OpenBLAS starts a thread per core whose spinning
on the models' small matrices counts as CPU too: ``--blas-threads 1`` sets
``OPENBLAS_NUM_THREADS=1`` as a deployment should; the default keeps the environment's.
Usage: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 10,100,1000] [--blas-threads N]
[--cold-targets M]``.

Measured (2 shared cores, ``--blas-threads 1``; CPU figures vary by ~20-40 % with the
neighbours' load), time to all-fitted in virtual minutes (1,000: ``--cold-targets 100``):

==========================  ========  ========  =========  ============  ======
targets                      cold      restart   worst (s)  cycles > 1 s  RSS MB
==========================  ========  ========  =========  ============  ======
10                           4.0       0.0       0.76       0             176
100                          38.5      0.5       0.89       0             200
1,000 (cold run of 100)      35.5      7.0       0.96       0             432
==========================  ========  ========  =========  ============  ======

The 10 and 100 rows were measured alone on f735dce. The 1,000 row was measured beside
a 14-day soak and this benchmark on the code before the fit-state save was spread over
its interval (``autoscaler/runtime/save_rounds.py``), so
four processes on two cores: before, worst 1.48 s and 5 cycles over 1 s, cycle 0 of the
restart (every history and saved state read) and the cycles that saved (every 10th:
0.6-1.0 s of encoding on top of the decide pass, ~0.6 s there); after, worst 0.96 s (the
same first cycle, and cycles while restored targets join the decide pass), none over 1 s.
RSS misses its goal by almost 2x: ~160 MB of imports, ~270 KB per target (per forecaster
~140 KB, of which 31 KB the 14 days of means, 18 KB the peaks the calibration reads,
51 KB the Holt-Winters state over its calibration window; the rest the controller's and
shadow scoring's). Before each target's history was appended in place (no copy per
bucket) and its peaks cut to what the calibration reads: RSS 520 MB, same times. Before
the STL-ARIMA coefficients were saved and the save made cheaper: 100 targets restart
1.5 min; 1,000 restarted from the same replicated state 30.5 min, worst cycle 1.53 s
(12 cycles over 1 s), RSS 474 MB at all-fitted.

Re-run three times on 8bdc27a (``--sizes 1000 --cold-targets 100 --blas-threads 1
--after-restart-minutes 70``, so the restarted controller's first hourly heap trim falls
inside the run), each beside a 14-day soak on the other core: cold 43.5 / 43.5 / 42.0
min, restart 20.5 / 40.5 / 12.0 min, worst 1.29 / 3.20 / 0.87 s, 1 / 9 / 0 cycles over 1
s, RSS 451 / 452 / 430 MB. The restart figures swing with the neighbour's load, most
likely because the fit scheduler spends a CPU budget per cycle and a slowed CPU fits
fewer targets in it. Which cycle cost 3.2 s in the second run was not kept. The third
run's costliest were restart cycles 0, 25, 15, 55 and 75 (0.84-0.87 s); its trim, in
cycle 120, cost less. Only the third run meets the 15-min goal, so it is not reliably
met beside other work.

Then two changes for the restart, on 599ed8d: an update's peak bases read only the
forecast origin's windows (e61bfa2: an update 2.9-3.0 -> 2.0-2.1 ms of CPU), and saves
yield to restores (599ed8d: no group is encoded while a saved fit is still being
restored). Replayed on one fixed saved state (a 100-target cold run replicated to 1,000,
each version twice, alone): all restored after 54 / 55 cycles before, 36 / 35 after the
first change, 26 / 32 after both (13-16 virtual min; the spread is how many bucket-update
waves a restart meets); worst cycle 1.02 / 1.02 s, 1.00 / 1.03 s, 0.95 / 0.96 s. The
whole benchmark (same command; each cold run draws its own mix of Holt-Winters and
STL-ARIMA winners, and an STL-ARIMA restore costs ~4x a Holt-Winters one): alone, cold
41.0, restart 7.0 min, worst 0.92 s, 0 cycles over 1 s, RSS 426 MB; beside the test
suite, cold 36.5, restart 5.5 min, worst 1.13 s (the restart's cycle 0, which reads every
history and saved state), 2 cycles over 1 s, RSS 428 MB. RSS is unchanged: still ~1.7x
its goal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.forecasting.fit_state import InMemoryFitStore, decode, encode  # noqa: E402
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock  # noqa: E402
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster  # noqa: E402
from autoscaler.policy.schema import Forecast, Policy, Target  # noqa: E402
from autoscaler.runtime import heap  # noqa: E402
from autoscaler.runtime.controller import Controller  # noqa: E402
from models.series import Series  # noqa: E402

DAY = 86400.0
START = 1_700_006_400.0
LOOP = 30.0


@dataclasses.dataclass
class World:
    """What the controllers of one size share: metrics, cluster, clock (a restart keeps them)."""

    metrics: SimMetrics
    port: SimClusterPort
    clock: VirtualClock


def world() -> World:
    """14 days of daily-cycle history with seeded noise, and a steady live load."""
    rng = np.random.default_rng(1)
    t = np.arange(14 * 288) * 300.0
    values = 1000 + 400 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 30, t.size)
    history = Series(start=START - 14 * DAY, step=300.0, values=values)
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=5, now=START)
    clock = VirtualClock(START)
    steps = 100_000
    traffic = TrafficRecord(
        start=START,
        dt=10.0,
        arrivals=np.full(steps, 10_000.0),
        latency=np.full(steps, 0.12),
        queue=np.zeros(steps),
        count=steps,
    )
    return World(SimMetrics(traffic=traffic, history=history), SimClusterPort(sim, clock), clock)


def build(w: World, n: int, model: str, store: InMemoryFitStore) -> Controller:
    """A controller over ``n`` targets of the shared world, saving its fits to ``store``."""
    base = Target(
        namespace="llm", deployment="d", mode="enforce", forecast=dataclasses.replace(Forecast(), model=model)
    )
    targets = tuple(dataclasses.replace(base, deployment=f"vllm-{i}") for i in range(n))
    policy = Policy(targets=targets, loop_interval_seconds=LOOP)
    return Controller(policy=policy, metrics=w.metrics, cluster=w.port, clock=w.clock, fit_store=store)


def fitted(c: Controller, model: str) -> int:
    """Targets serving their configured model (not the stand-in)."""
    predictions = (c.forecaster(t.key).prediction for t in c.policy.targets)
    return sum(p is not None and p.model.startswith(model) for p in predictions)


def run(
    c: Controller, w: World, model: str, *, start: float, until_fitted: float, then: float, label: str
) -> tuple[float | None, list[float], float]:
    """Cycles from ``start`` until all targets are fitted (at most ``until_fitted`` s), then ``then`` s more.

    Returns the virtual seconds to all-fitted (``None``: not within the limit), the CPU
    seconds of every cycle, and the virtual time after the last cycle.
    """
    costs: list[float] = []
    t, reached = start, None
    n = len(c.policy.targets)
    while True:
        w.clock.time = t
        before = time.process_time()
        c.reconcile_once(t)
        costs.append(time.process_time() - before)
        t += LOOP
        done = fitted(c, model)
        if reached is None and done == n:
            reached = t - LOOP - start
            until_fitted = 0.0
        if len(costs) % 120 == 0:
            hours = (t - start) / 3600
            note = f"  {label} {n}: {hours:.1f} h, {done}/{n} fitted, worst {max(costs):.2f} s"
            print(note, file=sys.stderr, flush=True)
        if reached is None and t - start >= until_fitted:
            return None, costs, t
        if reached is not None and t - start >= reached + then:
            return reached, costs, t


def measure(
    n: int, model: str, *, max_hours: float, steady_hours: float, after_minutes: float, cold_targets: int | None = None
) -> dict[str, object]:
    """Both runs for one size, in this process.

    With ``cold_targets`` (fewer than ``n``), the cold run has that many targets and the
    restart ``n``, each restarted target taking the saved state of cold target ``i %
    cold_targets`` (the targets are identical: same world, same settings): a restart
    from a complete saved state at sizes whose cold start takes hours.
    """
    heap.freeze_startup_objects()  # as `autoscaler run` does before its loop
    w = world()
    store = InMemoryFitStore()
    c = build(w, cold_targets or n, model, store)
    cold, cold_costs, t = run(
        c, w, model, start=START + 1.0, until_fitted=max_hours * 3600, then=steady_hours * 3600, label="cold"
    )
    c.save_fit_state(t)  # a clean stop saves on the way out
    del c
    if cold_targets:
        states = decode(store.parts).states
        store.parts = encode({f"llm/vllm-{i}": states[f"llm/vllm-{i % cold_targets}"] for i in range(n)})
    saved_bytes = sum(map(len, store.parts))
    restarted = build(w, n, model, store)
    restart, restart_costs, _ = run(
        restarted, w, model, start=t + LOOP, until_fitted=max_hours * 3600, then=after_minutes * 60, label="restart"
    )
    costs = cold_costs + restart_costs
    return {
        "targets": n,
        "cold_targets": cold_targets or n,
        "cold_fitted_min": None if cold is None else cold / 60,
        "restart_fitted_min": None if restart is None else restart / 60,
        "max_min": max_hours * 60,
        "worst": max(costs),
        "median": statistics.median(costs),
        "cold_worst": max(cold_costs),
        "restart_worst": max(restart_costs),
        "cycles": len(costs),
        "over_1s": sum(cost > 1.0 for cost in costs),
        # The costliest cycles: (run, cycle number in it from 0, CPU seconds).
        "top": sorted(
            [("cold", i, round(x, 3)) for i, x in enumerate(cold_costs)]
            + [("restart", i, round(x, 3)) for i, x in enumerate(restart_costs)],
            key=lambda item: -item[2],
        )[:5],
        "saved_kb": saved_bytes / 1024,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def minutes(value: object, limit: object) -> str:
    """Minutes to all-fitted, or ``>limit`` when not reached."""
    return f">{limit:.0f}" if value is None else f"{value:.1f}"


def main() -> int:
    """Run each size in a subprocess and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--blas-threads", type=int, default=0, help="OPENBLAS_NUM_THREADS; 0 keeps the environment's")
    parser.add_argument("--max-hours", type=float, default=16.0, help="give up on all-fitted after this long")
    parser.add_argument("--steady-hours", type=float, default=1.0, help="cycles after the cold start's all-fitted")
    parser.add_argument("--after-restart-minutes", type=float, default=30.0, help="cycles after the restart's")
    parser.add_argument(
        "--cold-targets",
        type=int,
        default=None,
        help="cold-start only this many targets at larger sizes; the restart replicates their saved states",
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        row = measure(
            args.one,
            args.model,
            max_hours=args.max_hours,
            steady_hours=args.steady_hours,
            after_minutes=args.after_restart_minutes,
            cold_targets=args.cold_targets if args.cold_targets and args.cold_targets < args.one else None,
        )
        print(json.dumps(row))
        return 0
    env = dict(os.environ)
    if args.blas_threads > 0:
        env["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(n), "--model", args.model]
        command += ["--max-hours", str(args.max_hours), "--steady-hours", str(args.steady_hours)]
        command += ["--after-restart-minutes", str(args.after_restart_minutes)]
        if args.cold_targets:
            command += ["--cold-targets", str(args.cold_targets)]
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=env)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"model {args.model}, OPENBLAS_NUM_THREADS={env.get('OPENBLAS_NUM_THREADS', 'unset')}, loop {LOOP:g} s; "
        "time to all-fitted in virtual minutes; CPU seconds per cycle (process time); peak RSS MB"
    )
    head = ("targets", "cold fitted", "restart fitted", "worst", "median", "cold worst", "restart worst", "cycles")
    head += ("cycles > 1 s",)
    print("".join(f"{h:>15}" for h in head) + f"{'saved KB':>10}{'rss MB':>9}")
    for r in rows:
        cold_n = r.get("cold_targets", r["targets"])
        cells = (
            str(r["targets"]) if cold_n == r["targets"] else f"{r['targets']} ({cold_n} cold)",
            minutes(r["cold_fitted_min"], r["max_min"]),
            minutes(r["restart_fitted_min"], r["max_min"]),
            f"{r['worst']:.3f}",
            f"{r['median']:.3f}",
            f"{r['cold_worst']:.3f}",
            f"{r['restart_worst']:.3f}",
            str(r["cycles"]),
            str(r.get("over_1s", "-")),
        )
        print("".join(f"{c:>15}" for c in cells) + f"{r['saved_kb']:>10.0f}{r['rss_mb']:>9.0f}")
    print("goals at 1,000 targets: restart fitted <= 15 min, worst <= 1 s, rss <= 250 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
