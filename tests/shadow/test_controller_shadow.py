"""Shadow scoring inside the controller, on the simulator's ports (virtual clock, no IO).

A dry-run controller watches a day of traffic: every forecast is scored as its buckets
complete, the scores are exported as metrics, and the under-provisioned minutes of the
setup in place are compared with ours. When live traffic leaves the history behind, the
automatic selection drops the model that keeps under-forecasting.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.forecasting.shadow import TargetShadow
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Forecast, Policy, Target
from autoscaler.runtime.controller import Controller, CycleResult
from autoscaler.runtime.telemetry import DEPRECATED, Telemetry
from models.series import Series

DAY = 86400.0
START = 1_700_006_400.0
DT = 10.0


class Recorder:
    """Collects the controller's structured log events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))


def daily(t: np.ndarray) -> np.ndarray:
    """Requests/s of a diurnal service: 300 at night, 900 at the afternoon peak."""
    return 600 - 300 * np.cos(2 * np.pi * (t % DAY) / DAY)


def world(
    *, live_factor: float, forecast: Forecast, serving: int, hours: float
) -> tuple[Controller, VirtualClock, Recorder, int]:
    rng = np.random.default_rng(3)
    hist_t = START - 7 * DAY + np.arange(7 * 288) * 300.0
    history = Series(start=hist_t[0], step=300.0, values=daily(hist_t) * rng.normal(1, 0.02, hist_t.size))
    steps = int(hours * 3600 / DT) + 10
    live_t = START + np.arange(steps) * DT
    rate = daily(live_t) * live_factor * rng.normal(1, 0.02, steps)
    # The SLO (200 ms) is missed whenever the load exceeds the replicas' capacity (200/s each).
    latency = np.where(rate > serving * 200.0, 0.4, 0.15)
    traffic = TrafficRecord(
        start=START, dt=DT, arrivals=rate * DT, latency=latency, queue=np.zeros(steps), count=steps
    )
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=serving, now=START)
    clock = VirtualClock(START)
    target = Target(namespace="llm", deployment="chat", mode="dry-run", forecast=forecast)
    log = Recorder()
    controller = Controller(
        policy=Policy(targets=(target,)),
        metrics=SimMetrics(traffic=traffic, history=history),
        cluster=SimClusterPort(sim, clock),
        clock=clock,
        log=log,
    )
    return controller, clock, log, int(hours * 3600 / 30)


def run(controller: Controller, clock: VirtualClock, cycles: int) -> list[CycleResult]:
    results = []
    for _ in range(cycles):
        results.append(controller.reconcile_once())
        clock.time += 30.0
    return results


