"""Tests of the real-Prometheus harness itself.

Why: the product's Prometheus tests are only as good as this harness. These
tests pin down that backfilled history, live exporters, label handling on
scrape and the fault proxy behave as the product's tests will assume, using
the real Prometheus 2.42 and a real client (``prometheus_api_client``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version as dist_version
from typing import Any

import prometheus_client
import pytest
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from .backfill import backfill, diurnal_rate, synthetic_vllm_history
from .exporters import DcgmExporter, KubeStateExporter, TextExporter, VllmExporter
from .faultproxy import FaultProxy
from .server import PrometheusServer, ScrapeJob, ScrapeTarget

pytestmark = pytest.mark.prometheus

PrometheusFactory = Callable[..., PrometheusServer]
TARGET_LABELS = ("job", "instance", "namespace", "pod")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _no_retry_client(url: str, timeout: float | None = None) -> PrometheusConnect:
    # requests' own default: no retries, read errors raised as such (ReadTimeout)
    return PrometheusConnect(
        url=url, disable_ssl=True, timeout=timeout, retry=Retry(total=0, read=False, raise_on_status=False)
    )


def test_backfilled_history_rate_matches_truth(prometheus_factory: PrometheusFactory) -> None:
    """Three backfilled days of synthetic vLLM history give rate() within 2 % of the truth."""
    step = 30.0
    end = math.floor(time.time() / step) * step - step  # history ends before the server starts
    start = end - 3 * 86400
    history = synthetic_vllm_history(
        namespace="llm",
        pods=["vllm-a", "vllm-b"],
        pod_weights=[0.6, 0.4],
        model_name="llama-3-8b",
        deployment="vllm",
        start=start,
        end=end,
        step=step,
        arrival_rate=diurnal_rate(4.0, 2.5),
        resets=[start + 86400 + 15],
    )
    server = prometheus_factory(start=False)
    stats = backfill(server.data_dir, history.series)
    assert stats.samples == len(history.timestamps) * len(history.series)
    server.start()
    prom = PrometheusConnect(url=server.url, disable_ssl=True)

    data = prom.custom_query_range(
        'sum by (namespace, model_name) (rate(vllm:request_success_total{finished_reason="stop"}[5m]))',
        # 17 min steps from an odd offset: evaluation times fall anywhere between the
        # 30 s samples, so rate()'s extrapolation is exercised too
        start_time=_utc(start + 3607),
        end_time=_utc(end),
        step="17m",
    )
    assert len(data) == 1 and data[0]["metric"] == {"namespace": "llm", "model_name": "llama-3-8b"}
    points = data[0]["values"]
    assert len(points) >= 250  # ~3 days at 17 min
    for ts, value in points:
        if any(float(ts) - 300 <= r <= float(ts) for r in history.resets):
            continue  # requests between the last sample and a reset are lost (checked below)
        truth = history.true_rate(float(ts) - 300, float(ts))
        assert float(value) == pytest.approx(truth, rel=0.02), _utc(float(ts))

    # the counter reset (a pod restart) is handled by rate() and per-pod shares hold
    at = start + 86400 + 150  # sample-aligned; the reset is 135 s before
    per_pod = {
        r["metric"]["pod"]: float(r["value"][1])
        for r in prom.custom_query("rate(vllm:request_success_total[5m])", params={"time": at})
    }
    for pod, share in history.pod_shares.items():
        assert per_pod[pod] == pytest.approx(history.counter_rate(at - 300, at, pod), rel=1e-9)
        # the 15 s of requests before the reset are lost, as in reality
        assert per_pod[pod] == pytest.approx(share * history.true_rate(at - 300, at), rel=0.08)

    # histogram and kube-state-metrics series came along with the right shape
    p50 = prom.custom_query(
        "histogram_quantile(0.5, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[5m])))", params={"time": end}
    )
    assert 1.5 <= float(p50[0]["value"][1]) <= 2.5  # true median 2.0 s, buckets 1.5/2.0/2.5
    replicas = prom.custom_query("kube_deployment_spec_replicas", params={"time": end})
    assert float(replicas[0]["value"][1]) == 2.0


@dataclass
class Live:
    """One server scraping several exporters, shared by this module's live-scrape tests."""

    server: PrometheusServer
    vllm: VllmExporter
    old: VllmExporter
    under: VllmExporter
    dcgm: DcgmExporter
    ksm: KubeStateExporter
    client_port: int
    client_counter: Any


