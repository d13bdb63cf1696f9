"""Simulation benchmark: every long shared trace, both cold-start presets, all policies.

For each trace in ../shared/traces that spans days (ServeGen m-mid and m-small, Alibaba
GenAI lora requests, NASA HTTP), rescaled so its peak needs 12 replicas, with 7 days of
warm-up history and up to 14 simulated days, and for the ~10 and ~15 minute cold-start
presets: SLO attainment, failed requests, GPU node-hours and their ratio to the oracle
(measured in the same run), scale events and p95 latency per policy. Then forecast
accuracy at the cold-start horizon relative to seasonal-naive and fit/update cost per
model on each trace (5-minute buckets), and the simulator's speed in simulated days per
second. Usage: ``.venv/bin/python benchmarks/bench_simulate.py [--quick] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_models import model_costs_and_accuracy  # noqa: E402

from autoscaler.sim.engine import POLICIES, run_policy  # noqa: E402
from autoscaler.sim.report import format_table, summaries  # noqa: E402
from autoscaler.simulate import SimulateOptions, prepare  # noqa: E402
from autoscaler.traces import LoadTrace, load_trace  # noqa: E402
from models.series import Series  # noqa: E402

RAW = ROOT.parent / "shared" / "traces" / "raw"
TRACES = {
    "servegen-m-mid": RAW / "alibaba_servegen" / "language" / "m-mid",
    "servegen-m-small": RAW / "alibaba_servegen" / "language" / "m-small",
    "alibaba-lora": RAW / "alibaba_genai_2026" / "lora_request_trace.csv",
    "nasa-http-1995": RAW / "nasa_http_1995" / "workload.tbz2",
}
PRESETS = ("10min", "15min")


def run_case(trace_name: str, preset: str, days: float) -> dict[str, Any]:
    """Simulate one trace under one preset with every policy; return rows and timing."""
    path = TRACES[trace_name]
    options = SimulateOptions(trace=str(path), cold_start=preset, days=days, progress=False, plot=False)
    scenario, target = prepare(options)
    load = scenario.load()
    started = time.perf_counter()
    results = [run_policy(name, scenario, target, load=load) for name in POLICIES]
    elapsed = time.perf_counter() - started
    sim_days = load.size * scenario.dt / 86400.0
    return {"trace": trace_name, "preset": preset, "days": sim_days, "rows": summaries(results),
            "seconds": elapsed, "days_per_second": sim_days * len(POLICIES) / elapsed}


def forecast_rows(trace_name: str) -> list[dict[str, Any]]:
    """Fit cost and accuracy at the ~20 min horizon per model on the trace at 5 minutes."""
    trace: LoadTrace = load_trace(str(TRACES[trace_name]))
    if trace.step < 300:
        trace = trace.resample(300.0)
    elif trace.step > 300:
        trace = trace.fill_gaps().resample(300.0)
    values = np.asarray(trace.rates[: int(14 * 86400 / 300)], dtype=np.float64)
    series = Series(start=trace.start, step=300.0, values=values)
    return model_costs_and_accuracy(series, horizon=4, repeats=3, backtest_days=2.0)


def main() -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 simulated days per trace")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    missing = [str(p) for p in TRACES.values() if not p.exists()]
    if missing:
        print(f"missing traces: {missing}", file=sys.stderr)
        return 1
    days = 2.0 if args.quick else 14.0
    cases = [(t, p) for t in TRACES for p in PRESETS]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_case, t, p, days) for t, p in cases]
        outcomes = [f.result() for f in futures]
    speeds = []
    for out in outcomes:
        print(f"\n## {out['trace']}, cold start {out['preset']}, {out['days']:.1f} simulated days "
              f"({out['seconds']:.0f} s, {out['days_per_second']:.2f} simulated days/s)")
        print(format_table(out["rows"]))
        speeds.append(out["days_per_second"])
    print(f"\nsimulator speed: median {float(np.median(speeds)):.2f} simulated days/s per process "
          f"(all four policies counted)")
    print("\n## forecast accuracy at the cold-start horizon (4 x 5 min) and cost per model")
    for trace_name in TRACES:
        print(f"\n### {trace_name}")
        rows = forecast_rows(trace_name)
        print(f"{'model':<20}{'fit s':>8}{'update ms':>11}{'P90 pinball':>13}{'vs snaive':>11}"
              f"{'P90 cover':>11}")
        for row in rows:
            print(f"{row['model']:<20}{row['fit_s']:>8.3f}{row['update_ms']:>11.2f}{row['pinball_p90']:>13.3f}"
                  f"{row['pinball_ratio']:>11.3f}{row['coverage_p90']:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
