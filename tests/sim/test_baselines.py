"""The baselines a platform team could run instead, and the verdict and cost split that compare them."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.offline.sim.adapters import TrafficRecord
from autoscaler.offline.sim.baselines import ConcurrencyHPA, NaiveSeasonal
from autoscaler.offline.sim.cluster import SERVING, ClusterPhases, SimCluster
from autoscaler.offline.sim.engine import ATTRIBUTION, Scenario, pareto_verdict, run_policy
from autoscaler.offline.sim.latency import LatencyModel
from autoscaler.offline.traces import LoadTrace
from autoscaler.policy.schema import Target
from models.series import Series

START = 1_700_000_000.0
DAY = 86400.0


def world(steps: int, *, replicas: int) -> tuple[SimCluster, TrafficRecord]:
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=replicas, now=START)
    traffic = TrafficRecord(
        start=START, dt=10.0, arrivals=np.zeros(steps), latency=np.zeros(steps), queue=np.zeros(steps)
    )
    return sim, traffic


def test_concurrency_hpa_sizes_for_20_in_flight_per_replica() -> None:
    """200 requests in flight -> 10 replicas; within 10 % of the target it keeps the scale."""
    sim, traffic = world(6, replicas=4)
    traffic.concurrency[:6] = 200.0
    traffic.count = 6
    hpa = ConcurrencyHPA(cluster=sim, traffic=traffic, min_replicas=1, max_replicas=50)
    hpa.tick(START + 60.0)
    assert sim.desired[SERVING] == 8  # scale-up limited to max(+4, +100 %) per 15 s
    hpa.tick(START + 80.0)
    assert sim.desired[SERVING] == 10
    traffic.concurrency[5] = 210.0  # 21 per replica: inside the tolerance
    hpa.tick(START + 100.0)
    assert sim.desired[SERVING] == 10


def test_naive_seasonal_uses_yesterday_over_the_lead_time_and_never_less_than_now() -> None:
    """Yesterday's demand over the next lead time, sized at 200 req/s per replica, floored by the last 10 min."""
    sim, traffic = world(60, replicas=1)
    history_values = np.full(144, 100.0)
    history_values[1:3] = 1000.0  # yesterday 10-30 min after this hour: 1000 req/s
    history = Series(start=START - DAY, step=600.0, values=history_values)
    baseline = NaiveSeasonal(
        cluster=sim, traffic=traffic, history=history, lead_seconds=1000.0, saturation_rps=250.0,
        min_replicas=1, max_replicas=50,
    )
    baseline.tick(START)
    assert sim.desired[SERVING] == 5  # ceil(1000 / 200)
    traffic.arrivals[:30] = 1500.0 * 10  # the last minutes at 1500 req/s
    traffic.count = 30
    baseline.tick(START + 300.0)
    assert sim.desired[SERVING] == 8  # ceil(1500 / 200), above yesterday's 1000


def test_pareto_verdict_needs_both_axes() -> None:
    rows = [
        {"policy": "predictive", "slo_attainment_pct": 99.6, "gpu_node_hours": 100.0},
        {"policy": "hpa", "slo_attainment_pct": 90.0, "gpu_node_hours": 200.0},
        {"policy": "hpa-concurrency", "slo_attainment_pct": 99.7, "gpu_node_hours": 150.0},
        {"policy": "naive-seasonal", "slo_attainment_pct": 99.0, "gpu_node_hours": 90.0},
    ]
    assert pareto_verdict(rows) == {"hpa": True, "hpa-concurrency": False, "naive-seasonal": False}
    both_perfect = [{**rows[0], "slo_attainment_pct": 100.0}, {**rows[3], "slo_attainment_pct": 100.0,
                                                                "gpu_node_hours": 120.0}]
    assert pareto_verdict(both_perfect) == {"naive-seasonal": True}


@pytest.mark.parametrize("name", ["predictive", "hpa", "hpa-concurrency", "naive-seasonal", "oracle"])
def test_the_cost_split_adds_up_to_the_node_hours(name: str) -> None:
    """needed + headroom + holds + placeholders + booting + emptied = GPU node-hours, for every policy."""
    t = np.arange(int(1.5 * DAY / 60))
    rates = 600 + 400 * np.sin(2 * np.pi * t * 60 / DAY)
    trace = LoadTrace(name="sine", start=START, step=60.0, rates=rates, source="synthetic")
    scenario = Scenario(trace=trace, warmup_seconds=DAY, latency=LatencyModel.preset("flat"), slo_seconds=1.0)
    result = run_policy(name, scenario, Target(namespace="llm", deployment="vllm"))
    assert set(result.attribution) == set(ATTRIBUTION)
    assert sum(result.attribution.values()) == pytest.approx(result.gpu_node_hours, rel=0.01)
    assert result.attribution["needed"] > 0
