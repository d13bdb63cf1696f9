"""``autoscaler backtest``: replay a target's recorded history and compare with what happened.

Why: before switching a target to ``enforce``, an operator wants to know what the policy
*would have done* on their own traffic, next to what their cluster *actually did*, and
next to the reactive HPA and the perfect-foresight oracle. This command pulls the target's
history from Prometheus (arrival rate, mean latency, replicas as they were, learned cold
start), replays the recorded arrival rate through the simulator with the same controller
code ``autoscaler run`` uses, and reports SLO attainment, GPU node-hours and scale events
per policy, plus the recorded reality computed from the recorded series themselves.
``--policy`` adds a candidate policy next to the running one; ``--tradeoff`` sweeps the
forecast quantile (the cost knob).

What "recorded" means, and its assumptions (also printed in the report):

* **SLO attainment**: share of the load (weighted by the recorded arrival rate) in buckets
  whose recorded mean end-to-end latency is within ``slo.latencySeconds``. Buckets with no
  recorded load or latency (gaps) are left out, not counted as met or missed. Requests
  that never completed (time-outs at a gateway) are invisible to vLLM's histograms.
* **GPU node-hours**: integral of the Deployment's desired replicas
  (``kube_deployment_spec_replicas``; ``..._available`` if that is missing) times
  ``--nodes-per-replica`` (default 1: one replica per GPU node, as in the simulator).
  Across a gap in kube-state-metrics the last known count is held (nodes do not vanish
  when a scrape fails). Node provisioning and the cluster-autoscaler's idle tail are not
  in the Deployment's series, so this is a lower bound of the nodes billed; the ``replica-h``
  column gives every row on the same footing.
* **Scale events**: changes of the recorded desired replicas.

The replays start from the recorded replicas, use the recorded load (gaps bridged by
linear interpolation, never zero) with the simulator's sub-minute burst noise, a simulated
cluster whose cold start is the measured one (P90 pod start-ups from kube-state-metrics)
or else the running policy's phases, and a latency model whose saturation is
``perReplica / 0.9`` (``--saturation-rps``) with the SLO at saturation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from autoscaler.adapters.prometheus import PrometheusConnection
from autoscaler.adapters.prometheus.grid import bucket_grid, range_buckets
from autoscaler.adapters.prometheus.promql import duration_seconds
from autoscaler.adapters.prometheus.recorded import (
    AVAILABLE_REPLICAS,
    SPEC_REPLICAS,
    deployment_replicas,
    latency_mean,
    window_seconds,
)
from autoscaler.cli import options
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.errors import ConfigError, MetricsEmpty
from autoscaler.offline.backtest.report import BacktestReport, print_summary, write_outputs
from autoscaler.offline.sim.cluster import ClusterPhases
from autoscaler.offline.sim.engine import PolicyResult, Scenario, run_policy, weighted_quantile
from autoscaler.offline.sim.latency import LatencyModel
from autoscaler.offline.sim.progress import progress_bar
from autoscaler.offline.sim.tradeoff import (
    run_tradeoff,
    tradeoff_rows,
)
from autoscaler.offline.traces import LoadTrace
from autoscaler.policy.schema import ColdStart, Target

if TYPE_CHECKING:
    from autoscaler.adapters.prometheus import PrometheusSource

EXAMPLE_POLICY = Path(__file__).parents[2] / "policy" / "example-gpt2.yaml"
#: ``--prometheus-timeout`` of a backtest: its range queries are larger than a cycle's.
DEFAULT_TIMEOUT_SECONDS = 30.0
#: Warm-up history before the replayed span, unless the data is shorter than twice this.
DEFAULT_WARMUP_SECONDS = 7 * 86400.0
#: Shortest evaluated span worth reporting (after the warm-up).
MIN_EVALUATED_SECONDS = 2 * 3600.0


@dataclass(frozen=True)
class BacktestOptions:
    """Everything ``autoscaler backtest`` can be told."""

    prometheus: PrometheusConnection
    """Where the history is (``url`` alone is enough for a plain-HTTP server)."""
    target: str
    since: str = "14d"
    until: float | None = None
    policy: Path | None = None
    running_policy: Path | None = None
    step: int = 60
    warmup_days: float | None = None
    """History before the replayed span; default 7 days, at most half of the recorded data."""
    out: Path = Path("out/backtest")
    tradeoff: tuple[float, ...] = ()
    nodes_per_replica: float = 1.0
    saturation_rps: float | None = None
    latency_curve: str = "batching"
    noise_sigma: float = 0.08
    seed: int = 7
    plot: bool = True
    progress: bool = True
    json: bool = False


@dataclass(frozen=True)
class Recorded:
    """A target's recorded history on a regular bucket grid; NaN = no data (never 0)."""

    target: Target
    start: float
    step: float
    load: NDArray[np.float64]
    """Arrival rate per bucket in the policy's capacity unit per second."""
    latency: NDArray[np.float64]
    """Mean end-to-end latency (s) of the requests completed in the bucket."""
    spec_replicas: NDArray[np.float64]
    """Desired replicas at the bucket's start (kube-state-metrics)."""
    available_replicas: NDArray[np.float64]
    """Available replicas at the bucket's start (kube-state-metrics)."""
    lead_times: LeadTimes | None = None
    """Lead times measured from pod start-ups, or ``None`` when too few were recorded."""
    learned: Mapping[str, Any] | None = None
    """What the lead-time learner saw (sample counts, P90s)."""

    @property
    def size(self) -> int:
        """Number of buckets."""
        return int(self.load.size)

    def times(self) -> NDArray[np.float64]:
        """Start of every bucket (unix seconds)."""
        return self.start + self.step * np.arange(self.size, dtype=np.float64)

    def replicas(self) -> NDArray[np.float64]:
        """Desired replicas, or available ones where the desired count was not recorded."""
        return np.where(np.isfinite(self.spec_replicas), self.spec_replicas, self.available_replicas)

    def trimmed(self) -> Recorded:
        """The buckets from the first to the last one with recorded load (the data's extent)."""
        known = np.flatnonzero(np.isfinite(self.load))
        i, j = int(known[0]), int(known[-1]) + 1
        return dataclasses.replace(
            self,
            start=self.start + i * self.step,
            load=self.load[i:j],
            latency=self.latency[i:j],
            spec_replicas=self.spec_replicas[i:j],
            available_replicas=self.available_replicas[i:j],
        )