def samples(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(telemetry.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_a_dry_run_day_is_scored_and_exported() -> None:
    forecast = dataclasses.replace(Forecast(), model="holt_winters")
    controller, clock, _, cycles = world(live_factor=1.0, forecast=forecast, serving=3, hours=24)
    run(controller, clock, cycles)
    shadow = controller.shadow("llm/chat")
    assert shadow is not None
    (score,) = shadow.forecasts.scores().values()
    # A well-specified model on its own traffic: calibrated P90, small losses.
    assert score.points > 1000
    assert 0.8 <= score.coverage <= 1.0
    assert 0 < score.pinball_median < 0.05 * 600
    assert 0 < score.pinball_upper < 0.05 * 600
    # 3 replicas of 200/s stay, dry-run: the setup in place is short whenever load > 600/s
    # (half of the day); our decisions, a pod start-up ahead, almost never.
    totals = shadow.provisioning.totals()
    assert totals.observed_minutes > 0.95 * 24 * 60 - 60
    assert 0.4 < totals.current_under_minutes / totals.observed_minutes < 0.6
    assert totals.predictive_under_minutes < 0.02 * totals.observed_minutes

    telemetry = Telemetry()
    telemetry.record_shadow("llm/chat", shadow)
    coverage = samples(telemetry, "autoscaler_forecast_coverage_ratio")
    assert list(coverage.values()) == [score.coverage]
    pinball = samples(telemetry, "autoscaler_forecast_pinball_loss")
    assert {dict(k)["quantile"] for k in pinball} == {"0.9", "0.5"}
    minutes = {dict(k)["setup"]: v for k, v in samples(telemetry, "autoscaler_underprovisioned_minutes").items()}
    assert minutes == {"current": totals.current_under_minutes, "predictive": totals.predictive_under_minutes}
    assert_renamed_series(telemetry, shadow)


def assert_renamed_series(telemetry: Telemetry, shadow: Any) -> None:
    """Every renamed series: a counter in seconds (or points) equal to its deprecated gauge, never lowered."""
    families = {f.name: f.type for f in text_string_to_metric_families(telemetry.render().decode())}
    renamed = {
        "autoscaler_underprovisioned_minutes": "autoscaler_underprovisioned_seconds_total",
        "autoscaler_forecast_under_forecast_minutes": "autoscaler_forecast_under_forecast_seconds_total",
        "autoscaler_shadow_observed_minutes": "autoscaler_shadow_observed_seconds_total",
    }
    assert {**renamed, "autoscaler_forecast_scored_points": "autoscaler_forecast_scored_points_total"} == DEPRECATED
    for old, new in renamed.items():
        assert families[old] == "gauge" and families[new.removesuffix("_total")] == "counter"
        assert samples(telemetry, new) == {k: 60.0 * v for k, v in samples(telemetry, old).items()}, new
        assert samples(telemetry, new)
    points = samples(telemetry, "autoscaler_forecast_scored_points_total")
    assert families["autoscaler_forecast_scored_points"] == "counter"
    assert {dict(k)["model"]: v for k, v in points.items()} == dict(shadow.forecasts.total_points)
    before = {new: samples(telemetry, new) for new in (*renamed.values(), "autoscaler_forecast_scored_points_total")}
    telemetry.record_shadow("llm/chat", shadow)  # exported again in the same cycle: nothing added
    assert {new: samples(telemetry, new) for new in before} == before
    fresh = TargetShadow(quantile=0.9, step=300.0, lead_seconds=900.0, max_gap_seconds=60.0)
    telemetry.record_shadow("llm/chat", fresh)  # the scorer restarted (policy change): no counter goes down
    for new, values in before.items():
        after = samples(telemetry, new)
        assert all(after[k] >= v for k, v in values.items()), new


def test_a_model_that_keeps_under_forecasting_is_demoted() -> None:
    # Live traffic runs at 1.6x the history: every history-trained model under-forecasts
    # until refits catch up. With the trend guard off, coverage collapses and 'auto'
    # drops the model it serves and reselects among the others.
    forecast = dataclasses.replace(
        Forecast(), model="auto", candidates=("seasonal_naive", "holt_winters"), trend_guard_points=0
    )
    controller, clock, log, cycles = world(live_factor=1.6, forecast=forecast, serving=8, hours=6)
    results = run(controller, clock, cycles)
    demoted = [r.results[0].demoted_model for r in results]
    dropped = [name for name in demoted if name is not None]
    assert dropped, "no model was demoted"
    events = [kw for event, kw in log.events if event == "model_demoted"]
    assert [e["model"] for e in events] == dropped
    assert all(e["coverage"] < 0.8 and e["points"] >= 96 for e in events)
    telemetry = Telemetry()
    for cycle in results:
        telemetry.record_cycle(cycle, started=0.0, scheduled=None)
    counted = samples(telemetry, "autoscaler_forecast_model_demotions_total")
    assert sum(counted.values()) == len(dropped)
    # The demoted model is ranked last at the reselection that follows.
    first = results[demoted.index(dropped[0]) + 1 :]
    served = {r.results[0].decision.forecast_model for r in first if r.results[0].decision is not None}
    assert any(dropped[0] not in (m or "") for m in served)
