"""``load_history`` and ``observe`` against days of backfilled vLLM history with known truth.

Why: a restarted controller forecasts from this history, so it must match the generator's
arrival rate, come back NaN (never 0) where data is missing, and survive Prometheus' 11,000
points limit by chunking. ``observe`` at a past time must equal the generator's values, and
samples older than ``staleAfterSeconds`` must make every vLLM signal unknown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.errors import MetricsInvalid
from autoscaler.policy.schema import SLO, Capacity, Metrics, Scaling, Target
from tests.prom.backfill import SyntheticHistory, backfill, diurnal_rate, synthetic_vllm_history
from tests.prom.exporters import E2E_LATENCY_BUCKETS
from tests.prom.server import PrometheusServer

from .conftest import assert_unknown, pod_name

pytestmark = pytest.mark.prometheus

STEP = 30.0  # the generator's sample interval
DAYS = 4  # 4 days at a 30 s step = 11,520 points: more than one range query may hold
MEDIAN, SIGMA = 2.0, 0.5
TARGET = Target(namespace="llm", deployment="vllm-gpt2", model_name="gpt2")


@dataclass
class History:
    """The backfilled server, the generator's truth and the gap cut out of it."""

    server: PrometheusServer
    truth: SyntheticHistory
    start: float
    end: float
    gap: tuple[float, float]


