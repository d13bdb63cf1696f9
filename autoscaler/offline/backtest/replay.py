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

What the "recorded" row means and assumes is in :mod:`autoscaler.offline.backtest.recorded`.

The replays start from the recorded replicas, use the recorded load (gaps bridged by
linear interpolation, never zero) with the simulator's sub-minute burst noise, a simulated
cluster whose cold start is the measured one (P90 pod start-ups from kube-state-metrics)
or else the running policy's phases, and a latency model whose saturation is
``perReplica / 0.9`` (``--saturation-rps``) with the SLO at saturation.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.adapters.prometheus import PrometheusConnection
from autoscaler.adapters.prometheus.promql import duration_seconds
from autoscaler.cli import options
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.errors import ConfigError
from autoscaler.offline.backtest.meta import backtest_meta
from autoscaler.offline.backtest.recorded import Recorded, fetch_recorded, hold, iso, recorded_row
from autoscaler.offline.backtest.report import BacktestReport, print_summary, write_outputs
from autoscaler.offline.experiment import Experiment, Results, Run, Sweep
from autoscaler.offline.experiment import run as run_experiment
from autoscaler.offline.sim.cluster import ClusterPhases
from autoscaler.offline.sim.engine import PolicyResult, Scenario
from autoscaler.offline.sim.latency import LatencyModel
from autoscaler.offline.traces import LoadTrace
from autoscaler.policy.schema import ColdStart, Target

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


def backtest(options: BacktestOptions, *, out: Any = None) -> BacktestReport:
    """Fetch the history, replay it under each policy, print the table and write the report.

    Returns:
        The report (rows in table order: recorded, predictive, candidate, hpa, oracle).

    Raises:
        ValueError: bad options (target, window, quantiles).
        MetricsEmpty: the target has no recorded load in the window.
        MetricsUnavailable: Prometheus could not be reached.
    """
    out = out if out is not None else sys.stdout
    started = time.perf_counter()
    key, policies = check_options(options)
    window = Window.of(options)
    recorded = fetch(options, policies.running, window)
    fetched = time.perf_counter() - started
    warmup_buckets = warmup_of(options, recorded, key=key, window=window)
    scenario = replay_scenario(options, recorded, policies.running, key=key, warmup_buckets=warmup_buckets)
    initial = initial_replicas(recorded, warmup_buckets)
    experiment = replay_experiment(options, policies, scenario, initial_replicas=initial)
    results = run_experiment(experiment, progress=options.progress, desc="replaying")
    rows = table_rows(
        options, recorded, results, begin=warmup_buckets, slo_seconds=policies.running.slo.latency_seconds
    )
    elapsed = time.perf_counter() - started
    meta = backtest_meta(
        options,
        key=key,
        policies=policies,
        recorded=recorded,
        experiment=experiment,
        warmup_buckets=warmup_buckets,
        window=window,
        fetch_seconds=fetched,
        wall_seconds=elapsed,
    )
    report = BacktestReport(
        meta=meta,
        rows=rows,
        results=results.results,
        recorded=recorded,
        scenario=scenario,
        tradeoff=results.tradeoff_rows(),
    )
    write_outputs(report, options.out, plot=options.plot)
    print_summary(report, out, as_json=options.json, wall_seconds=elapsed)
    return report


def check_options(options: BacktestOptions) -> tuple[str, Policies]:
    """Validate the options and resolve the policies: ``(target key, policies)``.

    Raises:
        ValueError: a bad option, or a target missing from a policy file.
        PolicyRejected: a policy file is invalid.
    """
    key = parse_target(options.target)
    if options.step < 1 or options.step != int(options.step):
        raise ValueError(f"--step must be whole seconds >= 1, got {options.step}")
    if options.warmup_days is not None and not options.warmup_days >= 0:
        raise ValueError(f"--warmup-days must be >= 0, got {options.warmup_days}")
    if not options.nodes_per_replica > 0:
        raise ValueError(f"--nodes-per-replica must be > 0, got {options.nodes_per_replica}")
    policies = resolve_policies(key, candidate=options.policy, running=options.running_policy)
    for target in (policies.running, policies.candidate):
        # The replay's history is averaged into forecast buckets; a bucket must hold whole steps.
        if target is not None and target.forecast.resolution_seconds % options.step:
            raise ValueError(
                f"--step {options.step} must divide forecast.resolutionSeconds "
                f"({target.forecast.resolution_seconds} s) of the replayed policies"
            )
    return key, policies


