"""Backtest benchmark: 14 days of recorded HPA reality in a real Prometheus, backtested.

"Recorded reality" is what the seed's reactive HPA did on the bundled default trace
(ServeGen m-mid, 14 days, rescaled to a 12-replica peak) in the simulator's cluster
(15-minute cold start): its load, mean latency and replicas, aggregated to one-minute
buckets and written as vLLM and kube-state-metrics series (30 s scrapes) into a temporary
real Prometheus. ``autoscaler backtest --since 14d`` then reads that history back, uses the
first 7 days as warm-up and replays the last 7 under the predictive policy, the HPA and
the oracle. Printed: the backtest table (recorded vs replays), and the ground truth of the
HPA run over the same 7 days straight from the simulator, so the "recorded" row can be
checked against what really happened.

Usage: ``.venv/bin/python benchmarks/bench_backtest.py [--days 14] [--tradeoff 0.5,0.9,0.99]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.adapters.prometheus import PrometheusConnection  # noqa: E402
from autoscaler.logs import configure  # noqa: E402
from autoscaler.offline.backtest.replay import DEFAULT_TIMEOUT_SECONDS, BacktestOptions, backtest  # noqa: E402
from autoscaler.offline.backtest.report import COLUMNS  # noqa: E402
from autoscaler.offline.sim.engine import PolicyResult, Scenario, run_policy  # noqa: E402
from autoscaler.offline.sim.report import format_markdown  # noqa: E402
from autoscaler.offline.sim.tradeoff import parse_quantiles  # noqa: E402
from autoscaler.offline.simulate import SimulateOptions, prepare  # noqa: E402
from tests.backtest.recording import Truth, replica_series, vllm_series  # noqa: E402
from tests.prom.backfill import backfill  # noqa: E402
from tests.prom.server import PrometheusServer  # noqa: E402

NS, DEPLOYMENT, MODEL = "vllm", "vllm-gpt2", "gpt2"
STEP = 60.0
POLICY = """\
loopIntervalSeconds: 30
targets:
  - namespace: vllm
    deployment: vllm-gpt2
    modelName: gpt2
    slo: {latencySeconds: 0.2}
    capacity: {perReplica: 225}
    forecast: {quantile: 0.9}
    scaling: {minReplicas: 1, maxReplicas: 24}
    metrics: {rateWindow: 1m}
"""


def hpa_reality(days: float) -> tuple[Scenario, PolicyResult]:
    """The HPA over the whole trace (no warm-up: it needs no history), as ``autoscaler simulate`` sets it up."""
    scenario, target = prepare(SimulateOptions(progress=False, plot=False))
    trace = scenario.trace.slice(0.0, min(scenario.trace.duration, days * 86400.0))
    scenario = Scenario(trace=trace, warmup_seconds=0.0, phases=scenario.phases, latency=scenario.latency)
    return scenario, run_policy("hpa", scenario, target)


def to_truth(scenario: Scenario, result: PolicyResult, *, start: float) -> Truth:
    """One-minute buckets of the HPA run: mean load, arrival-weighted latency, replicas at the bucket start."""
    per = round(STEP / scenario.dt)
    n = result.series["load"].size // per
    load = result.series["load"][: n * per].reshape(n, per)
    latency = result.series["latency"][: n * per].reshape(n, per)
    weights = np.maximum(load, 1e-12)
    return Truth(
        start=start,
        step=STEP,
        load=load.mean(axis=1),
        latency=(latency * weights).sum(axis=1) / weights.sum(axis=1),
        spec=result.series["spec"][: n * per : per].copy(),
        available=result.series["ready"][: n * per : per].copy(),
    )


def ground_truth_row(scenario: Scenario, result: PolicyResult, begin_seconds: float) -> dict[str, Any]:
    """The HPA run over the evaluated span straight from the simulator (10 s steps)."""
    i = round(begin_seconds / scenario.dt)
    s = result.series
    arrivals = s["load"][i:] * scenario.dt
    met = float(arrivals[s["latency"][i:] <= 0.2 + 1e-9].sum())
    return {
        "policy": "hpa truth, 10 s steps",
        "slo_attainment_pct": round(100 * met / float(arrivals.sum()), 3),
        "gpu_node_hours": round(float(s["nodes"][i:].sum()) * scenario.dt / 3600, 2),
        "replica_hours": round(float(s["spec"][i:].sum()) * scenario.dt / 3600, 2),
        "scale_events": int(np.count_nonzero(np.diff(s["spec"][i:]))),
    }


def minute_truth_row(truth: Truth, begin_seconds: float) -> dict[str, Any]:
    """The same run as written into Prometheus (one-minute means, replicas at each minute's start).

    This is exactly what the backtest's ``recorded`` row should read back; the difference to
    the 10 s row is what one-minute buckets cannot see (short latency spikes, changes
    reverted within the minute), not an error of the backtest.
    """
    i = round(begin_seconds / truth.step)
    load, latency, spec = truth.load[i:], truth.latency[i:], truth.spec[i:]
    return {
        "policy": "hpa truth, 1 min buckets",
        "slo_attainment_pct": round(100 * float(load[latency <= 0.2 + 1e-9].sum()) / float(load.sum()), 3),
        "replica_hours": round(float(spec.sum()) * truth.step / 3600, 2),
        "scale_events": int(np.count_nonzero(np.diff(spec))),
    }


def main() -> int:
    """Build the recorded reality, backfill it, backtest it and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0, help="days of recorded history (half is warm-up)")
    parser.add_argument("--tradeoff", default=None, help="also sweep these forecast quantiles")
    parser.add_argument("--out", type=Path, default=Path("out/bench_backtest"))
    args = parser.parse_args()
    configure(fmt="console", level="error")
    t0 = time.perf_counter()
    scenario, hpa = hpa_reality(args.days)
    sim_seconds = time.perf_counter() - t0
    # Whole days back from today's midnight: the history keeps its time of day and ends in the past.
    end = math.floor(time.time() / 86400) * 86400
    start = end - math.floor(scenario.trace.duration / 86400) * 86400
    truth = to_truth(scenario, hpa, start=start)
    series = [
        *vllm_series(truth, namespace=NS, deployment=DEPLOYMENT, model_name=MODEL),
        *replica_series(truth, namespace=NS, deployment=DEPLOYMENT),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        server = PrometheusServer([], base_dir=tmp)
        t1 = time.perf_counter()
        stats = backfill(server.data_dir, series)
        backfill_seconds = time.perf_counter() - t1
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        with server:
            options = BacktestOptions(
                prometheus=PrometheusConnection(server.url, timeout_seconds=DEFAULT_TIMEOUT_SECONDS),
                target=f"{NS}/{DEPLOYMENT}",
                since=f"{round(truth.size * STEP)}s",
                until=truth.end,
                running_policy=policy,
                out=args.out,
                tradeoff=parse_quantiles(args.tradeoff) if args.tradeoff else (),
                progress=False,
            )
            report = backtest(options)
    begin = report.meta["evaluated"]["start"] - truth.start
    rows = [ground_truth_row(scenario, hpa, begin), minute_truth_row(truth, begin), *report.rows]
    print()
    print(
        f"recorded reality: the reactive HPA on {scenario.trace.name}, {truth.size * STEP / 86400:.0f} days "
        f"({sim_seconds:.0f} s to simulate); {stats.samples:,} samples in {stats.series} series backfilled in "
        f"{backfill_seconds:.0f} s; backtest {report.meta['wall_seconds']:.0f} s "
        f"(fetch {report.meta['fetch_seconds']:.1f} s)"
    )
    print(format_markdown(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
