"""Cost of the Prometheus source per control loop and at start-up, for 1, 10 and 100 targets.

Why: the controller observes every target every loop, so the number of queries and their
time must not grow like "targets x signals"; and a restart loads 14 days of history per
target. Run as ``.venv/bin/python benchmarks/bench_prometheus.py``. For each N it starts a
real Prometheus (the test harness in ``tests/prom``) backfilled with N targets (one pod
each): 14 days of the load series at 60 s, plus the last 2 hours of every vLLM series at
30 s (histograms included) and DCGM GPU gauges. It then measures the queries per loop, the
median ``observe`` time per loop and per target (evaluated at the history's end, so every
signal has data), and the median ``load_history`` time for one target over 14 days at
300 s, and prints medians with ratios to the 1-target case.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.adapters.prometheus.queries import loop_queries
from autoscaler.logs import configure
from autoscaler.policy.schema import Target
from tests.prom.backfill import backfill, diurnal_rate, synthetic_vllm_history
from tests.prom.server import PrometheusServer

LONG_KEEP = ("request_success_total", "num_requests_running", "num_requests_waiting")
RECENT_SECONDS = 2 * 3600


def _series_for(i: int, *, end: float, days: float) -> list[Any]:
    """Backfill series of target ``i``: long load history, then recent full vLLM + DCGM series."""
    deployment = f"vllm-{i:03d}"
    pod = f"{deployment}-7d9f8c6b5-x{i % 10}k{i // 10 % 10}p"
    rate = diurnal_rate(20.0 + i % 7, 8.0)
    common = {"namespace": "llm", "pods": [pod], "model_name": f"model-{i}", "deployment": deployment}
    long = synthetic_vllm_history(
        **common, start=end - days * 86400, end=end - RECENT_SECONDS, step=60.0, arrival_rate=rate
    )
    recent = synthetic_vllm_history(**common, start=end - RECENT_SECONDS + 30, end=end, step=30.0, arrival_rate=rate)
    out = [s for s in long.series if s[0].endswith(LONG_KEEP)] + [s for s in recent.series if "pod" in s[1]]
    # the generator has no queue-time or TTFT histogram and no preemption counter: add
    # same-shaped copies so every per-loop query reads as many series as against vLLM
    for name, labels, ts, values, kind in [s for s in recent.series if "e2e_request_latency" in s[0]]:
        for other in ("request_queue_time_seconds", "time_to_first_token_seconds"):
            out.append((name.replace("e2e_request_latency_seconds", other), labels, ts, values, kind))
        if name.endswith("_count"):
            out.append(("vllm:num_preemptions_total", labels, ts, np.zeros_like(values), "counter"))
    ts = recent.timestamps
    dcgm = {
        "gpu": "0",
        "Hostname": f"node-{i}",
        "namespace": "gpu-operator",
        "pod": "nvidia-dcgm-exporter-x7k2p",
        "exported_namespace": "llm",
        "exported_pod": pod,
        "job": "dcgm",
    }
    out.append(("DCGM_FI_DEV_GPU_UTIL", dcgm, ts, np.full(ts.size, 50.0 + i % 40), "gauge"))
    out.append(("DCGM_FI_PROF_GR_ENGINE_ACTIVE", dcgm, ts, np.full(ts.size, 0.4), "gauge"))
    return out


def _median_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(n: int, *, days: float, repeats: int, work_dir: Path) -> dict[str, float]:
    """Backfill ``n`` targets into a fresh server and time ``observe`` and ``load_history``.

    Args:
        n: Number of targets.
        days: Days of load history per target.
        repeats: Timing repetitions (medians are reported).
        work_dir: Where the server keeps its data.

    Returns:
        ``queries``, ``observe_s``, ``per_target_ms``, ``history_s``, ``history_points``,
        ``backfill_s`` and ``samples``.
    """
    end = math.floor((time.time() - 600) / 60.0) * 60.0
    series = [s for i in range(n) for s in _series_for(i, end=end, days=days)]
    server = PrometheusServer([], base_dir=work_dir)
    started = time.perf_counter()
    stats = backfill(server.data_dir, series)
    backfill_s = time.perf_counter() - started
    targets = [Target(namespace="llm", deployment=f"vllm-{i:03d}", model_name=f"model-{i}") for i in range(n)]
    with server:
        source = PrometheusSource(server.url, timeout_seconds=60.0)
        snapshots = source.observe(targets, end)  # warm-up, and a check that every signal has data
        missing = {k for s in snapshots.values() for k in s.problems}
        if missing:
            raise SystemExit(f"signals missing at the history's end: {sorted(missing)}")
        observe_s = _median_seconds(lambda: source.observe(targets, end), repeats)
        queries = source.last_loop.queries
        step = 300
        last = (end // step) * step - step

        def history() -> None:
            source.load_history(targets[0], start=last - days * 86400, end=last, step=step)

        history_s = _median_seconds(history, repeats)
        points = len(source.load_history(targets[0], start=last - days * 86400, end=last, step=step))
        source.close()
    return {
        "queries": queries,
        "observe_s": observe_s,
        "per_target_ms": observe_s / n * 1000,
        "history_s": history_s,
        "history_points": points,
        "backfill_s": backfill_s,
        "samples": stats.samples,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1,10,100", help="comma-separated target counts (first = baseline)")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--show-queries", action="store_true", help="print the per-loop PromQL and exit")
    args = parser.parse_args(argv)
    configure(fmt="console", level="warning")
    if args.show_queries:
        for query in loop_queries([Target(namespace="llm", deployment="vllm-gpt2", model_name="gpt2")]):
            print(f"{query.signal}:\n  {query.expr}")
        return 0
    counts = [int(x) for x in args.targets.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp:
        for n in counts:
            rows[n] = measure(n, days=args.days, repeats=args.repeats, work_dir=Path(tmp))
            r = rows[n]
            print(f"  N={n}: {r['samples']:,} samples backfilled in {r['backfill_s']:.1f} s", file=sys.stderr)
    base = rows[counts[0]]
    print(f"Prometheus source cost ({args.repeats} repeats, medians; ratios vs N={counts[0]})")
    print(
        f"{'targets':>7} | {'queries/loop':>12} | {'observe/loop ms':>15} | {'ratio':>5} | {'per target ms':>13} | "
        f"{'ratio':>5} | {'load_history ' + str(int(args.days)) + 'd@300s ms':>24} | {'points':>6} | {'ratio':>5}"
    )
    for n, r in rows.items():
        ratios = {k: r[k] / base[k] for k in ("observe_s", "per_target_ms", "history_s")}
        print(
            f"{n:>7} | {r['queries']:>12.0f} | {r['observe_s'] * 1000:>15.1f} | {ratios['observe_s']:>5.2f}"
            f" | {r['per_target_ms']:>13.2f} | {ratios['per_target_ms']:>5.2f}"
            f" | {r['history_s'] * 1000:>24.1f} | {r['history_points']:>6.0f} | {ratios['history_s']:>5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
