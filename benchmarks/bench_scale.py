"""Controller CPU and memory per cycle at 10 / 100 / 1,000 targets (network excluded).

Each size runs in its own process (clean RSS). Targets share one simulated world whose
metrics port answers instantly from 14 days of recorded 5-minute history per target, so
what is measured is the controller itself: forecast refresh and ``decide``. Prometheus
query cost is measured separately by ``bench_prometheus.py`` (batched: 14 queries per
loop whatever the number of targets). Goal at 1,000 targets: every cycle <= 2 s CPU,
peak RSS <= 300 MB. Cycles measured, CPU seconds (process time, all threads):

* ``first``: start-up: history seeded, then owed work (each target's seasonal-naive
  stand-in) up to the 1 s allowance; targets beyond it get theirs next cycle;
* ``steady``: the next ordinary 30 s cycle (remaining stand-ins, then refits within the
  default 1 s ``fit_budget_seconds``);
* ``no_fit``: the same with no fit budget: observe + decide + actuate (no refits);
* ``bucket``: the first cycle in which a 5-minute bucket completed (every model owes an
  update; those beyond the budget follow in the bucket's next cycles);
* ``hour_*``: median, mean and max over two hours of cycles (240, 24 of them bucket
  cycles) while the targets are fitted and refitted within the budget;
* ``fitted``: share of targets serving their configured model after those two hours
  (the rest still on the stand-in: at 1,000 targets the 1 s budget is the bottleneck);
* ``rss_mb``: peak resident memory (the imports alone are ~165 MB, mostly statsmodels).

The controller runs single-threaded, but OpenBLAS starts a thread per core whose spinning
on the models' small matrices counts as CPU too (a Holt-Winters fit costs ~3x more):
``--blas-threads 1`` sets ``OPENBLAS_NUM_THREADS=1`` as a deployment should; the cycle
caps hold either way, but the budget then buys more refits. The default keeps the
environment's setting.
Usage: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 10,100,1000] [--blas-threads N]``.
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

from autoscaler.controller import Controller  # noqa: E402
from autoscaler.policy.schema import Forecast, Policy, Target  # noqa: E402
from autoscaler.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock  # noqa: E402
from autoscaler.sim.cluster import ClusterPhases, SimCluster  # noqa: E402
from models.series import Series  # noqa: E402

DAY = 86400.0
START = 1_700_006_400.0


def build(n: int, model: str) -> Controller:
    """A controller over ``n`` targets sharing one simulated world."""
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
    base = Target(
        namespace="llm", deployment="d", mode="enforce", forecast=dataclasses.replace(Forecast(), model=model)
    )
    targets = tuple(dataclasses.replace(base, deployment=f"vllm-{i}") for i in range(n))
    return Controller(
        policy=Policy(targets=targets),
        metrics=SimMetrics(traffic=traffic, history=history),
        cluster=SimClusterPort(sim, clock),
        clock=clock,
    )


def cpu(fn: object) -> float:
    """Process CPU seconds of one call."""
    before = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - before


def measure(n: int, model: str) -> dict[str, float | str]:
    """All cycle costs for one size, in this process."""
    c = build(n, model)
    now = START + 1.0
    out: dict[str, float | str] = {"targets": n, "first": cpu(lambda: c.reconcile_once(now))}
    out["steady"] = cpu(lambda: c.reconcile_once(now + 30.0))
    budget = c.policy.fit_budget_seconds
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=0.0))
    out["no_fit"] = cpu(lambda: c.reconcile_once(now + 60.0))
    c.set_policy(dataclasses.replace(c.policy, fit_budget_seconds=budget))
    out["bucket"] = cpu(lambda: c.reconcile_once(START + 300.0 + 1.0))
    costs = []
    t = START + 301.0
    for _ in range(int(2 * 3600 / 30)):  # two hours of cycles
        t += 30.0
        costs.append(cpu(lambda t=t: c.reconcile_once(t)))
    out["hour_median"] = statistics.median(costs)
    out["hour_mean"] = statistics.fmean(costs)
    out["hour_max"] = max(costs)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    predictions = [c.forecaster(t.key).prediction for t in c.policy.targets]
    names = [p.model for p in predictions if p is not None]
    out["fitted"] = sum(name.startswith(model) for name in names) / n
    out["models"] = ",".join(sorted(set(names)))
    return out


def main() -> int:
    """Run each size in a subprocess and print a table with ratios to the smallest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--blas-threads", type=int, default=0, help="OPENBLAS_NUM_THREADS; 0 keeps the environment's")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.model)))
        return 0
    env = dict(os.environ)
    if args.blas_threads > 0:
        env["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--model", args.model],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = rows[0]
    cols = ("first", "steady", "no_fit", "bucket", "hour_median", "hour_mean", "hour_max", "rss_mb")
    print(
        f"model {args.model}, OPENBLAS_NUM_THREADS={env.get('OPENBLAS_NUM_THREADS', 'unset')}; "
        f"CPU seconds per cycle (process time), RSS MB; ratio vs {base['targets']} targets"
    )
    print(f"{'targets':>8}" + "".join(f"{c:>17}" for c in cols) + f"{'fitted':>8}")
    for row in rows:
        cells = "".join(f"{row[c]:>9.3f} ({row[c] / max(base[c], 1e-9):>4.1f}x)" for c in cols)
        print(f"{row['targets']:>8}{cells}{row['fitted']:>8.0%}   models: {row['models']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
