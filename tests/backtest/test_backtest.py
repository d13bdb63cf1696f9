"""``autoscaler backtest`` end to end against a real Prometheus holding three days of known history.

Why: the backtest's "recorded" row is only worth something if it reads back exactly what
the cluster recorded (load, latency, replicas, measured cold start), treats missing data
as a gap rather than zero load, and its replays are the real controller on that load. So
the history here is a known truth (a ServeGen-shaped diurnal load served by a reactive
scaler, with a scrape gap) written as vLLM and kube-state-metrics series into a real
Prometheus, and the CLI's output is checked against that truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.cli.main import main
from autoscaler.offline.backtest.recorded import fetch_recorded
from autoscaler.offline.backtest.replay import resolve_policies
from autoscaler.offline.traces import load_trace
from autoscaler.policy.loader import load_policy_file
from tests.prom.backfill import backfill
from tests.prom.server import PrometheusServer

from .recording import PodStartup, Truth, lifecycle_series, reactive_truth, replica_series, vllm_series

pytestmark = pytest.mark.prometheus

NS, DEPLOYMENT, MODEL = "llm", "vllm-gpt2", "gpt2"
KEY = f"{NS}/{DEPLOYMENT}"
STEP = 60.0
DAYS = 3
SLO = 0.2
#: Start-up node waits (s) of the recorded pods; the learned node lead time is their P90.
WAITS = (480.0, 520.0, 560.0, 600.0, 640.0, 700.0)
STARTUP = 400.0

POLICY = """\
loopIntervalSeconds: 30
targets:
  - namespace: llm
    deployment: vllm-gpt2
    modelName: gpt2
    slo: {{latencySeconds: 0.2}}
    capacity: {{perReplica: 225}}
    forecast: {{quantile: {quantile}}}
    scaling: {{minReplicas: 1, maxReplicas: 30}}
    metrics: {{rateWindow: 1m}}
"""


@dataclass
class History:
    """The server, the truth loaded into it, the scrape gap and the policy files."""

    server: PrometheusServer
    truth: Truth
    gap: tuple[float, float]
    running: Path
    candidate: Path
    out: Path


@pytest.fixture(scope="module")
def history(prometheus_binaries: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Three days of a reactively scaled gpt2 Deployment at 60 s buckets, 30 s scrapes, one 2-hour vLLM gap."""
    end = math.floor(time.time() / 3600) * 3600 - 3600.0  # an hour boundary safely in the past
    start = end - DAYS * 86400
    trace = load_trace("default").fill_gaps().slice(0.0, DAYS * 86400.0).resample(STEP).rescale_peak(1800.0)
    truth = reactive_truth(np.asarray(trace.rates), start=start, step=STEP, per_replica=200.0)
    gap = (start + 2.5 * 86400, start + 2.5 * 86400 + 2 * 3600)
    starts = [
        PodStartup(
            f"p{i}k2x", start + i * 10800.0, start + i * 10800.0 + w, start + i * 10800.0 + w + STARTUP, f"gpu-node-{i}"
        )
        for i, w in enumerate(WAITS)
    ]
    series = [
        *vllm_series(truth, namespace=NS, deployment=DEPLOYMENT, model_name=MODEL, gaps=[gap]),
        *replica_series(truth, namespace=NS, deployment=DEPLOYMENT),
        *lifecycle_series(starts, namespace=NS, deployment=DEPLOYMENT, until=end),
    ]
    base = tmp_path_factory.mktemp("backtest")
    server = PrometheusServer([], binary=prometheus_binaries["prometheus"], base_dir=base)
    backfill(server.data_dir, series, promtool=prometheus_binaries["promtool"])
    running, candidate = base / "running.yaml", base / "candidate.yaml"
    running.write_text(POLICY.format(quantile=0.95))
    candidate.write_text(POLICY.format(quantile=0.5))
    with server:
        yield History(server, truth, gap, running, candidate, base / "out")


