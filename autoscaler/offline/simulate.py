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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.offline.experiment import Experiment, Results, Run, Sweep, run
from autoscaler.offline.sim.baselines import SEED_HPA_TARGET_SECONDS
from autoscaler.offline.sim.cluster import PRESETS
from autoscaler.offline.sim.engine import (
    DEFAULT_SLO_SECONDS,
    POLICIES,
    PolicyResult,
    Scenario,
    pareto_verdict,
)
from autoscaler.offline.sim.latency import LatencyModel
from autoscaler.offline.sim.report import format_attribution, format_table, format_verdict, plot, summaries, write_json
from autoscaler.offline.sim.tradeoff import format_tradeoff, plot_tradeoff
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


def experiment(options: SimulateOptions, scenario: Scenario, target: Target) -> Experiment:
    """The runs ``simulate`` makes: each requested policy, then the trade-off sweep if asked."""
    sweep = None
    if options.tradeoff:
        sweep = Sweep(
            target=target,
            quantiles=options.tradeoff,
            # The policy's own run is a point of the curve only when it sizes at one fixed level.
            reuse="predictive" if "predictive" in options.policies else None,
            # The trade-off needs its reference points even when --policies leaves them out.
            references=tuple(Run(n, target) for n in ("hpa", "oracle") if n not in options.policies),
        )
    return Experiment(scenario=scenario, runs=tuple(Run(name, target) for name in options.policies), sweep=sweep)


def simulate(options: SimulateOptions, *, out: Any = sys.stdout) -> list[PolicyResult]:
    """Run the comparison and write the report files.

    Returns:
        One result per policy, in the order requested.
    """
    scenario, target = prepare(options)
    results = run(experiment(options, scenario, target), progress=options.progress, desc="simulating")
    rows = summaries(results.results)
    title = _title(options, results)
    report(results, rows, title=title, target=target, out=out)
    written = write(results, rows, options=options, target=target, title=title)
    print(
        f"wrote {' and '.join(str(p) for p in written)}"
        + f" ({results.wall_seconds:.1f} s, {_days_per_second(results)} simulated days/s)",
        file=out,
    )
    return results.results


def _title(options: SimulateOptions, results: Results) -> str:
    scenario = results.experiment.scenario
    return (
        f"{scenario.trace.name}: {results.simulated_days:.1f} simulated days, cold start {options.cold_start}, "
        f"peak {options.peak_replicas:g} replicas, {options.latency_curve} latency curve, "
        f"SLO {options.slo_seconds:g} s, {options.warmup_days:g} d warm-up"
    )


def _days_per_second(results: Results) -> float:
    """Simulated days per wall-clock second over all runs."""
    return round(results.simulated_days * results.experiment.simulated_runs() / results.wall_seconds, 2)


def _tradeoff_references(results: Results) -> list[dict[str, Any]]:
    """The HPA's and the oracle's rows, the trade-off curve's reference points (none without a sweep)."""
    if not results.points:
        return []
    by_name = results.by_name()
    oracle_hours = by_name["oracle"].gpu_node_hours
    return [by_name[n].summary(oracle_hours) for n in ("hpa", "oracle")]


def report(results: Results, rows: list[dict[str, Any]], *, title: str, target: Target, out: Any) -> None:
    """Print the title, the table, the Pareto verdict, the node-hour attribution and the trade-off."""
    verdict = pareto_verdict(rows)
    print(title, file=out)
    print(format_table(rows), file=out)
    if verdict:
        print(format_verdict(verdict), file=out)
    print("\nwhere the GPU node-hours went:", file=out)
    print(format_attribution(rows), file=out)
    trade = results.tradeoff_rows()
    if trade:
        print(f"\ntrade-off (forecast quantile; policy {target.forecast.quantile:g}):", file=out)
        print(format_tradeoff(trade, _tradeoff_references(results)), file=out)


def _meta(results: Results, *, options: SimulateOptions, target: Target) -> dict[str, Any]:
    scenario = results.experiment.scenario
    return {
        "trace": scenario.trace.name,
        "trace_source": scenario.trace.source,
        "cold_start": options.cold_start,
        "cold_start_seconds": scenario.phases.total,
        "peak_replicas": options.peak_replicas,
        "simulated_days": results.simulated_days,
        "latency_curve": options.latency_curve,
        "slo_seconds": options.slo_seconds,
        "policy_slo_seconds": target.slo.latency_seconds,
        "warmup_days": options.warmup_days,
        "per_replica": target.capacity.per_replica,
        "quantile": target.forecast.quantile,
        "forecast_model": target.forecast.model,
        "wall_seconds": round(results.wall_seconds, 2),
        "simulated_days_per_second": _days_per_second(results),
    }


def write(
    results: Results, rows: list[dict[str, Any]], *, options: SimulateOptions, target: Target, title: str
) -> list[Path]:
    """Write ``result.json`` and, when plotting, ``simulation.png`` (and ``tradeoff.png``) under ``--out``.

    Returns:
        The files written, in that order.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    trade = results.tradeoff_rows()
    sections: dict[str, Any] = {"pareto_verdict": pareto_verdict(rows)}
    if trade:
        sections["tradeoff"] = trade
    write_json(
        options.out / "result.json", meta=_meta(results, options=options, target=target), rows=rows, extra=sections
    )
    written = [options.out / "result.json"]
    if not options.plot:
        return written
    scenario = results.experiment.scenario
    plot(
        options.out / "simulation.png",
        results.results,
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
            _tradeoff_references(results),
            title=f"{scenario.trace.name}, {results.simulated_days:.1f} days: "
            "SLO attainment vs GPU node-hours per quantile",
        )
        written.append(options.out / "tradeoff.png")
    return written


def parse_policies(values: Sequence[str]) -> tuple[str, ...]:
    """Validate a comma-separated policy list for ``--policies``."""
    names = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names
