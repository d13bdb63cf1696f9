"""Bad answers, auth and TLS: every failure is "unknown" with a reason, or our error type.

Why: a controller that reads a 503, a hung server, a garbled body or a dropped connection
as zero load would scale a busy service down. Faults are injected between the source and
the real server with the harness's ``FaultProxy``; each test asserts ``None`` (never 0)
plus a ``problems`` entry, or the specific ``MetricsError`` from ``load_history``. The
bearer token must reach the server and never the logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.errors import MetricsEmpty, MetricsInvalid, MetricsUnavailable
from autoscaler.policy.schema import Metrics, Target
from tests.prom.faultproxy import FaultProxy, ProxyHandler
from tests.prom.server import PrometheusServer

from .conftest import LIVE_WINDOW, Live, assert_unknown

pytestmark = pytest.mark.prometheus

A = Target(namespace="llm", deployment="vllm-a", model_name="model-a", metrics=Metrics(rate_window=LIVE_WINDOW))
SIGNALS = ("load", "running", "waiting", "kv_cache_usage", "latency_mean", "latency_quantile", "gpu_utilization")


class _HeaderRecordingHandler(ProxyHandler):
    """The harness proxy's handler, also keeping each request's headers (the harness keeps paths only)."""

    def serve_request(self) -> None:
        proxy = self.server.proxy
        assert isinstance(proxy, RecordingProxy)
        proxy.headers_seen.append(dict(self.headers))
        super().serve_request()


class RecordingProxy(FaultProxy):
    """A :class:`FaultProxy` that records request headers."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.headers_seen: list[dict[str, str]] = []

    def start(self) -> RecordingProxy:
        """Start serving with the header-recording handler."""
        super().start()
        assert self._server is not None
        self._server.RequestHandlerClass = _HeaderRecordingHandler
        return self


@pytest.fixture
def proxy(live: Live) -> Iterator[RecordingProxy]:
    """A recording fault proxy in front of the live server."""
    p = RecordingProxy(live.server.url).start()
    yield p
    p.stop()


@pytest.mark.parametrize("fault", ["status_503", "garbage", "delay", "close"])
def test_observe_turns_transport_faults_into_unknown(proxy: RecordingProxy, fault: str) -> None:
    """503, a malformed body, a reply after the timeout and a dropped connection all give unknown, never 0."""
    source = PrometheusSource(proxy.url, timeout_seconds=1.0)
    assert source.observe([A], time.time())[A.key].load is not None  # through the proxy, healthy
    faults = {
        "status_503": lambda: proxy.status(503, '{"status":"error"}'),
        "garbage": proxy.garbage,
        "delay": lambda: proxy.delay(10.0),
        "close": proxy.close_connections,
    }
    faults[fault]()
    began = time.monotonic()
    snap = source.observe([A], time.time())[A.key]
    elapsed = time.monotonic() - began
    # A malformed body is an answer, just not a usable one: its own kind, and the loop goes on.
    assert_unknown(snap, *SIGNALS, kind="metrics_malformed" if fault == "garbage" else "metrics_unavailable")
    assert snap.newest_sample_time is None
    if fault in ("delay", "close"):  # the server is unreachable: one failed query ends the loop
        assert source.last_loop.queries == 1
        assert elapsed < 5.0  # the 1 s timeout ended it, not the 10 s delay (slack for a loaded machine)
    proxy.passthrough()
    assert source.observe([A], time.time())[A.key].load is not None  # and it recovers next loop


@pytest.mark.parametrize("fault", ["status_500", "garbage", "close"])
def test_load_history_raises_unavailable_on_faults(proxy: RecordingProxy, fault: str) -> None:
    """load_history raises MetricsUnavailable on a 5xx, a malformed body or a dropped connection."""
    source = PrometheusSource(proxy.url, timeout_seconds=2.0)
    faults = {
        "status_500": lambda: proxy.status(500, "oops"),
        "garbage": proxy.garbage,
        "close": proxy.close_connections,
    }
    faults[fault]()
    now = time.time()
    with pytest.raises(MetricsUnavailable):
        source.load_history(A, start=now - 86400, end=now - 600, step=300)