@dataclass(frozen=True)
class Window:
    """The asked-for window ``[start, end)`` (unix seconds) and its length."""

    start: float
    end: float
    since: float

    @classmethod
    def of(cls, options: BacktestOptions) -> Window:
        """``--since`` before ``--until`` (default: now).

        Raises:
            ConfigError: the window reaches back before 1970.
        """
        since = duration_seconds(options.since)
        end = options.until if options.until is not None else time.time()
        start = end - since
        if start < 0:
            raise ConfigError("--since", f"{options.since} before {iso(end)} reaches back before 1970")
        return cls(start=start, end=end, since=since)


def fetch(options: BacktestOptions, running: Target, window: Window) -> Recorded:
    """Connect to Prometheus and fetch the running target's history over the window."""
    from autoscaler.adapters.prometheus import PrometheusSource

    source = PrometheusSource.connect(options.prometheus, lead_time_lookback_seconds=window.since)
    try:
        return fetch_recorded(source, running, start=window.start, end=window.end, step=options.step)
    finally:
        source.close()


def warmup_of(options: BacktestOptions, recorded: Recorded, *, key: str, window: Window) -> int:
    """Buckets of warm-up before the replayed span.

    Raises:
        ValueError: less than :data:`MIN_EVALUATED_SECONDS` are left to replay.
    """
    span = recorded.size * recorded.step
    warmup = min(DEFAULT_WARMUP_SECONDS, span / 2) if options.warmup_days is None else options.warmup_days * 86400.0
    warmup_buckets = round(warmup / recorded.step)
    evaluated = span - warmup_buckets * recorded.step
    if evaluated < MIN_EVALUATED_SECONDS:
        raise ValueError(
            f"{span / 3600:.1f} h of recorded load for {key} between {iso(window.start)} and {iso(window.end)} "
            f"leave {max(0.0, evaluated) / 3600:.1f} h to replay after {warmup / 3600:.1f} h of warm-up; "
            f"at least {MIN_EVALUATED_SECONDS / 3600:.0f} h are needed"
        )
    return warmup_buckets


def replay_scenario(
    options: BacktestOptions, recorded: Recorded, running: Target, *, key: str, warmup_buckets: int
) -> Scenario:
    """The recorded load in a simulated cluster with the measured (else the policy's) cold start."""
    trace = LoadTrace(
        name=key,
        start=recorded.start,
        step=recorded.step,
        rates=recorded.load,
        source=f"recorded in Prometheus {options.prometheus.url}",
    )
    return Scenario(
        trace=trace,
        warmup_seconds=warmup_buckets * recorded.step,
        phases=cluster_phases(recorded.lead_times, running.cold_start),
        latency=latency_model(running, saturation_rps=options.saturation_rps, curve=options.latency_curve),
        noise_sigma=options.noise_sigma,
        seed=options.seed,
    )


def initial_replicas(recorded: Recorded, warmup_buckets: int) -> int | None:
    """The recorded replicas when the replayed span starts (held across a gap); None if never recorded."""
    held = hold(recorded.replicas()[: warmup_buckets + 1])
    return None if held is None else round(float(held[warmup_buckets]))


def replay_experiment(
    options: BacktestOptions, policies: Policies, scenario: Scenario, *, initial_replicas: int | None
) -> Experiment:
    """The running policy, the candidate, the HPA and the oracle; the sweep on the candidate (else the running one)."""
    running, loop = policies.running, policies.running_loop
    runs = [Run("predictive", running, loop, "predictive")]
    if policies.candidate is not None:
        runs.append(Run("predictive", policies.candidate, policies.candidate_loop, "candidate"))
    runs += [Run("hpa", running, loop, "hpa"), Run("oracle", running, loop, "oracle")]
    sweep = None
    if options.tradeoff:
        has_candidate = policies.candidate is not None
        sweep = Sweep(
            target=policies.candidate or running,
            quantiles=options.tradeoff,
            loop_interval=policies.candidate_loop if has_candidate else loop,
            reuse="candidate" if has_candidate else "predictive",
        )
    return Experiment(scenario=scenario, runs=tuple(runs), sweep=sweep, initial_replicas=initial_replicas)


def table_rows(
    options: BacktestOptions, recorded: Recorded, results: Results, *, begin: int, slo_seconds: float
) -> list[dict[str, Any]]:
    """The recorded row, then one row per replayed policy, node-hours relative to the oracle's."""
    oracle_hours = results.by_name()["oracle"].gpu_node_hours
    nodes = options.nodes_per_replica
    rec_row = recorded_row(recorded, begin=begin, slo_seconds=slo_seconds, nodes_per_replica=nodes)
    if rec_row["gpu_node_hours"] is not None and oracle_hours:
        rec_row["vs_oracle"] = round(rec_row["gpu_node_hours"] / oracle_hours, 3)
    dt = results.experiment.scenario.dt
    return [rec_row] + [
        simulated_row(r, oracle_hours=oracle_hours, dt=dt, nodes_per_replica=nodes) for r in results.results
    ]
