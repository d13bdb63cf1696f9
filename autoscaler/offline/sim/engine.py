"""Run one scenario under each autoscaling policy and collect comparable results.

Every policy sees the same load (trace + seeded burst noise), the same cluster physics
and the same latency model; only the thing that scales differs. The predictive policy and
the oracle are the real :class:`~autoscaler.runtime.controller.Controller` behind the simulator's
ports; the HPA and static baselines are in :mod:`autoscaler.offline.sim.baselines`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from autoscaler.core.capacity import replicas_for
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.baselines import ConcurrencyHPA, NaiveSeasonal, PerfectForecast, ReactiveHPA
from autoscaler.offline.sim.cluster import PLACEHOLDER, SERVING, ClusterPhases, SimCluster
from autoscaler.offline.sim.latency import LatencyModel
from autoscaler.offline.traces import LoadTrace
from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime.controller import Controller, TargetResult
from models.evaluation import pinball_loss
from models.series import Series

POLICIES = ("predictive", "hpa", "hpa-concurrency", "naive-seasonal", "oracle", "static")
#: What a platform team can run instead of the predictive controller: it must beat each
#: of them on SLO attainment and GPU node-hours at once (see `pareto_verdict`).
BASELINES = ("hpa", "hpa-concurrency", "naive-seasonal")
#: The scored SLO when none is given: the requirement of the setup this project
#: replaces (mean latency must not exceed one second).
DEFAULT_SLO_SECONDS = 1.0
#: Where node-hours go (see `PolicyResult.attribution`), in the order reports print them.
ATTRIBUTION = ("needed", "headroom", "holds", "placeholders", "booting", "emptied")


@dataclass(frozen=True)
class Scenario:
    """A load trace and the world it is replayed in.

    ``slo_seconds`` is the latency every policy is scored against (``None``: the target's
    own ``slo.latencySeconds``); ``hpa_target_seconds`` is the seed HPA's scaling target
    (``None``: the same as the SLO).
    """

    trace: LoadTrace
    warmup_seconds: float
    dt: float = 10.0
    phases: ClusterPhases = field(default_factory=ClusterPhases)
    latency: LatencyModel = field(default_factory=LatencyModel)
    noise_sigma: float = 0.08
    noise_correlation_seconds: float = 60.0
    seed: int = 7
    slo_seconds: float | None = None
    hpa_target_seconds: float | None = None

    @property
    def start(self) -> float:
        """Simulation start (unix seconds): after the warm-up history."""
        return self.trace.start + self.warmup_seconds

    @property
    def end(self) -> float:
        """Simulation end."""
        return self.trace.start + self.trace.duration

    def load(self) -> NDArray[np.float64]:
        """Arrival rate per step over the simulated span: trace x AR(1) log-normal noise."""
        fine = self.trace.fill_gaps().resample(self.dt)
        first = round((self.start - fine.start) / self.dt)
        rates = np.asarray(fine.rates[first:], dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        phi = math.exp(-self.dt / self.noise_correlation_seconds)
        shocks = rng.normal(0.0, self.noise_sigma * math.sqrt(1 - phi * phi), size=rates.size)
        noise = np.empty_like(rates)
        level = 0.0
        for i, shock in enumerate(shocks):
            level = phi * level + shock
            noise[i] = level
        return np.maximum(rates * np.exp(noise - self.noise_sigma**2 / 2), 0.0)

    def history(self) -> Series:
        """What Prometheus would hold before the simulation starts (the trace's warm-up)."""
        filled = self.trace.fill_gaps()
        n = round(self.warmup_seconds / filled.step)
        return Series(start=filled.start, step=filled.step, values=filled.rates[:n])


@dataclass
class PolicyResult:
    """Outcome of one policy on one scenario.

    ``attribution`` splits the GPU node-hours by what they were spent on: ``needed`` (the
    serving replicas the load needed at the true capacity), ``headroom`` (serving
    replicas the sizing asked for beyond that: forecast quantile, SLO guard), ``holds``
    (serving replicas kept past the sizing: regain guard, stabilisation, rate limits,
    bounds), ``placeholders`` (GPUs held by placeholder pods), ``booting`` (nodes not yet
    schedulable) and ``emptied`` (free GPUs on ready nodes, waiting for removal).
    """

    name: str
    requests: float
    within_slo: float
    failed: float
    gpu_node_hours: float
    serving_scale_events: int
    placeholder_scale_events: int
    p95_latency: float
    preemptions: int
    series: dict[str, NDArray[np.float64]]
    forecast_error: dict[str, float] = field(default_factory=dict)
    attribution: dict[str, float] = field(default_factory=dict)

    @property
    def slo_attainment(self) -> float:
        """Share of requests served within the SLO (failed requests count as missed)."""
        return self.within_slo / self.requests if self.requests else 1.0

    def summary(self, oracle_hours: float | None) -> dict[str, Any]:
        """The row printed in the results table and written to JSON."""
        return {
            "policy": self.name,
            "slo_attainment_pct": round(100 * self.slo_attainment, 3),
            "failed_requests": round(self.failed),
            "gpu_node_hours": round(self.gpu_node_hours, 2),
            "vs_oracle": round(self.gpu_node_hours / oracle_hours, 3) if oracle_hours else None,
            "scale_events": self.serving_scale_events,
            "placeholder_events": self.placeholder_scale_events,
            "p95_latency_ms": round(1000 * self.p95_latency, 1),
            "preemptions": self.preemptions,
            **{f"forecast_{k}": round(v, 4) for k, v in self.forecast_error.items()},
            **{f"hours_{k}": round(v, 2) for k, v in self.attribution.items()},
        }


class _Autoscaler(Protocol):
    interval: float

    def tick(self, now: float) -> None: ...


class _ControllerDriver:
    """Adapts the real controller to the engine's tick interface and records its decisions."""

    def __init__(self, controller: Controller, interval: float, record: Callable[[TargetResult], None]) -> None:
        self.controller = controller
        self.interval = interval
        #: Called with each target's result after every cycle.
        self.record = record
        self.forecast_points: list[tuple[float, float, float]] = []
        #: The latest decision's serving recommendation (sizing before holds), for the
        #: cost attribution; ``None`` before the first decision.
        self.recommendation: int | None = None

    def tick(self, now: float) -> None:
        for result in self.controller.reconcile_once(now).results:
            self.record(result)


def simulation_policy(target: Target, phases: ClusterPhases) -> Target:
    """The target with the simulated cluster's cold-start phases and enforce mode."""
    cold = dataclasses.replace(
        target.cold_start,
        node_provision_seconds=phases.node_provision,
        node_services_seconds=phases.node_services,
        gpu_driver_seconds=phases.gpu_driver,
        image_pull_seconds=phases.image_pull,
        model_load_seconds=phases.model_load,
        cluster_autoscaler_delay_seconds=phases.scan_interval,
    )
    return dataclasses.replace(target, cold_start=cold, mode="enforce")


def oracle_policy(target: Target, latency: LatencyModel) -> Target:
    """The oracle: true capacity at the SLO, no stabilisation or rate limits."""
    scaling = dataclasses.replace(
        target.scaling,
        scale_down_stabilization_seconds=0.0,
        scale_up=dataclasses.replace(target.scaling.scale_up, max_pods=100000),
        scale_down=dataclasses.replace(target.scaling.scale_down, max_pods=100000, max_percent=100.0),
    )
    capacity = dataclasses.replace(
        target.capacity, per_replica=latency.capacity_at_slo(target.slo.latency_seconds), learn=False
    )
    placeholders = dataclasses.replace(target.placeholders, scale_down_stabilization_seconds=0.0)
    return dataclasses.replace(
        target,
        scaling=scaling,
        capacity=capacity,
        placeholders=placeholders,
        cold_start=dataclasses.replace(target.cold_start, learn=False),
    )


def scored_slo(scenario: Scenario, target: Target) -> float:
    """The latency the run is scored against."""
    return scenario.slo_seconds if scenario.slo_seconds is not None else target.slo.latency_seconds


def run_policy(
    name: str,
    scenario: Scenario,
    target: Target,
    *,
    loop_interval: float = 30.0,
    load: NDArray[np.float64] | None = None,
    progress: Callable[[int], None] | None = None,
    initial_replicas: int | None = None,
    label: str | None = None,
) -> PolicyResult:
    """Simulate one policy over the scenario.

    Args:
        name: One of :data:`POLICIES`.
        scenario: The trace and world.
        target: The target policy (its cold start is replaced by the simulated one).
        loop_interval: Controller loop period in seconds.
        load: Pre-computed per-step load (shared between policies of one run).
        progress: Called with the number of steps done since the last call.
        initial_replicas: Serving replicas ready at the start (a backtest starts from the
            recorded count); default: what the first step's load needs.
        label: Name of the result (e.g. ``candidate`` for a second predictive policy);
            default ``name``.

    Returns:
        The policy's results and recorded series.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    rates = scenario.load() if load is None else load
    target = simulation_policy(target, scenario.phases)
    world = _set_up(name, scenario, target, rates=rates, loop_interval=loop_interval, initial_replicas=initial_replicas)
    tally = _step_through(world, scenario, rates, slo=scored_slo(scenario, target), progress=progress)
    return _result(name, label or name, world, tally, scenario=scenario, target=target)


@dataclass
class _World:
    """One run's simulated cluster, clock and traffic, and what scales it (``None``: static)."""

    sim: SimCluster
    clock: VirtualClock
    traffic: TrafficRecord
    autoscaler: _Autoscaler | None


@dataclass
class _Tally:
    """What the step loop recorded: the per-step series, node-hour buckets and request counts."""

    rec: dict[str, NDArray[np.float64]]
    hours: dict[str, float]
    within: float
    failed: float


def _set_up(
    name: str,
    scenario: Scenario,
    target: Target,
    *,
    rates: NDArray[np.float64],
    loop_interval: float,
    initial_replicas: int | None,
) -> _World:
    """The cluster bootstrapped with the starting replicas, and the policy's autoscaler."""
    dt, start = scenario.dt, scenario.start
    steps = rates.size
    sim = SimCluster(
        phases=scenario.phases,
        placeholder_priority=target.placeholders.priority,
        max_nodes=max(50, 4 * target.scaling.max_replicas),
        placeholder_backend=target.placeholders.backend,
    )
    clock = VirtualClock(start)
    traffic = TrafficRecord(
        start=start,
        dt=dt,
        arrivals=np.zeros(steps),
        latency=np.zeros(steps),
        queue=np.zeros(steps),
        concurrency=np.zeros(steps),
    )
    per_replica = target.capacity.per_replica
    if name == "static":
        peak = float(rates.max())
        sim.bootstrap(serving=min(max(1, replicas_for(peak, per_replica)), 100000), now=start)
        return _World(sim, clock, traffic, None)
    initial = max(target.scaling.min_replicas, replicas_for(float(rates[0]), per_replica))
    if initial_replicas is not None:
        initial = max(target.scaling.min_replicas, min(target.scaling.max_replicas, initial_replicas))
    sim.bootstrap(serving=initial, now=start)
    autoscaler = _autoscaler(
        name,
        scenario=scenario,
        target=target,
        sim=sim,
        clock=clock,
        traffic=traffic,
        rates=rates,
        loop_interval=loop_interval,
    )
    return _World(sim, clock, traffic, autoscaler)


def _step_through(
    world: _World,
    scenario: Scenario,
    rates: NDArray[np.float64],
    *,
    slo: float,
    progress: Callable[[int], None] | None,
) -> _Tally:
    """Advance the cluster step by step: tick the autoscaler when due, serve the step's load, record."""
    sim, clock, traffic, autoscaler = world.sim, world.clock, world.traffic, world.autoscaler
    dt, start = scenario.dt, scenario.start
    steps = rates.size
    rec = {
        k: np.zeros(steps)
        for k in ("load", "ready", "spec", "placeholders", "nodes", "latency", "forecast_q", "forecast_mean")
    }
    rec["forecast_q"][:] = np.nan
    rec["forecast_mean"][:] = np.nan
    hours = dict.fromkeys(ATTRIBUTION, 0.0)
    true_capacity = scenario.latency.capacity_at_slo(slo) or scenario.latency.saturation_rps
    queue = 0.0
    within = failed = 0.0
    next_tick = start
    chunk = max(1, steps // 200)
    for i in range(steps):
        now = start + i * dt
        clock.time = now
        sim.advance(now)
        if autoscaler is not None and now >= next_tick:
            autoscaler.tick(now)
            next_tick = now + autoscaler.interval
            sim.advance(now)
        arrivals = float(rates[i]) * dt
        ready = sim.ready(SERVING, now)
        outcome = scenario.latency.step(arrivals=arrivals, replicas=ready, queue=queue, dt=dt)
        queue = outcome.queue
        traffic.arrivals[i], traffic.latency[i], traffic.queue[i] = arrivals, outcome.latency, queue
        traffic.concurrency[i] = outcome.concurrency
        traffic.count = i + 1
        failed += outcome.failed
        if outcome.latency <= slo + 1e-9:
            within += max(0.0, arrivals - outcome.failed)
        rec["load"][i] = rates[i]
        rec["ready"][i] = ready
        rec["spec"][i] = sim.desired[SERVING]
        rec["placeholders"][i] = sim.desired[PLACEHOLDER]
        rec["nodes"][i] = len(sim.nodes)
        rec["latency"][i] = outcome.latency
        sized = autoscaler.recommendation if isinstance(autoscaler, _ControllerDriver) else None
        _attribute(hours, sim.gpu_slots(now), load=float(rates[i]), capacity=true_capacity, sized=sized)
        if progress is not None and (i + 1) % chunk == 0:
            progress(chunk)
    if progress is not None:
        progress(steps % chunk)
    return _Tally(rec=rec, hours=hours, within=within, failed=failed)


def _result(name: str, label: str, world: _World, tally: _Tally, *, scenario: Scenario, target: Target) -> PolicyResult:
    """The run's outcome: requests, SLO, node-hours (and their split), events, the recorded series."""
    dt, start = scenario.dt, scenario.start
    rec, traffic, sim = tally.rec, world.traffic, world.sim
    if isinstance(world.autoscaler, _ControllerDriver):
        _fill_forecast_series(world.autoscaler, rec, start, dt)
    end = start + rec["load"].size * dt
    scale = dt / 3600.0 / sim.gpus_per_node
    return PolicyResult(
        name=label,
        requests=float(traffic.arrivals.sum()),
        within_slo=tally.within,
        failed=tally.failed,
        gpu_node_hours=sim.node_seconds(end) / 3600.0,
        serving_scale_events=int(np.count_nonzero(np.diff(rec["spec"]))),
        placeholder_scale_events=int(np.count_nonzero(np.diff(rec["placeholders"]))),
        p95_latency=weighted_quantile(rec["latency"], traffic.arrivals, 0.95),
        preemptions=sim.preemptions,
        series=rec,
        forecast_error=_forecast_error(rec, target.forecast.quantile) if name == "predictive" else {},
        attribution={k: v * scale for k, v in tally.hours.items()},
    )


def _attribute(
    hours: dict[str, float],
    slots: tuple[int, int, int, int],
    *,
    load: float,
    capacity: float,
    sized: int | None,
) -> None:
    """Add one step's GPUs to the attribution buckets (in GPU-steps; scaled at the end).

    Serving GPUs are split into what the load needed at the true capacity, what the
    sizing asked for beyond it (``sized``: the decision's serving recommendation; for a
    baseline without one, everything it runs) and what was kept past the sizing.
    """
    booting, free, serving, placeholder = slots
    needed = min(serving, replicas_for(load, capacity))
    asked = serving if sized is None else min(serving, max(sized, needed))
    hours["needed"] += needed
    hours["headroom"] += asked - needed
    hours["holds"] += serving - asked
    hours["placeholders"] += placeholder
    hours["booting"] += booting
    hours["emptied"] += free


def pareto_verdict(rows: Sequence[Mapping[str, Any]], *, policy: str = "predictive") -> dict[str, bool]:
    """For each baseline in the rows: does ``policy`` beat it on SLO and node-hours at once? Pure.

    Beating means a strictly higher SLO attainment (or both at 100 %) and strictly fewer
    GPU node-hours.
    """
    by_name = {row["policy"]: row for row in rows}
    ours = by_name.get(policy)
    if ours is None:
        return {}
    verdict = {}
    for name in BASELINES:
        other = by_name.get(name)
        if other is None:
            continue
        slo_ok = ours["slo_attainment_pct"] > other["slo_attainment_pct"] or (
            ours["slo_attainment_pct"] >= 100.0 and other["slo_attainment_pct"] >= 100.0
        )
        verdict[name] = bool(slo_ok and ours["gpu_node_hours"] < other["gpu_node_hours"])
    return verdict


def _autoscaler(
    name: str,
    *,
    scenario: Scenario,
    target: Target,
    sim: SimCluster,
    clock: VirtualClock,
    traffic: TrafficRecord,
    rates: NDArray[np.float64],
    loop_interval: float,
) -> _Autoscaler:
    """The thing that scales under policy ``name`` (not ``static``)."""
    min_replicas, max_replicas = max(1, target.scaling.min_replicas), target.scaling.max_replicas
    if name == "hpa":
        hpa_target = scenario.hpa_target_seconds or target.slo.latency_seconds
        return ReactiveHPA(
            cluster=sim,
            traffic=traffic,
            target_seconds=hpa_target,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
        )
    if name == "hpa-concurrency":
        return ConcurrencyHPA(cluster=sim, traffic=traffic, min_replicas=min_replicas, max_replicas=max_replicas)
    if name == "naive-seasonal":
        return NaiveSeasonal(
            cluster=sim,
            traffic=traffic,
            history=scenario.history(),
            lead_seconds=scenario.phases.total + NaiveSeasonal.interval,
            saturation_rps=scenario.latency.saturation_rps,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
        )
    return _controller_driver(
        name,
        scenario=scenario,
        target=target,
        sim=sim,
        clock=clock,
        traffic=traffic,
        rates=rates,
        loop_interval=loop_interval,
    )


def _controller_driver(
    name: str,
    *,
    scenario: Scenario,
    target: Target,
    sim: SimCluster,
    clock: VirtualClock,
    traffic: TrafficRecord,
    rates: NDArray[np.float64],
    loop_interval: float,
) -> _ControllerDriver:
    forecast_source = None
    if name == "oracle":
        target = oracle_policy(target, scenario.latency)
        oracle = PerfectForecast(start=scenario.start, dt=scenario.dt, rates=rates)
        forecast_source = lambda _t, _now: oracle  # noqa: E731 - a one-line port adapter
    policy = Policy(targets=(target,), loop_interval_seconds=loop_interval)
    metrics = SimMetrics(traffic=traffic, history=scenario.history())
    driver: _ControllerDriver

    def record(result: TargetResult) -> None:
        d = result.decision
        if d is None:
            return
        driver.recommendation = d.serving_recommendation
        if name != "predictive":
            return
        fc = controller.forecaster(target.key)
        view = fc.view(d.time)
        if view is None:
            return
        p = view.prediction
        at = d.time + d.node_horizon_seconds
        k = int((at - p.start) // p.step)
        if 0 <= k < len(p.mean):
            driver.forecast_points.append((at, float(p.quantile(target.forecast.quantile)[k]), float(p.mean[k])))

    controller = Controller(
        policy=policy,
        metrics=metrics,
        cluster=SimClusterPort(sim, clock),
        clock=clock,
        mode_override="enforce",
        forecast_source=forecast_source,
    )
    driver = _ControllerDriver(controller, loop_interval, record)
    return driver


def _fill_forecast_series(
    driver: _ControllerDriver, rec: dict[str, NDArray[np.float64]], start: float, dt: float
) -> None:
    n = rec["load"].size
    for at, q, mean in driver.forecast_points:
        i = round((at - start) / dt)
        if 0 <= i < n:
            rec["forecast_q"][i], rec["forecast_mean"][i] = q, mean
    for key in ("forecast_q", "forecast_mean"):
        series = rec[key]
        valid = np.flatnonzero(np.isfinite(series))
        if valid.size:
            idx = np.maximum.accumulate(np.where(np.isfinite(series), np.arange(n), 0))
            filled = series[idx]
            filled[: valid[0]] = np.nan
            rec[key] = filled


def _forecast_error(rec: dict[str, NDArray[np.float64]], quantile: float) -> dict[str, float]:
    """Accuracy of the forecast made one node cold start earlier, per 5-minute bucket."""
    load, fq, fm = rec["load"], rec["forecast_q"], rec["forecast_mean"]
    ok = np.isfinite(fq) & np.isfinite(fm)
    if not ok.any():
        return {}
    y, q, m = load[ok], fq[ok], fm[ok]
    return {
        "mape": float(np.mean(np.abs(m - y) / np.maximum(y, 1e-9))),
        "coverage": float(np.mean(y <= q)),
        "pinball": pinball_loss(y, q, quantile),
    }


def weighted_quantile(values: NDArray[np.float64], weights: NDArray[np.float64], q: float) -> float:
    """The ``q`` quantile of ``values`` weighted by ``weights`` (e.g. latency by requests); NaN without weight. Pure.

    The smallest value whose cumulative weight reaches ``q`` of the total (no interpolation).
    """
    if values.size == 0 or weights.sum() <= 0:
        return float("nan")
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1]))
    return float(values[order][min(idx, values.size - 1)])