@pytest.fixture(scope="module")
def history(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Four days of two pods' vLLM history with a 3-hour gap, backfilled before the server starts."""
    end = math.floor(time.time() / STEP) * STEP - STEP
    start = end - DAYS * 86400
    truth = synthetic_vllm_history(
        namespace="llm",
        pods=[pod_name("vllm-gpt2", "a1b2c"), pod_name("vllm-gpt2", "d3e4f")],
        pod_weights=[0.6, 0.4],
        model_name="gpt2",
        deployment="vllm-gpt2",
        start=start,
        end=end,
        step=STEP,
        arrival_rate=diurnal_rate(4.0, 2.5),
        latency_median=MEDIAN,
        latency_sigma=SIGMA,
    )
    end = float(truth.timestamps[-1])  # the generator's last sample
    gap = (start + 2 * 86400, start + 2 * 86400 + 3 * 3600)
    cut = [
        (name, labels, np.asarray(ts)[keep], np.asarray(values)[keep], kind)
        for name, labels, ts, values, kind in truth.series
        for keep in [(np.asarray(ts) < gap[0]) | (np.asarray(ts) > gap[1])]
    ]
    server = PrometheusServer([], binary=prometheus_bin, base_dir=tmp_path_factory.mktemp("history"))
    backfill(server.data_dir, cut)
    with server:
        yield History(server, truth, start, end, gap)


def _inside_gap(h: History, t0: float, t1: float) -> bool:
    return t0 < h.gap[1] and t1 > h.gap[0]


def test_history_at_300s_matches_truth_and_gap_is_nan(history: History) -> None:
    """Three days at 5-minute buckets match the generated arrival rate within 2 %; the gap is NaN."""
    h = history
    source = PrometheusSource(h.server.url)
    series = source.load_history(TARGET, start=h.end - 3 * 86400, end=h.end - 300, step=300)
    assert series.step == 300 and series.start % 300 == 0
    assert len(series) == (math.floor((h.end - 300) / 300) - math.ceil((h.end - 3 * 86400) / 300)) + 1
    nan_in_gap = 0
    for t, value in zip(series.timestamps(), series.values, strict=True):
        if _inside_gap(h, t, t + 300):
            nan_in_gap += math.isnan(value)
            if h.gap[0] <= t and t + 300 <= h.gap[1]:  # bucket entirely inside the gap
                assert math.isnan(value), f"bucket {t} inside the gap is {value}, not NaN"
        if not math.isnan(value):  # every value, the gap's edges included, is the true mean
            assert value == pytest.approx(h.truth.true_rate(t, t + 300), rel=0.02), t
    assert nan_in_gap >= (h.gap[1] - h.gap[0]) / 300 - 1
    assert np.isfinite(series.values).sum() > len(series) - nan_in_gap - 2
    assert np.nanmin(series.values) > 0  # the diurnal rate never drops below 1.5 req/s: no zero anywhere


def test_history_is_chunked_past_the_11000_points_limit(history: History) -> None:
    """Four days at 30 s (11,520 points) come back in two range queries, matching the truth."""
    h = history
    source = PrometheusSource(h.server.url)
    with pytest.raises(MetricsInvalid, match="11,000"):  # what one unchunked query gets
        PrometheusSource(h.server.url, max_points_per_query=20000).load_history(
            TARGET, start=h.start + STEP, end=h.end - STEP, step=STEP
        )
    before = source.client.queries
    series = source.load_history(TARGET, start=h.start + STEP, end=h.end - STEP, step=STEP)
    assert source.client.queries - before == 2 and len(series) > 11000
    window = 120.0  # rateWindow 2m > step: each value is the mean over the 2 minutes before its bucket's end
    checked = 0
    for t, value in zip(series.timestamps()[::97], series.values[::97], strict=True):
        t_end = t + STEP
        if _inside_gap(h, t_end - window - 60, t_end + 60) or t_end - window < h.start:
            continue
        assert value == pytest.approx(h.truth.true_rate(t_end - window, t_end), rel=0.03)
        checked += 1
    assert checked > 100
    assert np.isnan(series.values).sum() >= (h.gap[1] - h.gap[0]) / STEP - 10


def test_history_in_tokens(history: History) -> None:
    """In the tokens unit the history is prompt plus generated tokens per second."""
    h = history
    tokens = Target(namespace="llm", deployment="vllm-gpt2", capacity=Capacity(unit="tokens"))
    series = PrometheusSource(h.server.url).load_history(tokens, start=h.end - 86400, end=h.end - 300, step=300)
    t = float(series.timestamps()[100])
    assert series.values[100] == pytest.approx((512 + 128) * h.truth.true_rate(t, t + 300), rel=0.02)


def _expected_quantile(h: History, q: float, t0: float, t1: float) -> float:
    """histogram_quantile of the generator's own bucket counts over ``[t0, t1]``, computed here."""
    i0, i1 = (int(np.searchsorted(h.truth.timestamps, x)) for x in (t0, t1))
    bounds = sorted(E2E_LATENCY_BUCKETS)
    cdf = [0.5 * (1 + math.erf(math.log(b / MEDIAN) / (SIGMA * math.sqrt(2)))) for b in bounds]
    counts = [
        sum(math.floor(c[i1] * f + 0) - math.floor(c[i0] * f + 0) for c in h.truth.completed.values()) for f in cdf
    ]
    total = sum(float(c[i1] - c[i0]) for c in h.truth.completed.values())
    rank = q * total
    below, lower = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        below, lower = cumulative, bound
    raise AssertionError("rank above the top bucket")


def test_observe_at_a_past_time_matches_the_generator(history: History) -> None:
    """At a time inside the history, observe returns the generator's load, gauges and latencies."""
    h = history
    t = h.start + 86400 + 17 * STEP
    target = Target(
        namespace="llm",
        deployment="vllm-gpt2",
        model_name="gpt2",
        metrics=Metrics(rate_window="5m"),
        slo=SLO(latency_quantile=0.9),
    )
    snap = PrometheusSource(h.server.url).observe([target], t)[target.key]
    i = int(np.searchsorted(h.truth.timestamps, t))
    series = {(name, labels["pod"]): values for name, labels, _, values, _ in h.truth.series if "pod" in labels}
    pods = list(h.truth.pod_shares)
    assert snap.running == sum(series[("vllm:num_requests_running", p)][i] for p in pods)
    assert snap.waiting == sum(series[("vllm:num_requests_waiting", p)][i] for p in pods)
    assert snap.kv_cache_usage == pytest.approx(sum(series[("vllm:kv_cache_usage_perc", p)][i] for p in pods) / 2)
    assert snap.load == pytest.approx(h.truth.true_rate(t - 300, t), rel=0.02)
    assert snap.prompt_tokens_rate == pytest.approx(512 * h.truth.counter_rate(t - 300, t), rel=1e-6)
    assert snap.latency_mean == pytest.approx(h.truth.latency_mean, rel=1e-9)
    assert snap.latency_quantile == pytest.approx(_expected_quantile(h, 0.9, t - 300, t), rel=1e-6)
    assert snap.newest_sample_time == t
    assert_unknown(snap, "gpu_utilization", "ttft_quantile", kind="metrics_empty")  # not in this history


def test_samples_older_than_the_staleness_limit_are_unknown(history: History) -> None:
    """200 s after the last sample (limit 180 s) every vLLM signal is unknown; at 100 s they are known."""
    h = history
    target = Target(
        namespace="llm",
        deployment="vllm-gpt2",
        model_name="gpt2",
        metrics=Metrics(rate_window="5m"),
        scaling=Scaling(stale_after_seconds=180),
    )
    source = PrometheusSource(h.server.url, clock_skew_tolerance_seconds=5.0)
    fresh = source.observe([target], h.end + 100)[target.key]
    assert fresh.running is not None and fresh.load is not None
    stale = source.observe([target], h.end + 200)[target.key]
    assert_unknown(stale, "load", "running", "waiting", "kv_cache_usage", "latency_mean", kind="metrics_invalid")
    assert stale.newest_sample_time == h.end  # still reported, so the core can say StaleDataHold