# ---------------------------------------------------------------------------- fetching


def fetch_recorded(source: PrometheusSource, target: Target, *, start: float, end: float, step: int) -> Recorded:
    """Pull the target's load, mean latency, replicas and measured cold start over ``[start, end)``.

    Args:
        source: The Prometheus source (its lead-time look-back should span the window).
        target: The target as the running policy describes it (pods, model, rate window).
        start: Window start (unix seconds).
        end: Window end.
        step: Bucket width in whole seconds.

    Returns:
        The recorded series, trimmed to the buckets between the first and last recorded load.

    Raises:
        MetricsEmpty: no load was recorded for the target in the window.
        MetricsUnavailable: Prometheus did not answer.
        MetricsInvalid: a query was rejected or returned several series.
    """
    first, count = bucket_grid(start, end, step)
    if count < 2:
        raise ValueError(f"the window [{_iso(start)}, {_iso(end)}) holds fewer than two {step} s buckets")
    try:
        history = source.load_history(target, start=first, end=first + (count - 1) * step, step=step)
    except MetricsEmpty:
        raise MetricsEmpty(
            f"no recorded load for {target.key} in Prometheus between {_iso(start)} and {_iso(end)} "
            f"(no vLLM series of pods {target.deployment}-<hash>-<suffix> in namespace {target.namespace}"
            + (f" with model_name {target.model_name}" if target.model_name else "")
            + ")"
        ) from None
    load = np.full(count, np.nan)
    idx = np.rint((history.timestamps() - first) / step).astype(np.int64)
    ok = (idx >= 0) & (idx < count)
    load[idx[ok]] = history.values[ok]
    client = source.client
    common = {"first": first, "count": count, "step": step, "max_points": source.max_points_per_query}
    latency = range_buckets(client, "latency_mean", latency_mean(target, step=step), at_end=True, **common).values
    spec = range_buckets(
        client, "spec_replicas", deployment_replicas(target, SPEC_REPLICAS), at_end=False, **common
    ).values
    available = range_buckets(
        client, "available_replicas", deployment_replicas(target, AVAILABLE_REPLICAS), at_end=False, **common
    ).values
    # The cluster's cold start is a fact about the cluster, learned whatever the policy's `learn` says.
    learner_target = dataclasses.replace(target, cold_start=dataclasses.replace(target.cold_start, learn=True))
    lead = source.lead_times(learner_target, end)
    learned = source.learned().get(target.key)
    recorded = Recorded(
        target=target,
        start=float(first),
        step=float(step),
        load=load,
        latency=latency,
        spec_replicas=spec,
        available_replicas=available,
        lead_times=lead,
        learned=learned,
    )
    return recorded.trimmed()


