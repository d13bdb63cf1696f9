"""Measured cold start: lead times learned from kube-state-metrics pod timestamps.

Why: the controller sizes capacity over these lead times, so the P90s must equal the
hand-computed values, pods must be classified honestly (waited for a node / warm / fresh),
and nothing may be returned until enough start-ups were seen.
"""

from __future__ import annotations

import time

import pytest

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.adapters.prometheus.leadtimes import PodStart, learn
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.policy.schema import ColdStart, Target

from .conftest import Live, p90, pod_name


def _start(pod: str, node: str | None, created: float, wait: float, startup: float) -> PodStart:
    return PodStart("llm", pod, node, created, created + wait, created + wait + startup)


def test_learn_needs_min_samples_then_mixes_policy_for_unmeasured_fields() -> None:
    """Below learnMinSamples nothing is returned; fields without own samples keep the policy value."""
    target = Target(namespace="llm", deployment="v", cold_start=ColdStart(learn_min_samples=3, model_load_seconds=200))
    fresh_only = [_start(pod_name("v", f"p{i}aaa"), f"n{i}", 1000.0 + i, 2.0, 100.0 + 10 * i) for i in range(5)]
    few = learn(target, fresh_only[:2], since=0.0, wait_threshold=30.0, placeholder_suffix="-capacity")
    assert few["lead_times"] is None and few["samples"] == 2

    learned = learn(target, fresh_only, since=0.0, wait_threshold=30.0, placeholder_suffix="-capacity")
    policy = LeadTimes.from_policy(target.cold_start)
    startups = [100.0, 110.0, 120.0, 130.0, 140.0]
    # no pod waited: node_ready stays the policy's; no warm start-up: the P90 over all start-ups
    # bounds the warm start from above, so it may only lower the policy's 200 s
    assert learned["lead_times"] == LeadTimes(
        node_ready=policy.node_ready,
        pod_start_warm=min(p90(startups), 200.0),
        pod_start_fresh=p90(startups),
        source="measured+policy",
    )
    assert learned["from_policy"] == ["node_ready", "pod_start_warm"]
    low_policy = Target(namespace="llm", deployment="v", cold_start=ColdStart(learn_min_samples=3))
    lowered = learn(low_policy, fresh_only, since=0.0, wait_threshold=30.0, placeholder_suffix="-capacity")
    assert lowered["lead_times"].pod_start_warm == 60.0  # policy modelLoadSeconds, already below the bound


#: Hand-designed start-ups of llm/vllm-lt: (key, node, created offset, wait, startup).
LT_PODS = [
    ("p1aaa", "n1", -5000.0, 400.0, 300.0),  # waited for a new node: full path
    ("p2aaa", "n2", -4800.0, 500.0, 320.0),
    ("p3aaa", "n3", -4600.0, 600.0, 340.0),
    ("p4aaa", "n1", -3000.0, 2.0, 60.0),  # n1 already ran a vllm-lt pod: warm
    ("p5aaa", "n1", -2900.0, 3.0, 70.0),
    ("p6aaa", "n2", -2800.0, 1.0, 80.0),
    ("p7aaa", "n4", -2000.0, 2.0, 250.0),  # ready node without the image: fresh
    ("p8aaa", "n5", -1900.0, 2.0, 260.0),
    ("p9aaa", "n6", -1500.0, 1.0, 90.0),  # the placeholder pulled the image on n6: warm
]


@pytest.mark.prometheus
def test_measured_lead_times_from_kube_state_metrics(live: Live) -> None:
    """Live pod timestamps give P90 node wait, warm and fresh start-ups equal to hand-computed values."""
    t0 = time.time()
    ksm = live.ksm

    def pod(name: str, node: str | None, created: float, wait: float, startup: float) -> None:
        ksm.set_pod(
            "llm",
            name,
            node=node,
            created=created,
            scheduled_time=created + wait,
            ready_time=created + wait + startup,
        )

    for key, node, offset, wait, startup in LT_PODS:
        pod(pod_name("vllm-lt", key), node, t0 + offset, wait, startup)
    pod("vllm-lt-capacity-6c7d8e9f0-ph001", "n6", t0 - 6000, 1.0, 99.0)  # pulled the image on n6
    pod(pod_name("vllm-other", "o1aaa"), "n4", t0 - 6000, 10.0, 190.0)  # another image: n4 stays cold
    pod(pod_name("vllm-lt", "old01"), "n1", t0 - 8 * 86400, 5.0, 45.0)  # created outside the 7-day look-back
    ksm.set_pod("llm", pod_name("vllm-lt", "pend1"), phase="Pending", created=t0 - 100, unschedulable=True)
    for i in range(2):
        pod(pod_name("vllm-few", f"f{i}aaa"), "n9", t0 - 900, 100.0, 100.0)
    live.server.wait_for_scrape("ksm", after=time.time())
    now = time.time()  # query after the scrape that holds the pods

    source = PrometheusSource(live.server.url, lead_time_refresh_seconds=0.0)
    cold = ColdStart(learn_min_samples=3)
    target = Target(namespace="llm", deployment="vllm-lt", cold_start=cold)
    few = Target(namespace="llm", deployment="vllm-few", cold_start=ColdStart(learn_min_samples=5))
    source.observe([target, few], now)  # the source learns for every observed target at once
    measured = source.lead_times(target, now)

    waits = [w for _, _, _, w, _ in LT_PODS if w > 30]
    warm = [s for k, _, _, w, s in LT_PODS if k in ("p4aaa", "p5aaa", "p6aaa", "p9aaa")]
    fresh = [s for k, _, _, w, s in LT_PODS if k in ("p1aaa", "p2aaa", "p3aaa", "p7aaa", "p8aaa")]
    assert (p90(waits), p90(warm), p90(fresh)) == (580.0, 87.0, 332.0)
    assert measured is not None
    assert measured.node_ready == pytest.approx(p90(waits))
    assert measured.pod_start_warm == pytest.approx(p90(warm))
    assert measured.pod_start_fresh == pytest.approx(p90(fresh))
    assert measured.source == "measured"
    learned = source.learned()
    assert learned[target.key]["samples"] == 9 and learned[target.key]["waited"] == 3
    assert learned[target.key]["lead_times"]["node_ready"] == pytest.approx(580.0)
    assert source.lead_times(few, now) is None
    assert learned[few.key]["samples"] == 2 and learned[few.key]["lead_times"] is None
    off = Target(namespace="llm", deployment="vllm-lt", cold_start=ColdStart(learn_min_samples=3, learn=False))
    assert source.lead_times(off, now) is None  # learning disabled: the policy's phases are used


@pytest.mark.prometheus
def test_lead_times_are_cached_between_refreshes(live: Live) -> None:
    """Lead times are re-queried at most once per refresh interval; a policy change re-learns from the cache."""
    source = PrometheusSource(live.server.url, lead_time_refresh_seconds=300.0)
    target = Target(namespace="llm", deployment="vllm-lt", cold_start=ColdStart(learn_min_samples=3))
    now = time.time()
    source.lead_times(target, now)
    assert source.client.queries == 4
    source.lead_times(target, now + 60)
    stricter = Target(namespace="llm", deployment="vllm-lt", cold_start=ColdStart(learn_min_samples=10_000))
    assert source.lead_times(stricter, now + 61) is None  # re-learned from the cached start-ups
    assert source.learned()[target.key]["min_samples"] == 10_000
    assert source.client.queries == 4
    source.lead_times(target, now + 301)
    assert source.client.queries == 8