def test_load_history_rejected_query_and_empty_result(live: Live) -> None:
    """A query Prometheus rejects raises MetricsInvalid; a target without data raises MetricsEmpty."""
    source = PrometheusSource(live.server.url)
    now = time.time()
    bad = Target(namespace="llm", deployment="vllm-a", metrics=Metrics(arrival_rate_query="sum(rate(x[1m])"))
    with pytest.raises(MetricsInvalid, match="HTTP 400"):
        source.load_history(bad, start=now - 3600, end=now - 600, step=300)
    with pytest.raises(MetricsEmpty):
        source.load_history(Target(namespace="llm", deployment="nothing"), start=now - 3600, end=now - 600, step=300)


def test_stopped_server_gives_unknown_and_errors(prometheus_bin: str, tmp_path: Path) -> None:
    """After the server stops, observe reports unknown, load_history raises, lead times stay None."""
    server = PrometheusServer([], binary=prometheus_bin, base_dir=tmp_path).start()
    source = PrometheusSource(server.url, timeout_seconds=2.0)
    assert source.client.instant("probe", "vector(1)", at=time.time())[0].value == 1.0
    server.stop()
    now = time.time()
    snap = source.observe([A], now)[A.key]
    assert_unknown(snap, *SIGNALS, kind="metrics_unavailable")
    with pytest.raises(MetricsUnavailable, match="cannot connect"):
        source.load_history(A, start=now - 3600, end=now - 600, step=300)
    assert source.lead_times(A, now) is None
    signals = source.cluster_signals([A], now)
    assert signals.deployments[A.key].spec_replicas is None
    assert signals.problems == {"gpu_nodes": "metrics_unavailable"}


def test_bearer_token_is_sent_rotated_and_never_logged(proxy: RecordingProxy, tmp_path: Path) -> None:
    """The token from the file reaches the server, a rotated token is picked up, and no log shows it."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-one\n")
    with capture_logs() as logs:
        source = PrometheusSource(proxy.url, bearer_token_file=token_file, timeout_seconds=2.0)
        source.observe([A], time.time())
        assert {h.get("Authorization") for h in proxy.headers_seen} == {"Bearer s3cr3t-one"}
        token_file.write_text("s3cr3t-two-rotated\n")
        proxy.headers_seen.clear()
        source.observe([A], time.time())
        assert {h.get("Authorization") for h in proxy.headers_seen} == {"Bearer s3cr3t-two-rotated"}
        proxy.status(401, "unauthorized: Bearer s3cr3t-two-rotated")  # an error body echoing the header
        snap = source.observe([A], time.time())[A.key]
        token_file.unlink()
        proxy.passthrough()
        with pytest.raises(MetricsUnavailable, match="bearer token file") as missing:
            source.load_history(A, start=time.time() - 3600, end=time.time() - 600, step=300)
    assert_unknown(snap, "load", kind="metrics_unavailable")
    assert any(e["event"] == "prometheus_query_failed" for e in logs)
    text = repr(logs) + str(missing.value) + repr(source.last_loop)
    assert "s3cr3t" not in text


def test_tls_verification_with_custom_ca(prometheus_bin: str, tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    """TLS is verified by default (a self-signed server is refused) and trusted with its CA file."""
    cert, key = self_signed
    server = PrometheusServer([], binary=prometheus_bin, base_dir=tmp_path, tls=(cert, key)).start()
    try:
        now = time.time()
        with pytest.raises(MetricsUnavailable, match="cannot connect"):
            PrometheusSource(server.url).client.instant("probe", "vector(1)", at=now)
        assert PrometheusSource(server.url, ca_file=cert).client.instant("probe", "vector(2)", at=now)[0].value == 2
        insecure = PrometheusSource(server.url, verify_tls=False)
        assert insecure.client.instant("probe", "vector(3)", at=now)[0].value == 3
    finally:
        server.stop()
