"""Fixtures for the Prometheus source tests: real servers, live exporters, a steady feeder.

Why: the source must be judged against what a real Prometheus 2.42 answers (rate
extrapolation, histogram_quantile, staleness, the exported_* rename, error shapes), so
these fixtures start real servers from the harness in ``tests/prom`` (reused as is). A new
server's first scrape takes ~5 s, so ONE session-scoped live server scrapes every
exporter; each test owns its own target (its own pods) so tests cannot disturb each other.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscaler.core.types import MetricsSnapshot
from tests.prom.backfill import Series, backfill, diurnal_rate, synthetic_vllm_history
from tests.prom.exporters import DcgmExporter, KubeStateExporter, VllmExporter
from tests.prom.server import PrometheusServer, ScrapeJob, ScrapeTarget

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Rate window of the live targets: 5 scrapes at the live server's 1 s interval.
LIVE_WINDOW = "5s"
#: Requests per second the feeder completes on each fed pod.
FEED_RATE = {"a0": 20.0, "a1": 10.0, "b0": 8.0, "c0": 6.0, "e0": 5.0, "e1": 5.0, "f0": 5.0}
#: How long before the live server starts its backfilled history ends (> the 5 min lookback).
HISTORY_GAP_SECONDS = 420.0


def pod_name(deployment: str, suffix: str = "x2k4q") -> str:
    """A ReplicaSet-style pod name of ``deployment``."""
    return f"{deployment}-7d9f8c6b5-{suffix}"


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """The ``prometheus`` binary, installed by the harness script if missing (never a silent skip)."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        script = REPO_ROOT / "scripts" / "install-prometheus.sh"
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{script} failed: {proc.stderr[-2000:]}", pytrace=False)
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not on PATH", pytrace=False)
    return path


