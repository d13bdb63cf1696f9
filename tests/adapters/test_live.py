"""``observe`` against live exporters scraped by a real Prometheus.

Why: the values the controller acts on must equal what vLLM, DCGM and kube-state-metrics
serve, whatever the spelling (``vllm:``/``vllm_``), cache metric name or DCGM label variant,
and every bad answer (NaN, several series, a stopped exporter) must become "unknown" with a
reason, never 0. Expected values are computed here from what the exporters serve.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.policy.schema import SLO, Capacity, Metrics, Target

from .conftest import FEED_RATE, LIVE_WINDOW, Live, assert_unknown

pytestmark = pytest.mark.prometheus


def _target(deployment: str, model: str | None = None, **kw: Any) -> Target:
    kw.setdefault("metrics", Metrics(rate_window=LIVE_WINDOW))
    return Target(namespace="llm", deployment=deployment, model_name=model, **kw)


def _bucket_quantile(q: float, bounds: tuple[float, ...], value: float) -> float:
    """histogram_quantile when every observation equals ``value``: interpolate inside its bucket."""
    upper = min(b for b in bounds if b >= value)
    lower = max((b for b in bounds if b < upper), default=0.0)
    return lower + (upper - lower) * q


def test_observe_equals_served_values_for_both_spellings_and_old_cache_name(live: Live) -> None:
    """Gauges, rates, latencies and GPU signals equal what the vllm:, vllm_ and old-name exporters serve."""
    a = _target("vllm-a", "model-a", slo=SLO(latency_quantile=0.95))
    b = _target("vllm-b", "model-b")
    c = _target("vllm-c")
    source = PrometheusSource(live.server.url)
    snap = source.observe([a, b, c], time.time())
    v = live.vllm

    for target, keys in ((a, ("a0", "a1")), (b, ("b0",)), (c, ("c0",))):
        s = snap[target.key]
        prefix = v[keys[0]].prefix
        cache = "gpu_cache_usage_perc" if target is c else "kv_cache_usage_perc"
        assert s.running == sum(v[k].value(prefix + "num_requests_running") for k in keys)
        assert s.waiting == sum(v[k].value(prefix + "num_requests_waiting") for k in keys)
        assert s.kv_cache_usage == pytest.approx(sum(v[k].value(prefix + cache) for k in keys) / len(keys))
        rate = sum(FEED_RATE[k] for k in keys)  # gauges are constant, so arrivals = completions
        assert s.load == pytest.approx(rate, rel=0.1)
        assert s.prompt_tokens_rate == pytest.approx(100 * rate, rel=0.1)
        assert s.generation_tokens_rate == pytest.approx(20 * rate, rel=0.1)
        assert s.preemption_rate == 0.0  # the counter is served and flat: a measured zero
        assert s.latency_mean == pytest.approx(1.2)
        assert s.queue_time_mean == pytest.approx(0.1)
        assert s.latency_quantile == pytest.approx(_bucket_quantile(0.95, v[keys[0]].e2e.bounds, 1.2))
        assert s.ttft_quantile == pytest.approx(_bucket_quantile(0.95, v[keys[0]].ttft.bounds, 0.2))
        assert s.newest_sample_time is not None and time.time() - s.newest_sample_time < 5
    assert snap[a.key].running == 8 and snap[a.key].kv_cache_usage == pytest.approx(0.5)

    # DCGM: a's GPUs come through exported_pod (honor_labels false), b's through pod (true)
    util = [g.util for g in live.dcgm.gpus[:2]]
    active = [g.engine_active for g in live.dcgm.gpus[:2]]
    assert snap[a.key].gpu_utilization == pytest.approx(sum(util) / 2 / 100)
    assert snap[a.key].gpu_engine_active == pytest.approx(sum(active) / 2)
    assert snap[b.key].gpu_utilization == pytest.approx(live.dcgm_honor.gpus[0].util / 100)
    assert snap[b.key].gpu_engine_active == pytest.approx(live.dcgm_honor.gpus[0].engine_active)
    assert_unknown(snap[c.key], "gpu_utilization", "gpu_engine_active", kind="metrics_empty")
    assert source.last_loop.queries == 14 and not source.last_loop.failed


def test_tokens_unit_load_is_prompt_plus_generation_rate(live: Live) -> None:
    """With capacity unit tokens, load is the prompt plus generated token rate."""
    tokens = _target("vllm-a", "model-a", capacity=Capacity(unit="tokens"))
    s = PrometheusSource(live.server.url).observe([tokens], time.time())[tokens.key]
    assert s.load is not None and s.prompt_tokens_rate is not None and s.generation_tokens_rate is not None
    assert s.load == pytest.approx(s.prompt_tokens_rate + s.generation_tokens_rate)
    assert s.load == pytest.approx(120 * (FEED_RATE["a0"] + FEED_RATE["a1"]), rel=0.1)


def test_queries_per_loop_are_the_same_for_one_and_many_targets(live: Live) -> None:
    """Observing six targets costs the same number of queries as observing one."""
    source = PrometheusSource(live.server.url)
    source.observe([_target("vllm-a")], time.time())
    one = source.last_loop.queries
    source.observe([_target(d) for d in ("vllm-a", "vllm-b", "vllm-c", "vllm-d", "vllm-e", "unknown")], time.time())
    assert source.last_loop.queries == one == 14


def test_nan_samples_are_unknown_not_zero(live: Live) -> None:
    """NaN gauges make running, KV usage and the load unknown (metrics_invalid), never 0."""
    live.vllm["d0"].set_state(running=math.nan, kv_cache=math.nan)
    live.server.wait_for_scrape("vllm", after=time.time())
    d = _target("vllm-d")
    s = PrometheusSource(live.server.url).observe([d], time.time())[d.key]
    assert_unknown(s, "running", "kv_cache_usage", "load", kind="metrics_invalid")
    assert s.waiting == 0.0  # still served as a number


def test_several_series_where_one_was_expected_are_unknown(live: Live) -> None:
    """Two model names under one target make its quantile unknown; a multi-series override too."""
    source = PrometheusSource(live.server.url)
    any_model = _target("vllm-e")
    one_model = _target("vllm-e", "m-e1")
    override = _target(
        "vllm-e",
        "m-e1",
        metrics=Metrics(rate_window=LIVE_WINDOW, arrival_rate_query='vllm:num_requests_running{namespace="llm"}'),
    )
    snaps = [source.observe([t], time.time())[t.key] for t in (any_model, one_model, override)]
    assert_unknown(snaps[0], "latency_quantile", "latency_mean", "ttft_quantile", kind="metrics_invalid")
    assert snaps[0].running == 6 and snaps[0].load == pytest.approx(10.0, rel=0.1)  # sums stay well defined
    assert snaps[1].latency_quantile == pytest.approx(1.475) and snaps[1].running == 3
    assert_unknown(snaps[2], "load", kind="metrics_invalid")


def test_stopped_exporter_makes_every_vllm_signal_unknown(live: Live) -> None:
    """Once the exporter is gone its series go stale, and every vLLM signal is unknown, never 0."""
    f = _target("vllm-f")
    source = PrometheusSource(live.server.url)
    assert source.observe([f], time.time())[f.key].load == pytest.approx(FEED_RATE["f0"], rel=0.1)
    live.vllm["f0"].stop()
    # A failed scrape commits up=0 together with the staleness markers of the target's series
    # (the target's "health" turns "down" a moment *before* that commit): wait for up=0 itself.
    deadline = time.monotonic() + 60
    while live.server.query_value('up{job="vllm-f"}') != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live.server.query_value('up{job="vllm-f"}') == 0, live.server.targets("vllm-f")
    s = source.observe([f], time.time())[f.key]
    assert_unknown(s, "running", "waiting", "kv_cache_usage", "load", "latency_mean", "prompt_tokens_rate")
    assert s.problems["load"] == "metrics_empty"  # the rate window still had samples: nulled, not reported


def test_unknown_target_is_empty_not_zero(live: Live) -> None:
    """A target Prometheus knows nothing about is unknown in every signal (metrics_empty)."""
    t = _target("no-such-deployment")
    s = PrometheusSource(live.server.url).observe([t], time.time())[t.key]
    assert_unknown(s, "load", "running", "waiting", "latency_mean", "gpu_utilization", kind="metrics_empty")
    assert s.newest_sample_time is None


def test_cluster_signals_from_kube_state_metrics(live: Live) -> None:
    """Replicas, pending/unschedulable pods and GPU nodes come from kube-state-metrics; unknown is None."""
    ksm = live.ksm
    ksm.set_deployment("llm", "vllm-ks", spec_replicas=3, ready_replicas=1)
    ksm.set_pod("llm", "vllm-ks-7d9f8c6b5-pend1", phase="Pending", unschedulable=True, created=time.time())
    ksm.set_pod("llm", "vllm-ks-7d9f8c6b5-pend2", phase="Pending", created=time.time())
    ksm.set_pod("llm", "vllm-ks-7d9f8c6b5-run01", node="gpu-a", created=time.time())
    ksm.set_node("gpu-a", allocatable_gpus=4)
    ksm.set_node("gpu-b", allocatable_gpus=8, ready=False)
    live.server.wait_for_scrape("ksm", after=time.time())
    ks, unknown = _target("vllm-ks"), _target("not-in-ksm")
    signals = PrometheusSource(live.server.url).cluster_signals([ks, unknown], time.time())
    d = signals.deployments[ks.key]
    assert (d.spec_replicas, d.ready_replicas, d.pending_pods, d.unschedulable_pods) == (3, 1, 2, 1)
    u = signals.deployments[unknown.key]
    assert (u.spec_replicas, u.ready_replicas, u.pending_pods, u.unschedulable_pods) == (None, None, None, None)
    assert set(u.problems) == {"spec_replicas", "ready_replicas", "pending_pods", "unschedulable_pods"}
    assert signals.gpu_nodes["gpu-a"].allocatable_gpus == 4 and signals.gpu_nodes["gpu-a"].ready is True
    assert signals.gpu_nodes["gpu-b"].ready is False