def _run(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["backtest", *argv])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def result(history: History) -> dict[str, Any]:
    """One backtest run: running policy (q 0.95) vs candidate (q 0.5), 2 days warm-up, 1 day replayed."""
    h = history
    code, out, err = _run(
        "--prometheus-url", h.server.url, "--target", KEY, "--since", f"{DAYS}d", "--until", str(h.truth.end),
        "--running-policy", str(h.running), "--policy", str(h.candidate), "--warmup-days", "2",
        "--out", str(h.out), "--no-progress", "--tradeoff", "0.5",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads((h.out / "result.json").read_text())
    doc["stdout"] = out
    doc["rows"] = {row["policy"]: row for row in doc["results"]}
    return doc


def _overlaps_gap(h: History, i: int) -> bool:
    t0 = h.truth.start + i * STEP
    return t0 < h.gap[1] + STEP and t0 + STEP > h.gap[0] - STEP


def test_fetched_history_is_the_loaded_truth_and_the_gap_is_nan(history: History) -> None:
    """Per bucket: load and latency as loaded, NaN inside the scrape gap (never 0), replicas exact."""
    h, t = history, history.truth
    source = PrometheusSource(h.server.url, lead_time_lookback_seconds=DAYS * 86400)
    target = load_policy_file(h.running).target(KEY)
    rec = fetch_recorded(source, target, start=t.start, end=t.end, step=int(STEP))
    assert rec.start == t.start and rec.size == t.size
    outside = np.array([not _overlaps_gap(h, i) for i in range(t.size)])
    np.testing.assert_allclose(rec.load[outside], t.load[outside], rtol=1e-6)
    np.testing.assert_allclose(rec.latency[outside], t.latency[outside], rtol=1e-6)
    inside = [i for i in range(t.size) if h.gap[0] <= t.start + i * STEP and t.start + (i + 1) * STEP <= h.gap[1]]
    assert len(inside) >= 118
    assert np.isnan(rec.load[inside]).all() and np.isnan(rec.latency[inside]).all()
    assert np.nanmin(rec.load) > 0
    np.testing.assert_array_equal(rec.spec_replicas, t.spec)
    np.testing.assert_array_equal(rec.available_replicas, t.available)
    assert rec.lead_times is not None
    assert rec.lead_times.node_ready == pytest.approx(float(np.percentile(WAITS, 90)))
    assert rec.lead_times.pod_start_fresh == pytest.approx(STARTUP)


def test_recorded_row_is_what_was_loaded(history: History, result: dict[str, Any]) -> None:
    """Node-hours = integral of the loaded replicas (1 %), scale events = loaded changes, SLO from the truth."""
    h, t = history, history.truth
    rec = result["rows"]["recorded"]
    begin = t.index(result["meta"]["evaluated"]["start"])
    assert begin == 2 * 1440
    hours = float(t.spec[begin:].sum()) * STEP / 3600
    assert rec["gpu_node_hours"] == pytest.approx(hours, rel=0.01)
    assert rec["replica_hours"] == pytest.approx(hours, rel=0.01)
    assert rec["scale_events"] == int(np.count_nonzero(np.diff(t.spec[begin:])))
    assert rec["scale_events"] > 10
    idx = np.array([i for i in range(begin, t.size) if not _overlaps_gap(h, i)])
    met = t.load[idx][t.latency[idx] <= SLO].sum() / t.load[idx].sum()
    assert 90.0 < 100 * met < 99.9, "the truth must both meet and miss the SLO for the check to mean anything"
    assert rec["slo_attainment_pct"] == pytest.approx(100 * met, abs=0.05)
    assert rec["failed_requests"] is None and rec["placeholder_events"] is None
    assert 85.0 < rec["coverage_pct"] < 95.0  # the 2-hour gap of a 24-hour span is left out


def test_replays_are_sane_and_bridge_the_gap(history: History, result: dict[str, Any]) -> None:
    """Every policy replayed; the oracle is the cheapest and meets the SLO; the gap was load, not zero."""
    t = history.truth
    rows = result["rows"]
    assert list(rows) == ["recorded", "predictive", "candidate", "hpa", "oracle"]
    oracle, predictive = rows["oracle"], rows["predictive"]
    assert oracle["slo_attainment_pct"] >= 99.0
    assert oracle["gpu_node_hours"] <= predictive["gpu_node_hours"]
    assert predictive["slo_attainment_pct"] > rows["hpa"]["slo_attainment_pct"]
    begin = t.index(result["meta"]["evaluated"]["start"])
    true_requests = float(t.load[begin:].sum()) * STEP
    assert predictive["requests"] == pytest.approx(true_requests, rel=0.02)  # a zeroed gap would lose ~7 %
    cold = result["meta"]["cold_start"]
    assert cold["source"] == "measured+policy"
    assert cold["node_ready_seconds"] == pytest.approx(float(np.percentile(WAITS, 90)), abs=0.1)


def test_candidate_with_a_lower_quantile_uses_fewer_node_hours(result: dict[str, Any]) -> None:
    """--policy: the candidate (q 0.5) is its own row and is cheaper than the running one (q 0.95)."""
    rows, policies = result["rows"], result["meta"]["policies"]
    assert policies["predictive"]["quantile"] == 0.95 and policies["candidate"]["quantile"] == 0.5
    assert rows["candidate"]["gpu_node_hours"] < rows["predictive"]["gpu_node_hours"]
    assert rows["candidate"] != rows["predictive"]


def test_report_files_and_stdout(history: History, result: dict[str, Any]) -> None:
    """Markdown table on stdout; PNG and a self-contained HTML report with the table and the plot."""
    out = history.out
    assert "| policy | SLO % |" in result["stdout"] and "| recorded |" in result["stdout"]
    png = out / "backtest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000
    page = (out / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and len(page) > 40_000
    for policy in ("recorded", "predictive", "candidate", "hpa", "oracle"):
        assert f"<td>{policy}</td>" in page


def test_tradeoff_point_of_the_candidate(history: History, result: dict[str, Any]) -> None:
    """--tradeoff sweeps the candidate's quantile; its own quantile is the candidate run itself."""
    (point,) = result["tradeoff"]
    candidate = result["rows"]["candidate"]
    assert point["quantile"] == 0.5 and point["cost_ratio"] == pytest.approx(1 / 60, rel=1e-4)
    assert point["gpu_node_hours"] == candidate["gpu_node_hours"]
    assert point["slo_attainment_pct"] == candidate["slo_attainment_pct"]
    assert (history.out / "tradeoff.png").stat().st_size > 20_000
    assert "Trade-off" in (history.out / "report.html").read_text()
    assert "cost ratio u/c" in result["stdout"]


def test_unknown_target_and_no_data_fail_with_one_clear_line(history: History) -> None:
    """Not in the policy: usage error (2). No data: failure (1). Prometheus down: failure (1)."""
    h = history
    common = ("--since", "3d", "--until", str(h.truth.end), "--no-progress", "--out", str(h.out / "err"))
    code, out, err = _run(
        "--prometheus-url", h.server.url, "--target", "llm/nope", "--running-policy", str(h.running), *common
    )
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: llm/nope is not a target of --running-policy {h.running}"]
    code, out, err = _run("--prometheus-url", h.server.url, "--target", "llm/nope", *common)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no recorded load for llm/nope" in err
    code, _, err = _run("--prometheus-url", "http://127.0.0.1:9", "--target", KEY, "--prometheus-timeout", "2", *common)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "cannot connect" in err
    code, _, err = _run("--prometheus-url", h.server.url, "--target", "nope", *common)
    assert code == 2 and "NAMESPACE/DEPLOYMENT" in err


def test_the_bundled_example_applies_to_any_target(history: History) -> None:
    """Without --running-policy the example's settings are used for the named Deployment (all models)."""
    policies = resolve_policies("team/llama", candidate=None, running=None)
    assert policies.running.key == "team/llama" and policies.running.model_name is None
    assert policies.running.cost is not None  # the example prices capacity and misses
    assert policies.running.forecast.quantile == pytest.approx(60 / 61)  # their newsvendor quantile