class Feeder:
    """Completes requests on exporters at exact long-run rates from a background thread."""

    def __init__(self, exporters: dict[str, VllmExporter]) -> None:
        self.exporters = exporters
        self.done = dict.fromkeys(exporters, 0)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        """Start feeding."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            elapsed = time.monotonic() - self._t0
            for key, exporter in self.exporters.items():
                due = math.floor(FEED_RATE[key] * elapsed) - self.done[key]
                if due > 0:
                    exporter.complete(
                        due, latency_seconds=1.2, prompt_tokens=100, gen_tokens=20, queue_seconds=0.1, ttft_seconds=0.2
                    )
                    self.done[key] += due

    def stop(self) -> None:
        """Stop feeding."""
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Live:
    """The shared live server, its exporters (by pod key) and the feeder."""

    server: PrometheusServer
    vllm: dict[str, VllmExporter]
    dcgm: DcgmExporter
    dcgm_honor: DcgmExporter
    ksm: KubeStateExporter
    feeder: Feeder


#: pod key -> (deployment, model_name, exporter options)
LIVE_PODS: dict[str, tuple[str, str, dict[str, bool]]] = {
    "a0": ("vllm-a", "model-a", {}),
    "a1": ("vllm-a", "model-a", {}),
    "b0": ("vllm-b", "model-b", {"underscore": True}),
    "c0": ("vllm-c", "model-c", {"use_old_names": True}),
    "d0": ("vllm-d", "model-d", {}),
    "e0": ("vllm-e", "m-e1", {}),
    "e1": ("vllm-e", "m-e2", {}),
    "f0": ("vllm-f", "model-f", {}),
}


def _history_for_vllm_a(pods: list[str], end: float) -> list[Series]:
    """Two days of vllm-a history (counters and gauges only) ending ``end``, for the forecast."""
    history = synthetic_vllm_history(
        namespace="llm",
        pods=pods,
        model_name="model-a",
        deployment="vllm-a",
        start=end - 2 * 86400,
        end=end,
        step=60.0,
        arrival_rate=diurnal_rate(30.0, 10.0),
    )
    keep = ("request_success_total", "num_requests_running", "num_requests_waiting")
    return [s for s in history.series if str(s[0]).endswith(keep)]


@pytest.fixture(scope="session")
def live(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One server scraping every live exporter every second, plus backfilled vllm-a history."""
    with contextlib.ExitStack() as stack:
        exporters = {
            key: stack.enter_context(VllmExporter(model, **options)) for key, (_, model, options) in LIVE_PODS.items()
        }
        pods = {key: pod_name(dep, f"{key}k2p{key[-1]}"[:5]) for key, (dep, _, _) in LIVE_PODS.items()}
        for key, exporter in exporters.items():
            exporter.set_state(running=3 if key != "a1" else 5, waiting=1 if key == "a0" else 0, kv_cache=0.25)
        exporters["a1"].set_state(kv_cache=0.75)
        dcgm = stack.enter_context(DcgmExporter(hostname="gpu-node-1", gpus=3))
        dcgm_honor = stack.enter_context(DcgmExporter(hostname="gpu-node-2", gpus=1, hostname_label="hostname"))
        ksm = stack.enter_context(KubeStateExporter())
        dcgm.assign(0, pod=pods["a0"], namespace="llm")
        dcgm.assign(1, pod=pods["a1"], namespace="llm")
        dcgm.set_gpu(0, util=80, engine_active=0.6)
        dcgm.set_gpu(1, util=40, engine_active=0.2)
        dcgm.set_gpu(2, util=99, engine_active=0.99)  # unassigned: must not count for anyone
        dcgm_honor.assign(0, pod=pods["b0"], namespace="llm")
        dcgm_honor.set_gpu(0, util=55, engine_active=0.45)
        feeder = Feeder({k: exporters[k] for k in FEED_RATE}).start()
        stack.callback(feeder.stop)
        exporter_pod = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x7k2p"}
        server = PrometheusServer(
            [
                ScrapeJob(
                    "vllm",
                    [
                        ScrapeTarget(exporters[k].address, {"namespace": "llm", "pod": pods[k]})
                        for k in LIVE_PODS
                        if k != "f0"
                    ],
                ),
                ScrapeJob("vllm-f", [ScrapeTarget(exporters["f0"].address, {"namespace": "llm", "pod": pods["f0"]})]),
                ScrapeJob("dcgm", [ScrapeTarget(dcgm.address, exporter_pod)], honor_labels=False),
                ScrapeJob("dcgm-honor", [ScrapeTarget(dcgm_honor.address, exporter_pod)], honor_labels=True),
                ScrapeJob("ksm", [ScrapeTarget(ksm.address, {"namespace": "kube-system"})], honor_labels=True),
            ],
            binary=prometheus_bin,
            base_dir=tmp_path_factory.mktemp("live"),
        )
        history_end = math.floor((time.time() - HISTORY_GAP_SECONDS) / 60.0) * 60.0
        backfill(server.data_dir, _history_for_vllm_a([pods["a0"], pods["a1"]], history_end))
        stack.enter_context(server)
        for job in ("vllm", "vllm-f", "dcgm", "dcgm-honor", "ksm"):
            server.wait_for_scrape(job, timeout=30)
        time.sleep(6.0)  # fill the 5 s rate windows with scraped data
        yield Live(server, exporters, dcgm, dcgm_honor, ksm, feeder)


def assert_unknown(snapshot: MetricsSnapshot, *fields: str, kind: str | None = None) -> None:
    """Each field is None (never 0) and has a problems entry (of ``kind`` when given)."""
    problems = snapshot.problems
    for name in fields:
        value = getattr(snapshot, name)
        assert value is None, f"{name} should be unknown, got {value!r}"
        assert name in problems, f"{name} has no problems entry: {problems}"
        if kind is not None:
            assert problems[name] == kind, f"{name}: {problems[name]} != {kind}"


def p90(values: list[float]) -> float:
    """The 90th percentile by linear interpolation, computed by hand (not numpy)."""
    ordered = sorted(values)
    rank = 0.9 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 as ``(cert_file, key_file)``."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "tls.crt", d / "tls.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found", pytrace=False)
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run([openssl, *request, *names], capture_output=True, check=True, timeout=60)
    return cert, key