@pytest.fixture(scope="module")
def live(prometheus_binaries: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Start the exporters and ONE server for them (a new server's first scrape takes ~5 s)."""
    with contextlib.ExitStack() as stack:
        vllm = stack.enter_context(VllmExporter("llama-3-8b"))
        old = stack.enter_context(VllmExporter("m-old", use_old_names=True))
        under = stack.enter_context(VllmExporter("m-under", underscore=True, engine="1"))
        dcgm = stack.enter_context(DcgmExporter(hostname="gpu-node-1", gpus=2))
        ksm = stack.enter_context(KubeStateExporter())
        registry = prometheus_client.CollectorRegistry()
        counter = prometheus_client.Counter("vllm:request_success", "test", ["model_name"], registry=registry)
        http_server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
        stack.callback(thread.join, 5)
        stack.callback(http_server.server_close)
        stack.callback(http_server.shutdown)
        dcgm_target = ScrapeTarget(
            dcgm.address,
            {"namespace": "gpu-operator", "pod": "dcgm-exporter-x7k2p", "container": "nvidia-dcgm-exporter"},
        )
        server = PrometheusServer(
            [
                ScrapeJob("vllm", [ScrapeTarget(vllm.address, {"namespace": "llm", "pod": "vllm-0"})]),
                ScrapeJob("old", [old.address]),
                ScrapeJob("under", [under.address]),
                ScrapeJob("dcgm", [dcgm_target], honor_labels=False),
                ScrapeJob("dcgm-honor", [dcgm_target], honor_labels=True),
                ScrapeJob("pc", [f"127.0.0.1:{http_server.server_address[1]}"]),
                ScrapeJob(
                    "ksm",
                    [ScrapeTarget(ksm.address, {"namespace": "kube-system", "pod": "kube-state-metrics-0"})],
                    honor_labels=True,
                ),
            ],
            binary=prometheus_binaries["prometheus"],
            base_dir=tmp_path_factory.mktemp("live"),
        )
        stack.enter_context(server)
        for job in ("vllm", "old", "under", "dcgm", "dcgm-honor", "pc", "ksm"):
            server.wait_for_scrape(job, timeout=20)
        yield Live(server, vllm, old, under, dcgm, ksm, int(http_server.server_address[1]), counter)


def _scraped_by_key(server: PrometheusServer, job: str) -> dict[tuple[str, frozenset[Any]], float]:
    result = server.query(f'{{job="{job}", __name__!~"up|scrape_.*"}}')
    return {
        (
            r["metric"]["__name__"],
            frozenset((k, v) for k, v in r["metric"].items() if k not in (*TARGET_LABELS, "__name__")),
        ): float(r["value"][1])
        for r in result
    }


def _served_by_key(exporter: TextExporter) -> dict[tuple[str, frozenset[Any]], float]:
    return {(name, frozenset(labels.items())): value for name, labels, value in exporter.samples()}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_live_vllm_exporter_counters_are_scraped(live: Live) -> None:
    """After complete() calls, every scraped vLLM series equals what the exporter served."""
    server, vllm = live.server, live.vllm
    vllm.complete(5, latency_seconds=1.2, prompt_tokens=100, gen_tokens=20)
    vllm.complete(
        3, latency_seconds=[0.4, 3.0, 12.0], prompt_tokens=50, gen_tokens=10, queue_seconds=0.1, ttft_seconds=0.2
    )
    vllm.complete(1, latency_seconds=30.0, finished_reason="length")
    vllm.set_state(running=4, waiting=2, kv_cache=0.37)
    server.wait_for_scrape("vllm", after=time.time())

    assert _scraped_by_key(server, "vllm") == _served_by_key(vllm)
    assert vllm.value("vllm:request_success_total", finished_reason="stop") == 8
    assert server.query_value('vllm:request_success_total{finished_reason="stop", namespace="llm", pod="vllm-0"}') == 8
    assert server.query_value('vllm:e2e_request_latency_seconds_bucket{le="2.5", pod="vllm-0"}') == 6
    assert server.query_value('vllm:prompt_tokens_total{pod="vllm-0"}') == 5 * 100 + 3 * 50
    assert server.query_value('vllm:kv_cache_usage_perc{pod="vllm-0"}') == 0.37


def test_vllm_exporter_variants_and_nan(live: Live) -> None:
    """Old cache name, vllm_ spelling and NaN values reach Prometheus exactly as served."""
    server, old, under = live.server, live.old, live.under
    old.set_state(kv_cache=math.nan, running=1)
    under.set_state(kv_cache=0.5)
    under.complete(2, latency_seconds=0.2)
    mark = time.time()
    server.wait_for_scrape("old", after=mark)
    server.wait_for_scrape("under", after=mark)

    assert server.query('vllm:kv_cache_usage_perc{job=~"old|under"}') == []
    kv_old = server.query_value('vllm:gpu_cache_usage_perc{model_name="m-old"}')
    assert kv_old is not None and math.isnan(kv_old)
    assert server.query_value('vllm_kv_cache_usage_perc{model_name="m-under",engine="1"}') == 0.5
    assert server.query_value('vllm_request_success_total{finished_reason="stop"}') == 2
    for job, exporter in (("old", old), ("under", under)):
        scraped, served = _scraped_by_key(server, job), _served_by_key(exporter)
        assert scraped.keys() == served.keys()
        assert all(_same(scraped[k], served[k]) for k in served)


def test_prometheus_client_exporter_names_are_escaped(live: Live) -> None:
    """A prometheus_client (>= 0.23) exporter scraped by 2.42 turns vllm: into vllm_ names."""
    live.client_counter.labels("m").inc(3)
    live.server.wait_for_scrape("pc", after=time.time())
    names = set(live.server.api("label/__name__/values"))
    if tuple(int(x) for x in dist_version("prometheus_client").split(".")[:2]) >= (0, 23):
        assert "vllm_request_success_total" in names
        assert live.server.query_value('vllm_request_success_total{job="pc"}') == 3
        assert live.server.query('{job="pc", __name__=~"vllm:.*"}') == []
    else:
        assert live.server.query_value('vllm:request_success_total{job="pc"}') == 3


def test_dcgm_honor_labels_false_yields_exported_pod(live: Live) -> None:
    """DCGM scraped with honor_labels false renames its pod labels to exported_*; true keeps them."""
    server, dcgm = live.server, live.dcgm
    dcgm.assign(0, pod="vllm-0", namespace="llm", container="vllm")
    dcgm.set_gpu(0, util=87, engine_active=0.62, fb_used=72_000, fb_free=8_500)
    mark = time.time()
    server.wait_for_scrape("dcgm", after=mark)
    server.wait_for_scrape("dcgm-honor", after=mark)

    renamed = server.query('DCGM_FI_PROF_GR_ENGINE_ACTIVE{job="dcgm", gpu="0"}')[0]["metric"]
    assert renamed["exported_pod"] == "vllm-0"
    assert renamed["exported_namespace"] == "llm"
    assert renamed["exported_container"] == "vllm"
    assert renamed["pod"] == "dcgm-exporter-x7k2p"
    assert renamed["namespace"] == "gpu-operator"
    assert renamed["Hostname"] == "gpu-node-1" and renamed["modelName"].startswith("NVIDIA")
    honored = server.query('DCGM_FI_PROF_GR_ENGINE_ACTIVE{job="dcgm-honor", gpu="0"}')[0]
    assert honored["metric"]["pod"] == "vllm-0" and "exported_pod" not in honored["metric"]
    assert float(honored["value"][1]) == 0.62
    unassigned = server.query('DCGM_FI_DEV_GPU_UTIL{job="dcgm", gpu="1"}')[0]["metric"]
    assert "exported_pod" not in unassigned and unassigned["pod"] == "dcgm-exporter-x7k2p"
    assert (
        server.query_value(
            'avg by (exported_namespace, exported_pod) (DCGM_FI_DEV_GPU_UTIL{job="dcgm", exported_pod!=""})'
        )
        == 87
    )


def test_kube_state_exporter_objects_keep_their_labels(live: Live) -> None:
    """KSM scraped with honor_labels true keeps the objects' namespace/pod; phases and times work."""
    server, ksm = live.server, live.ksm
    ksm.set_deployment("llm", "vllm", spec_replicas=3, ready_replicas=2)
    ksm.set_pod(
        "llm", "vllm-0", node="gpu-node-1", created=1000.0, scheduled_time=1010.0, start_time=1012.0, ready_time=1190.0
    )
    ksm.set_pod("llm", "vllm-1", phase="Pending", unschedulable=True, created=1100.0)
    ksm.set_node("gpu-node-1", allocatable_gpus=8)
    ksm.set_node("gpu-node-2", allocatable_gpus=8, ready=False)
    server.wait_for_scrape("ksm", after=time.time())

    assert server.query_value('kube_deployment_spec_replicas{namespace="llm"}') == 3
    assert server.query_value('kube_deployment_status_replicas_unavailable{deployment="vllm"}') == 1
    pending = server.query('kube_pod_status_phase{phase="Pending"} == 1')
    assert [r["metric"]["pod"] for r in pending] == ["vllm-1"]
    assert pending[0]["metric"]["namespace"] == "llm"
    assert "exported_pod" not in pending[0]["metric"]
    assert server.query_value("sum(kube_pod_status_unschedulable)") == 1
    assert (
        server.query_value(
            'kube_pod_status_ready_time{pod="vllm-0"} - on (namespace, pod) kube_pod_created{pod="vllm-0"}'
        )
        == 190
    )
    assert (
        server.query_value(
            'sum(kube_node_status_allocatable{resource="nvidia_com_gpu"} * on (node) '
            'group_left kube_node_status_condition{condition="Ready",status="true"})'
        )
        == 8
    )


def test_fault_proxy_faults_reach_a_real_client(
    prometheus_factory: PrometheusFactory, fault_proxy_factory: Callable[..., FaultProxy]
) -> None:
    """The proxy passes through, or returns 503/garbage/delays/drops, as configured."""
    server = prometheus_factory()
    proxy = fault_proxy_factory(server.url)
    prom = _no_retry_client(proxy.url, timeout=5)

    assert prom.custom_query("vector(7)")[0]["value"][1] == "7"
    # POST bodies and big (chunked) upstream answers are forwarded intact
    posted = requests.post(proxy.url + "/api/v1/query", data={"query": "vector(3)"}, timeout=5)
    assert posted.json()["data"]["result"][0]["value"][1] == "3"
    now = time.time()
    params = {"query": "vector(1)", "start": str(now - 7200), "end": str(now), "step": "1"}
    direct = requests.get(server.url + "/api/v1/query_range", params=params, timeout=10)
    via = requests.get(proxy.url + "/api/v1/query_range", params=params, timeout=10)
    assert via.status_code == 200 and len(via.content) > 50_000
    assert via.json()["data"] == direct.json()["data"]

    proxy.status(503, '{"status":"error","errorType":"unavailable","error":"test"}', only_paths=r"^/api/v1/query$")
    with pytest.raises(PrometheusApiClientException, match="503"):
        prom.custom_query("vector(1)")
    assert prom.all_metrics() is not None  # another path passes through
    assert proxy.faulted["/api/v1/query"] == 1
    assert proxy.count("/api/v1/label/__name__/values") == 1

    proxy.status(500, times=2)
    retrying = PrometheusConnect(
        url=proxy.url,
        disable_ssl=True,
        retry=Retry(total=3, backoff_factor=0, status_forcelist=[500], raise_on_status=False),
    )
    proxy.reset_counts()
    assert retrying.custom_query("vector(2)")[0]["value"][1] == "2"
    assert proxy.count("/api/v1/query") == 3 and proxy.faulted["/api/v1/query"] == 2

    proxy.garbage()
    with pytest.raises(ValueError):  # requests' JSONDecodeError is a ValueError
        prom.custom_query("vector(1)")

    proxy.delay(10.0, only_paths="/api/v1/query")
    began = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        _no_retry_client(proxy.url, timeout=0.5).custom_query("vector(1)")
    assert time.monotonic() - began < 5.0  # the client's timeout, not the delay (slack for a loaded machine)

    proxy.close_connections()
    with pytest.raises(requests.exceptions.ConnectionError):
        prom.custom_query("vector(1)")

    proxy.passthrough()
    assert prom.custom_query("vector(5)")[0]["value"][1] == "5"
    assert [r.mode for r in proxy.records][-4:] == ["garbage", "delay", "close", "passthrough"]


def test_fault_proxy_https_upstream(
    prometheus_factory: PrometheusFactory,
    fault_proxy_factory: Callable[..., FaultProxy],
    self_signed_cert: tuple[Any, Any],
) -> None:
    """The proxy forwards to an HTTPS upstream with a self-signed certificate."""
    server = prometheus_factory(tls=self_signed_cert)
    assert server.url.startswith("https://")
    proxy = fault_proxy_factory(server.url)
    prom = _no_retry_client(proxy.url, timeout=5)
    assert prom.custom_query("vector(11)")[0]["value"][1] == "11"
    proxy.status(403, '{"kind":"Status","code":403}', only_paths="^/api/")
    with pytest.raises(PrometheusApiClientException, match="403"):
        prom.custom_query("vector(1)")
    assert proxy.count() == 2


def test_fault_proxy_refuses_non_loopback_upstream() -> None:
    """The proxy only forwards to loopback upstreams unless explicitly allowed."""
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("http://192.0.2.1:9090")


class _StreamingHandler(BaseHTTPRequestHandler):
    """Answers like a Kubernetes watch: chunked, one event now, the next when released."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line, wait in ((b'{"type":"ADDED"}\n', False), (b'{"type":"DELETED"}\n', True)):
            if wait:
                self.release.wait(10)
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_fault_proxy_streams_chunked_responses(
    fault_proxy_factory: Callable[..., FaultProxy],
) -> None:
    """A watch-style chunked response is relayed event by event, not buffered to the end."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _StreamingHandler)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        proxy = fault_proxy_factory(f"http://127.0.0.1:{upstream.server_address[1]}")
        with requests.get(proxy.url + "/api/v1/pods?watch=true", stream=True, timeout=5) as resp:
            lines = resp.iter_lines()
            assert next(lines) == b'{"type":"ADDED"}'  # arrives before the stream ends
            _StreamingHandler.release.set()
            assert next(lines) == b'{"type":"DELETED"}'
        assert proxy.count("/api/v1/pods") == 1
    finally:
        _StreamingHandler.release.set()
        upstream.shutdown()
        upstream.server_close()


def test_server_options_and_restart(prometheus_factory: PrometheusFactory) -> None:
    """Config options reach the server, and restart() keeps the data dir (TSDB) intact."""
    server = prometheus_factory(
        [ScrapeJob("x", ["127.0.0.1:9"], honor_labels=True, labels={"cluster": "test"})],
        scrape_interval="2s",
        out_of_order_time_window="30m",
    )
    config = server.api("status/config")["yaml"]
    assert "out_of_order_time_window: 30m" in config
    assert "honor_labels: true" in config and "scrape_interval: 2s" in config
    assert not server.url.endswith(":9090")
    marker = server.data_dir / "marker"
    marker.write_text("kept")
    server.restart()
    assert server.running and marker.read_text() == "kept"
    assert server.query_value("vector(1)") == 1
