"""``autoscaler simulate``: replay a trace under every policy and compare them.

Runs the predictive controller, the three setups a platform team could run instead (the
seed's HPA on latency, an HPA on concurrency as KEDA users set it up, and "yesterday's
load" as a forecast), the perfect-foresight oracle and static peak provisioning on the
same load and cluster, scored at one SLO. It prints the table, the Pareto verdict (does
the predictive policy beat each baseline on SLO and GPU node-hours at once?) and where
the node-hours went, and writes ``result.json`` and ``simulation.png`` under ``--out``.
With ``--tradeoff`` it also runs the predictive policy at each given forecast quantile and
draws the cost knob's trade-off curve (SLO attainment vs GPU node-hours, ``tradeoff.png``)
with the HPA and oracle as references.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.offline.sim.baselines import SEED_HPA_TARGET_SECONDS
from autoscaler.offline.sim.cluster import PRESETS
from autoscaler.offline.sim.engine import (
    DEFAULT_SLO_SECONDS,
    POLICIES,
    PolicyResult,
    Scenario,
    pareto_verdict,
    run_policy,
)
from autoscaler.offline.sim.latency import LatencyModel
from autoscaler.offline.sim.progress import progress_bar
from autoscaler.offline.sim.report import format_attribution, format_table, format_verdict, plot, summaries, write_json
from autoscaler.offline.sim.tradeoff import format_tradeoff, plot_tradeoff, run_tradeoff, tradeoff_rows
from autoscaler.offline.traces import LoadTrace, load_trace
from autoscaler.policy.loader import load_policy_file
from autoscaler.policy.schema import Target

EXAMPLE_POLICY = Path(__file__).parents[1] / "policy" / "example-gpt2.yaml"


@dataclass(frozen=True)
class SimulateOptions:
    """Everything ``autoscaler simulate`` can be told."""

    trace: str = "default"
    policy: Path = EXAMPLE_POLICY
    cold_start: str = "15min"
    peak_replicas: float = 12.0
    out: Path = Path("out/simulate")
    warmup_days: float = 7.0
    days: float | None = None
    latency_curve: str = "batching"
    slo_seconds: float = DEFAULT_SLO_SECONDS
    """The latency every policy is scored against (mean per 10-s step)."""
    policies: tuple[str, ...] = POLICIES
    seed: int = 7
    progress: bool = True
    plot: bool = True
    tradeoff: tuple[float, ...] = ()
    """Forecast quantiles to sweep for the trade-off curve (empty: no sweep)."""


def prepare(options: SimulateOptions) -> tuple[Scenario, Target]:
    """Load the trace and policy and build the scenario (no simulation yet)."""
    policy = load_policy_file(options.policy)
    target = policy.targets[0]
    per_replica = target.capacity.per_replica
    trace: LoadTrace = load_trace(options.trace)
    warmup = options.warmup_days * 86400.0
    if warmup >= trace.duration:
        warmup = min(trace.duration / 2, 86400.0)
    if options.days is not None:
        trace = trace.slice(0.0, min(trace.duration, warmup + options.days * 86400.0))
    trace = trace.rescale_peak(options.peak_replicas * per_replica)
    fleet = max(target.scaling.max_replicas, math.ceil(2 * options.peak_replicas))
    target = dataclasses.replace(target, scaling=dataclasses.replace(target.scaling, max_replicas=fleet))
    scenario = Scenario(
        trace=trace,
        warmup_seconds=warmup,
        phases=PRESETS[options.cold_start],
        latency=LatencyModel.preset(options.latency_curve),
        seed=options.seed,
        slo_seconds=options.slo_seconds,
        hpa_target_seconds=SEED_HPA_TARGET_SECONDS,
    )
    return scenario, target


def simulate(options: SimulateOptions, *, out: Any = sys.stdout) -> list[PolicyResult]:
    """Run the comparison and write the report files.

    Returns:
        One result per policy, in the order requested.
    """
    scenario, target = prepare(options)
    load = scenario.load()
    steps = load.size
    # The trade-off needs its reference points even when --policies leaves them out.
    references = [n for n in ("hpa", "oracle") if options.tradeoff and n not in options.policies]
    # The policy's own run is a point of the curve only when it sizes at one fixed level.
    reusable = "predictive" in options.policies and target.cost is None
    sweep = [q for q in options.tradeoff if not (reusable and q == target.forecast.quantile)]
    total = steps * (len(options.policies) + len(references) + len(sweep))
    advance, close = progress_bar(options.progress, total, desc="simulating")
    started = time.perf_counter()
    results = [run_policy(name, scenario, target, load=load, progress=advance) for name in options.policies]
    trade: list[dict[str, Any]] = []
    trade_refs: list[dict[str, Any]] = []
    if options.tradeoff:
        extra = [run_policy(name, scenario, target, load=load, progress=advance) for name in references]
        by_name = {r.name: r for r in (*results, *extra)}
        known = {target.forecast.quantile: by_name["predictive"]} if reusable else {}
        points = run_tradeoff(scenario, target, options.tradeoff, load=load, known=known, progress=advance)
        trade = tradeoff_rows(points, gpus_per_replica=target.placeholders.gpus_per_pod)
        oracle_hours = by_name["oracle"].gpu_node_hours
        trade_refs = [by_name[n].summary(oracle_hours) for n in ("hpa", "oracle")]
    close()
    elapsed = time.perf_counter() - started
    rows = summaries(results)
    runs = len(options.policies) + len(references) + len(sweep)
    sim_days = steps * scenario.dt / 86400.0
    title = (
        f"{scenario.trace.name}: {sim_days:.1f} simulated days, cold start {options.cold_start}, "
        f"peak {options.peak_replicas:g} replicas, {options.latency_curve} latency curve, "
        f"SLO {options.slo_seconds:g} s, {options.warmup_days:g} d warm-up"
    )
    verdict = pareto_verdict(rows)
    print(title, file=out)
    print(format_table(rows), file=out)
    if verdict:
        print(format_verdict(verdict), file=out)
    print("\nwhere the GPU node-hours went:", file=out)
    print(format_attribution(rows), file=out)
    if trade:
        print(f"\ntrade-off (forecast quantile; policy {target.forecast.quantile:g}):", file=out)
        print(format_tradeoff(trade, trade_refs), file=out)
    options.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "trace": scenario.trace.name,
        "trace_source": scenario.trace.source,
        "cold_start": options.cold_start,
        "cold_start_seconds": scenario.phases.total,
        "peak_replicas": options.peak_replicas,
        "simulated_days": sim_days,
        "latency_curve": options.latency_curve,
        "slo_seconds": options.slo_seconds,
        "policy_slo_seconds": target.slo.latency_seconds,
        "warmup_days": options.warmup_days,
        "per_replica": target.capacity.per_replica,
        "quantile": target.forecast.quantile,
        "forecast_model": target.forecast.model,
        "wall_seconds": round(elapsed, 2),
        "simulated_days_per_second": round(sim_days * runs / elapsed, 2),
    }
    sections: dict[str, Any] = {"pareto_verdict": verdict}
    if trade:
        sections["tradeoff"] = trade
    write_json(options.out / "result.json", meta=meta, rows=rows, extra=sections)
    written = [options.out / "result.json"]
    if options.plot:
        plot(
            options.out / "simulation.png",
            results,
            dt=scenario.dt,
            title=title,
            slo_seconds=options.slo_seconds,
            per_replica=target.capacity.per_replica,
        )
        written.append(options.out / "simulation.png")
        if trade:
            plot_tradeoff(
                options.out / "tradeoff.png",
                trade,
                trade_refs,
                title=f"{scenario.trace.name}, {sim_days:.1f} days: SLO attainment vs GPU node-hours per quantile",
            )
            written.append(options.out / "tradeoff.png")
    print(
        f"wrote {' and '.join(str(p) for p in written)}"
        + f" ({elapsed:.1f} s, {meta['simulated_days_per_second']} simulated days/s)",
        file=out,
    )
    return results


def parse_policies(values: Sequence[str]) -> tuple[str, ...]:
    """Validate a comma-separated policy list for ``--policies``."""
    names = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names