# ------------------------------------------------------------------ recorded reality


def _hold(values: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Forward-fill NaN with the last known value (back-fill a leading gap); None if all NaN."""
    known = np.isfinite(values)
    if not known.any():
        return None
    idx = np.where(known, np.arange(values.size), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.flatnonzero(known)[0])
    return values[idx]


def recorded_row(
    recorded: Recorded, *, begin: int, slo_seconds: float, nodes_per_replica: float = 1.0
) -> dict[str, Any]:
    """What actually happened over the buckets from ``begin`` on, as a results-table row. Pure.

    See the module docstring for how each figure is computed and what it assumes.

    Args:
        recorded: The recorded series.
        begin: First bucket of the evaluated span (after the replays' warm-up).
        slo_seconds: The SLO's mean-latency bound.
        nodes_per_replica: GPU nodes one replica occupies.

    Returns:
        The row (``None`` for what the recording cannot tell: failed requests,
        placeholder events; and node-hours when no replica count was recorded), plus
        ``coverage_pct``: the share of buckets with both load and latency recorded.
    """
    load = recorded.load[begin:]
    latency = recorded.latency[begin:]
    known = np.isfinite(load) & np.isfinite(latency)
    weight = np.where(known, load, 0.0)
    total = float(weight.sum())
    met = float(weight[known & (latency <= slo_seconds + 1e-9)].sum())
    replicas = recorded.replicas()[begin:]
    held = _hold(replicas)
    replica_hours = None if held is None else float(held.sum() * recorded.step / 3600.0)
    values = replicas[np.isfinite(replicas)]
    return {
        "policy": "recorded",
        "slo_attainment_pct": round(100.0 * met / total, 3) if total > 0 else None,
        "failed_requests": None,
        "gpu_node_hours": None if replica_hours is None else round(replica_hours * nodes_per_replica, 2),
        "replica_hours": None if replica_hours is None else round(replica_hours, 2),
        "scale_events": int(np.count_nonzero(np.diff(values))) if values.size else None,
        "placeholder_events": None,
        "p95_latency_ms": round(1000 * weighted_quantile(latency[known], load[known], 0.95), 1)
        if known.any()
        else None,
        "requests": round(float(np.nansum(load)) * recorded.step),
        "coverage_pct": round(100.0 * float(known.mean()), 2) if known.size else 0.0,
    }


def simulated_row(
    result: PolicyResult, *, oracle_hours: float | None, dt: float, nodes_per_replica: float = 1.0
) -> dict[str, Any]:
    """A replayed policy's row: the ``simulate`` summary plus replica-hours (desired replicas).

    The simulated cluster puts one replica on one node; ``nodes_per_replica`` rescales its
    node-hours the same way as the recorded row's, so the rows stay comparable.
    """
    row = result.summary(oracle_hours)
    row["gpu_node_hours"] = round(result.gpu_node_hours * nodes_per_replica, 2)
    for key, hours in result.attribution.items():
        row[f"hours_{key}"] = round(hours * nodes_per_replica, 2)
    row["replica_hours"] = round(float(result.series["spec"].sum()) * dt / 3600.0, 2)
    row["requests"] = round(result.requests)
    return row


# ------------------------------------------------------------------------ the world


def cluster_phases(lead: LeadTimes | None, cold: ColdStart) -> ClusterPhases:
    """The simulated cluster's cold start: the measured lead times, else the policy's phases. Pure.

    A measured node wait covers the cluster-autoscaler scan and the node phases; they are
    scaled together to match it (their split is not observable from pod timestamps). The
    measured warm start is the model load; fresh minus warm is the image pull.
    """
    scan = cold.cluster_autoscaler_delay_seconds
    node = (cold.node_provision_seconds, cold.node_services_seconds, cold.gpu_driver_seconds)
    if lead is None:
        return ClusterPhases(
            node_provision=node[0],
            node_services=node[1],
            gpu_driver=node[2],
            image_pull=cold.image_pull_seconds,
            model_load=cold.model_load_seconds,
            scan_interval=scan,
        )
    scan = min(scan, lead.node_ready)
    phases_total = sum(node)
    factor = (lead.node_ready - scan) / phases_total if phases_total > 0 else 0.0
    provision, services, driver = (p * factor for p in node) if phases_total > 0 else (lead.node_ready - scan, 0, 0)
    return ClusterPhases(
        node_provision=float(provision),
        node_services=float(services),
        gpu_driver=float(driver),
        image_pull=max(0.0, lead.pod_start_fresh - lead.pod_start_warm),
        model_load=lead.pod_start_warm,
        scan_interval=scan,
    )


def latency_model(target: Target, *, saturation_rps: float | None, curve: str) -> LatencyModel:
    """A latency model for the target: saturation at ``perReplica / 0.9``, the SLO reached there. Pure.

    The seed's calibration (``autoscaler.offline.sim.latency``) scaled to this target: the policy's
    ``perReplica`` is conventionally sized at 90 % of saturation, mean latency at saturation
    equals the SLO, and the idle latency is 30 % of it (``flat``: 75 %, like ``simulate``).
    """
    sat = saturation_rps if saturation_rps is not None else target.capacity.per_replica / 0.9
    slo = target.slo.latency_seconds
    if curve == "flat":
        return LatencyModel(shape="flat", saturation_rps=sat, base_seconds=0.75 * slo, saturation_seconds=slo)
    return LatencyModel(saturation_rps=sat, base_seconds=0.3 * slo, saturation_seconds=slo)


# ----------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policies:
    """The running target (and its loop interval), and the optional candidate."""

    running: Target
    running_loop: float
    running_source: str
    candidate: Target | None = None
    candidate_loop: float = 30.0
    candidate_source: str | None = None


def parse_target(spec: str) -> str:
    """Validate ``NAMESPACE/DEPLOYMENT``."""
    try:
        options.split_ref(spec)
    except ValueError:
        raise ValueError(f"--target must be NAMESPACE/DEPLOYMENT, got {spec!r}") from None
    return spec


def resolve_policies(key: str, *, candidate: Path | None, running: Path | None) -> Policies:
    """Look up the target's entry in the running policy (default: the bundled example) and the candidate.

    The bundled example describes the seed's ``vllm/vllm-gpt2``; for another target its
    settings are applied to that Deployment (all models: ``modelName`` unset).

    Raises:
        ValueError: the target is not in ``--running-policy`` or ``--policy``.
        PolicyRejected: a policy file is invalid.
    """
    from autoscaler.policy.loader import load_policy_file

    if running is not None:
        policy = load_policy_file(running)
        try:
            run_target = policy.target(key)
        except KeyError:
            raise ValueError(f"{key} is not a target of --running-policy {running}") from None
        source = str(running)
    else:
        policy = load_policy_file(EXAMPLE_POLICY)
        namespace, name = options.split_ref(key)
        try:
            run_target = policy.target(key)
        except KeyError:
            run_target = dataclasses.replace(policy.targets[0], namespace=namespace, deployment=name, model_name=None)
        source = f"bundled example ({EXAMPLE_POLICY.name})"
    out = Policies(running=run_target, running_loop=policy.loop_interval_seconds, running_source=source)
    if candidate is not None:
        cand = load_policy_file(candidate)
        try:
            cand_target = cand.target(key)
        except KeyError:
            raise ValueError(f"{key} is not a target of --policy {candidate}") from None
        out = dataclasses.replace(
            out, candidate=cand_target, candidate_loop=cand.loop_interval_seconds, candidate_source=str(candidate)
        )
    return out


# ------------------------------------------------------------------------ the run


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def backtest(options: BacktestOptions, *, out: Any = None) -> BacktestReport:
    """Fetch the history, replay it under each policy, print the table and write the report.

    Returns:
        The report (rows in table order: recorded, predictive, candidate, hpa, oracle).

    Raises:
        ValueError: bad options (target, window, quantiles).
        MetricsEmpty: the target has no recorded load in the window.
        MetricsUnavailable: Prometheus could not be reached.
    """
    from autoscaler.adapters.prometheus import PrometheusSource

    out = out if out is not None else sys.stdout
    started = time.perf_counter()
    key = parse_target(options.target)
    if options.step < 1 or options.step != int(options.step):
        raise ValueError(f"--step must be whole seconds >= 1, got {options.step}")
    if options.warmup_days is not None and not options.warmup_days >= 0:
        raise ValueError(f"--warmup-days must be >= 0, got {options.warmup_days}")
    if not options.nodes_per_replica > 0:
        raise ValueError(f"--nodes-per-replica must be > 0, got {options.nodes_per_replica}")
    policies = resolve_policies(key, candidate=options.policy, running=options.running_policy)
    running = policies.running
    for target in (running, policies.candidate):
        # The replay's history is averaged into forecast buckets; a bucket must hold whole steps.
        if target is not None and target.forecast.resolution_seconds % options.step:
            raise ValueError(
                f"--step {options.step} must divide forecast.resolutionSeconds "
                f"({target.forecast.resolution_seconds} s) of the replayed policies"
            )
    since = duration_seconds(options.since)
    end = options.until if options.until is not None else time.time()
    start = end - since
    if start < 0:
        raise ConfigError("--since", f"{options.since} before {_iso(end)} reaches back before 1970")
    source = PrometheusSource.connect(options.prometheus, lead_time_lookback_seconds=since)
    try:
        recorded = fetch_recorded(source, running, start=start, end=end, step=options.step)
    finally:
        source.close()
    fetched = time.perf_counter() - started

    span = recorded.size * recorded.step
    warmup = min(DEFAULT_WARMUP_SECONDS, span / 2) if options.warmup_days is None else options.warmup_days * 86400.0
    warmup_buckets = round(warmup / recorded.step)
    evaluated = span - warmup_buckets * recorded.step
    if evaluated < MIN_EVALUATED_SECONDS:
        raise ValueError(
            f"{span / 3600:.1f} h of recorded load for {key} between {_iso(start)} and {_iso(end)} leave "
            f"{max(0.0, evaluated) / 3600:.1f} h to replay after {warmup / 3600:.1f} h of warm-up; "
            f"at least {MIN_EVALUATED_SECONDS / 3600:.0f} h are needed"
        )
    phases = cluster_phases(recorded.lead_times, running.cold_start)
    latency = latency_model(running, saturation_rps=options.saturation_rps, curve=options.latency_curve)
    trace = LoadTrace(
        name=key,
        start=recorded.start,
        step=recorded.step,
        rates=recorded.load,
        source=f"recorded in Prometheus {options.prometheus.url}",
    )
    scenario = Scenario(
        trace=trace,
        warmup_seconds=warmup_buckets * recorded.step,
        phases=phases,
        latency=latency,
        noise_sigma=options.noise_sigma,
        seed=options.seed,
    )
    load = scenario.load()
    held = _hold(recorded.replicas()[: warmup_buckets + 1])
    initial = None if held is None else round(float(held[warmup_buckets]))

    runs: list[tuple[str, Target, float, str]] = [("predictive", running, policies.running_loop, "predictive")]
    if policies.candidate is not None:
        runs.append(("predictive", policies.candidate, policies.candidate_loop, "candidate"))
    runs += [("hpa", running, policies.running_loop, "hpa"), ("oracle", running, policies.running_loop, "oracle")]
    base = policies.candidate or running
    # A cost-priced policy chooses its level itself, so its run is no point of the curve.
    reusable = base.cost is None
    extra_tradeoff = [q for q in options.tradeoff if not (reusable and q == base.forecast.quantile)]
    advance, close = progress_bar(options.progress, load.size * (len(runs) + len(extra_tradeoff)), desc="replaying")
    results = [
        run_policy(
            name,
            scenario,
            target,
            loop_interval=loop,
            load=load,
            progress=advance,
            initial_replicas=initial,
            label=label,
        )
        for name, target, loop, label in runs
    ]
    by_label = {r.name: r for r in results}
    points: list[tuple[float, PolicyResult]] = []
    if options.tradeoff:
        base_result = by_label["candidate" if policies.candidate is not None else "predictive"]
        points = run_tradeoff(
            scenario,
            base,
            options.tradeoff,
            load=load,
            loop_interval=policies.candidate_loop if policies.candidate is not None else policies.running_loop,
            known={base.forecast.quantile: base_result} if reusable else {},
            initial_replicas=initial,
            progress=advance,
        )
    close()

    oracle_hours = by_label["oracle"].gpu_node_hours
    rec_row = recorded_row(
        recorded,
        begin=warmup_buckets,
        slo_seconds=running.slo.latency_seconds,
        nodes_per_replica=options.nodes_per_replica,
    )
    if rec_row["gpu_node_hours"] is not None and oracle_hours:
        rec_row["vs_oracle"] = round(rec_row["gpu_node_hours"] / oracle_hours, 3)
    rows = [rec_row] + [
        simulated_row(r, oracle_hours=oracle_hours, dt=scenario.dt, nodes_per_replica=options.nodes_per_replica)
        for r in results
    ]
    elapsed = time.perf_counter() - started
    meta = _meta(
        options,
        key=key,
        policies=policies,
        recorded=recorded,
        scenario=scenario,
        warmup_buckets=warmup_buckets,
        start=start,
        end=end,
        initial=initial,
        fetch_seconds=fetched,
        wall_seconds=elapsed,
    )
    gpus = (policies.candidate or running).placeholders.gpus_per_pod
    report = BacktestReport(
        meta=meta,
        rows=rows,
        results=results,
        recorded=recorded,
        scenario=scenario,
        tradeoff=tradeoff_rows(points, gpus_per_replica=gpus) if points else [],
    )
    write_outputs(report, options.out, plot=options.plot)
    print_summary(report, out, as_json=options.json, wall_seconds=elapsed)
    return report


def _meta(
    options: BacktestOptions,
    *,
    key: str,
    policies: Policies,
    recorded: Recorded,
    scenario: Scenario,
    warmup_buckets: int,
    start: float,
    end: float,
    initial: int | None,
    fetch_seconds: float,
    wall_seconds: float,
) -> dict[str, Any]:
    running = policies.running
    lead = recorded.lead_times
    phases = scenario.phases
    eval_load = recorded.load[warmup_buckets:]
    learned = dict(recorded.learned) if recorded.learned else None
    if learned is not None:
        learned.pop("lead_times", None)
    return {
        "target": key,
        "prometheus_url": options.prometheus.url,
        "window": {"start": start, "end": end, "start_iso": _iso(start), "end_iso": _iso(end)},
        "data": {
            "start": recorded.start,
            "end": recorded.start + recorded.size * recorded.step,
            "start_iso": _iso(recorded.start),
            "end_iso": _iso(recorded.start + recorded.size * recorded.step),
            "step_seconds": recorded.step,
            "buckets": recorded.size,
            "rate_window_seconds": window_seconds(running, recorded.step),
            "load_gap_buckets": int(np.isnan(recorded.load).sum()),
            "latency_gap_buckets": int(np.isnan(recorded.latency).sum()),
            "replica_gap_buckets": int(np.isnan(recorded.replicas()).sum()),
        },
        "evaluated": {
            "start": scenario.start,
            "end": scenario.end,
            "start_iso": _iso(scenario.start),
            "end_iso": _iso(scenario.end),
            "days": round((scenario.end - scenario.start) / 86400.0, 3),
            "warmup_days": round(scenario.warmup_seconds / 86400.0, 3),
            "load_gap_buckets": int(np.isnan(eval_load).sum()),
            "initial_replicas": initial,
        },
        "cold_start": {
            "source": lead.source if lead is not None else "policy",
            "node_ready_seconds": round(lead.node_ready if lead else phases.scan_interval + phases.node_ready, 1),
            "pod_start_warm_seconds": round(lead.pod_start_warm if lead else phases.model_load, 1),
            "pod_start_fresh_seconds": round(
                lead.pod_start_fresh if lead else phases.image_pull + phases.model_load, 1
            ),
            "total_seconds": round(phases.total, 1),
            "phases": dataclasses.asdict(phases),
            "learned": learned,
        },
        "latency_model": dataclasses.asdict(scenario.latency),
        "slo_seconds": running.slo.latency_seconds,
        "per_replica": running.capacity.per_replica,
        "unit": "tokens/s" if running.capacity.unit == "tokens" else "req/s",
        "nodes_per_replica": options.nodes_per_replica,
        "noise_sigma": scenario.noise_sigma,
        "seed": scenario.seed,
        "policies": {
            "predictive": {
                "source": policies.running_source,
                "quantile": running.forecast.quantile,
                "model": running.forecast.model,
                "scale_down_stabilization_seconds": running.scaling.scale_down_stabilization_seconds,
            },
            **(
                {
                    "candidate": {
                        "source": policies.candidate_source,
                        "quantile": policies.candidate.forecast.quantile,
                        "model": policies.candidate.forecast.model,
                        "scale_down_stabilization_seconds": (
                            policies.candidate.scaling.scale_down_stabilization_seconds
                        ),
                    }
                }
                if policies.candidate is not None
                else {}
            ),
        },
        "assumptions": [
            "recorded SLO attainment: share of the recorded load in buckets whose recorded mean e2e latency "
            "is within the SLO; buckets without load or latency (gaps) are left out",
            f"recorded GPU node-hours: desired replicas x {options.nodes_per_replica:g} node(s) per replica, "
            "held across gaps; provisioning and idle node tails are not visible (a lower bound); replayed "
            "node-hours are billed from node creation to removal, times the same factor",
            "recorded scale events: changes of the desired replicas",
            "replays: recorded load with gaps bridged linearly (never zero) plus sub-minute burst noise, "
            "the measured cold start (else the policy's phases), saturation at perReplica / 0.9",
        ],
        "fetch_seconds": round(fetch_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
    }


# ---------------------------------------------------------------------------- CLI


#: Longest look-back ``--since`` accepts (ten years: beyond any Prometheus retention).
MAX_SINCE_SECONDS = 10 * 365 * 86400.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``backtest`` options to ``parser`` (used by :mod:`autoscaler.cli.main`)."""
    parser.add_argument(
        "--target", required=True, type=options.target, metavar="NS/NAME", help="namespace/deployment of the target"
    )
    parser.add_argument(
        "--since",
        default="14d",
        type=options.duration(maximum_seconds=MAX_SINCE_SECONDS),
        help="how far back to replay (Prometheus duration; default 14d)",
    )
    parser.add_argument(
        "--until", default=None, type=options.instant, help="end of the window (unix seconds or ISO 8601; default: now)"
    )
    parser.add_argument("--policy", type=Path, default=None, help="candidate policy file to compare")
    parser.add_argument(
        "--running-policy",
        type=Path,
        default=None,
        help="the policy the target runs with (default: the bundled example)",
    )
    parser.add_argument(
        "--step",
        type=options.whole(minimum=1, maximum=86400),
        default=60,
        help="bucket width in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup-days",
        type=options.number(minimum=0, maximum=3650),
        default=None,
        help="history before the replayed span (default: 7 days, at most half of the recorded data)",
    )
    parser.add_argument("--out", type=options.output_dir, default=Path("out/backtest"))
    options.add_tradeoff_option(parser, what="also sweep these forecast quantiles")
    parser.add_argument(
        "--nodes-per-replica",
        type=options.number(minimum=0, maximum=1000, exclusive_minimum=True),
        default=1.0,
        help="GPU nodes one replica occupies",
    )
    parser.add_argument(
        "--saturation-rps",
        type=options.number(minimum=0, maximum=1e9, exclusive_minimum=True),
        default=None,
        help="replay latency model saturation (default perReplica/0.9)",
    )
    parser.add_argument("--latency-curve", choices=("batching", "flat"), default="batching")
    parser.add_argument("--seed", type=options.whole(minimum=0, maximum=2**32 - 1), default=7)
    options.add_prometheus_options(parser, timeout=DEFAULT_TIMEOUT_SECONDS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-plot", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run ``autoscaler backtest`` with parsed arguments; prints to stdout, logs to stderr.

    Returns:
        0 (the exit code).
    """
    from autoscaler.logs import configure

    configure(fmt="console", level="error")
    tradeoff = options.tradeoff_quantiles(args)
    opts = BacktestOptions(
        prometheus=options.prometheus_connection(args),
        target=args.target,
        since=args.since,
        until=args.until,
        policy=args.policy,
        running_policy=args.running_policy,
        step=args.step,
        warmup_days=args.warmup_days,
        out=args.out,
        tradeoff=tradeoff,
        nodes_per_replica=args.nodes_per_replica,
        saturation_rps=args.saturation_rps,
        latency_curve=args.latency_curve,
        seed=args.seed,
        plot=not args.no_plot,
        progress=not args.no_progress and not args.json,
        json=args.json,
    )
    options.named("--policy", lambda: backtest(opts))
    return 0
