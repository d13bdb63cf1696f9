"""Scale-to-zero benchmark: ``scaling.minReplicas`` 1 vs 0 on the long shared traces.

For each long trace in ../shared/traces (as ``bench_simulate.py``: ServeGen m-mid and
m-small, Alibaba GenAI lora requests, NASA HTTP), rescaled so its peak needs 12 replicas,
with 7 days of warm-up history and ``--days`` simulated days, each policy (the predictive
controller, and the perfect-foresight oracle as the bound of what a perfect forecast
would give) runs twice on the same load and cluster, changing only ``minReplicas`` (1,
then 0). Printed per trace and policy: SLO attainment, failed requests, GPU node-hours,
the share of time at zero replicas, and the node-hour saving of ``minReplicas: 0`` in
percent; with ``--repeats N`` each run is repeated with N noise seeds and medians are shown.

Most production traces are never idle at the scale of a replica; for them the saving is
~0 by design (the idle gate needs the forecast to be idle over a whole node cold start).
So the table also shows how much of the simulated time the load was idle, and a
**synthetic** business-hours variant of ServeGen m-mid shows the feature where it
applies: the trace times an envelope that is 0 on weekends and outside 07:00-20:00, ramps
linearly 07:00-09:00 and 18:00-20:00, and is 1 in between (ServeGen's t=0 is midnight; its
weekday is unknown, so day 0 is taken as a Friday: the default 4 simulated days after the
7-day warm-up are Friday to Monday, one weekend and a Monday-morning return).

Usage: ``.venv/bin/python benchmarks/bench_scale_to_zero.py [--days 4] [--repeats 1]
[--jobs 2] [--cold-start 15min] [--policies predictive,oracle] [--traces NAME ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.offline.sim.engine import run_policy  # noqa: E402
from autoscaler.offline.simulate import SimulateOptions, prepare  # noqa: E402
from autoscaler.offline.traces import LoadTrace, load_trace, save_trace  # noqa: E402

RAW = ROOT.parent / "shared" / "traces" / "raw"
TRACES = {
    "servegen-m-mid": RAW / "alibaba_servegen" / "language" / "m-mid",
    "servegen-m-small": RAW / "alibaba_servegen" / "language" / "m-small",
    "alibaba-lora": RAW / "alibaba_genai_2026" / "lora_request_trace.csv",
    "nasa-http-1995": RAW / "nasa_http_1995" / "workload.tbz2",
}
BUSINESS = "m-mid-business-hours"
#: Envelope of the synthetic variant (hours): ramp up, full, ramp down; zero outside.
RAMP_UP, FULL_FROM, FULL_TO, RAMP_DOWN_END = 7.0, 9.0, 18.0, 20.0
#: Weekday of the trace's day 0 (0 = Monday): a Friday, so a short run spans a weekend.
DAY0_WEEKDAY = 4
DESCRIPTION = (
    "synthetic: ServeGen m-mid x business-hours envelope (0 on weekends and outside 07:00-20:00, "
    "linear ramps 07-09 and 18-20; day 0 = Friday)"
)


def business_envelope(offset_seconds: np.ndarray) -> np.ndarray:
    """The business-hours factor (0..1) at each offset from the trace's start (midnight, a Friday)."""
    hour = (offset_seconds % 86400.0) / 3600.0
    weekday = (offset_seconds // 86400.0 + DAY0_WEEKDAY) % 7
    up = np.clip((hour - RAMP_UP) / (FULL_FROM - RAMP_UP), 0.0, 1.0)
    down = np.clip((RAMP_DOWN_END - hour) / (RAMP_DOWN_END - FULL_TO), 0.0, 1.0)
    return np.where(weekday < 5, np.minimum(up, down), 0.0)


def business_hours_trace(out_dir: Path) -> Path:
    """Write the synthetic business-hours variant of ServeGen m-mid; returns its CSV path.

    Gaps are bridged first (as the simulator does), then the trace is resampled to
    5 minutes (so the ramps are not 10-minute stairs) and multiplied by the envelope,
    taken at each bin's middle.
    """
    trace = load_trace(str(TRACES["servegen-m-mid"])).fill_gaps().resample(300.0)
    middle = (np.arange(trace.rates.size) + 0.5) * trace.step
    synthetic = LoadTrace(
        name=BUSINESS,
        start=trace.start,
        step=trace.step,
        rates=trace.rates * business_envelope(middle),
        source=f"SYNTHETIC from {trace.source}: {DESCRIPTION}",
    )
    path = out_dir / f"{BUSINESS}.csv"
    save_trace(synthetic, path, comments=[DESCRIPTION])
    return path


@dataclasses.dataclass(frozen=True)
class Case:
    """One simulation: a trace, a policy, a minReplicas and a noise seed."""

    name: str
    path: str
    policy: str
    min_replicas: int
    seed: int
    days: float
    cold_start: str


def run_case(case: Case) -> dict[str, Any]:
    """Simulate one policy on one trace with one minReplicas and noise seed."""
    options = SimulateOptions(
        trace=case.path, cold_start=case.cold_start, days=case.days, seed=case.seed, progress=False, plot=False
    )
    scenario, target = prepare(options)
    scaling = dataclasses.replace(target.scaling, min_replicas=case.min_replicas)
    target = dataclasses.replace(target, scaling=scaling)
    load = scenario.load()
    started = time.perf_counter()
    result = run_policy(case.policy, scenario, target, load=load)
    idle_load = target.scaling.idle_observed_fraction * target.capacity.per_replica
    min_run = round(scenario.phases.total / scenario.dt)
    return {
        "trace": case.name,
        "policy": case.policy,
        "min_replicas": case.min_replicas,
        "seed": case.seed,
        "days": load.size * scenario.dt / 86400.0,
        "slo_pct": 100.0 * result.slo_attainment,
        "failed": result.failed,
        "node_hours": result.gpu_node_hours,
        "zero_pct": 100.0 * float(np.mean(result.series["spec"] == 0)),
        "idle_pct": 100.0 * idle_share(load <= idle_load, min_run),
        "seconds": time.perf_counter() - started,
    }


def idle_share(idle: np.ndarray, min_run: int) -> float:
    """Share of steps inside runs of no traffic at least ``min_run`` steps long.

    Only a lull longer than a node cold start can pay for going to zero (and back), so
    this is the time scale-to-zero could save at best, whatever the forecast.
    """
    total = 0
    run = 0
    for flag in [*idle.tolist(), False]:
        if flag:
            run += 1
            continue
        if run >= min_run:
            total += run
        run = 0
    return total / max(1, idle.size)


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def report(outcomes: list[dict[str, Any]], names: list[str], policies: list[str], repeats: int) -> str:
    """The comparison table: medians over seeds, one line per trace and policy."""
    head = (
        f"{'trace':<22}{'policy':>11}{'days':>5}{'idle %':>8}"
        f"{'SLO % min1':>12}{'SLO % min0':>12}{'failed min1':>13}{'failed min0':>13}"
        f"{'node-h min1':>13}{'node-h min0':>13}{'saving %':>10}{'at 0 %':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, policy in ((n, p) for n in names for p in policies):
        mine = [r for r in outcomes if r["trace"] == name and r["policy"] == policy]
        one = [r for r in mine if r["min_replicas"] == 1]
        zero = [r for r in mine if r["min_replicas"] == 0]
        if not one or not zero:
            continue
        h1, h0 = _median(one, "node_hours"), _median(zero, "node_hours")
        savings = [
            100.0 * (a["node_hours"] - b["node_hours"]) / a["node_hours"] for a, b in zip(one, zero, strict=True)
        ]
        label = name + (" *" if name == BUSINESS else "")
        lines.append(
            f"{label:<22}{policy:>11}{_median(one, 'days'):>5.1f}{_median(one, 'idle_pct'):>8.1f}"
            f"{_median(one, 'slo_pct'):>12.2f}{_median(zero, 'slo_pct'):>12.2f}"
            f"{_median(one, 'failed'):>13,.0f}{_median(zero, 'failed'):>13,.0f}"
            f"{h1:>13.1f}{h0:>13.1f}{statistics.median(savings):>10.1f}{_median(zero, 'zero_pct'):>8.1f}"
        )
    lines.append(
        f"medians over {repeats} noise seed(s); idle % = share of simulated time in no-traffic stretches (load "
        "<= idleObservedFraction x perReplica) longer than a node cold start;\nat 0 % = share of time "
        "minReplicas 0 ran zero replicas; saving % = node-hours saved by minReplicas 0"
    )
    if BUSINESS in names:
        lines.append("* " + DESCRIPTION)
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=4.0, help="simulated days per trace (after 7 warm-up days)")
    parser.add_argument("--repeats", type=int, default=1, help="noise seeds per run (medians are shown)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cold-start", default="15min", choices=("10min", "15min"))
    parser.add_argument("--traces", nargs="*", default=[*TRACES, BUSINESS], help="subset of traces to run")
    parser.add_argument("--policies", default="predictive,oracle", help="comma-separated: predictive, oracle")
    args = parser.parse_args()
    names: list[str] = args.traces
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not set(policies) <= {"predictive", "oracle"}:
        print(f"--policies: choose from predictive, oracle; got {policies}", file=sys.stderr)
        return 1
    unknown = [n for n in names if n not in TRACES and n != BUSINESS]
    missing = [str(TRACES[n]) for n in names if n in TRACES and not TRACES[n].exists()]
    if BUSINESS in names and not TRACES["servegen-m-mid"].exists():
        missing.append(str(TRACES["servegen-m-mid"]))
    if unknown or missing:
        print(f"unknown traces: {unknown}; missing traces: {missing}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: str(TRACES[n]) for n in names if n in TRACES}
        if BUSINESS in names:
            paths[BUSINESS] = str(business_hours_trace(Path(tmp)))
        cases = [
            Case(name, paths[name], policy, minimum, 7 + k, args.days, args.cold_start)
            for name in names
            for policy in policies
            for k in range(args.repeats)
            for minimum in (1, 0)
        ]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(run_case, cases))
    print(
        f"## minReplicas 1 vs 0, cold start {args.cold_start}, peak 12 replicas, "
        f"{time.perf_counter() - started:.0f} s wall with {args.jobs} job(s)"
    )
    print(report(outcomes, names, policies, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
