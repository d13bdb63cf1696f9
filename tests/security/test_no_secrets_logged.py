"""No secret ever reaches the logs of a whole ``autoscaler run``, even at debug level.

Why: controller logs are shipped to log stores many people can read. The adapter test
(``tests/adapters/test_faults.py``) checks the Prometheus source alone; this one runs the
CLI as shipped — one full ``--once`` cycle at ``--log-level debug`` — with a bearer token
file for Prometheus and a kubeconfig holding a bearer token for the API server, and greps
everything the process printed for either token (raw and base64).

It cannot pass vacuously: an auth-checking loopback proxy in front of the real Prometheus
answers 401 to any request without exactly our token (and echoes the header it got, the
way some proxies do), the first query is answered with such an echo on purpose (so the
error path is exercised and logged), and the test asserts that every request carried the
token, that the cycle observed the load through it, and that the API server accepted the
kubeconfig token (the Deployment was read).
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest
from kubernetes.client import ApiClient

from tests.cluster.controlplane import ControlPlane
from tests.prom.exporters import VllmExporter
from tests.prom.faultproxy import FaultProxy, ProxyHandler
from tests.prom.server import PrometheusServer, ScrapeJob, ScrapeTarget

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

DEPLOYMENT = "vllm-secret-test"


class _AuthCheckingHandler(ProxyHandler):
    """The harness proxy's handler, refusing (401, header echoed) any request without the expected token."""

    def serve_request(self) -> None:
        proxy = self.server.proxy
        assert isinstance(proxy, AuthCheckingProxy)
        got = self.headers.get("Authorization") or ""
        proxy.seen.append(got)
        if got != f"Bearer {proxy.token}":
            self._read_body()
            self._send_simple(401, f"unauthorized: {got!r}\n".encode(), "text/plain")
            return
        super().serve_request()


class AuthCheckingProxy(FaultProxy):
    """A :class:`FaultProxy` in front of Prometheus that requires ``Authorization: Bearer <token>``."""

    def __init__(self, upstream: str, token: str) -> None:
        super().__init__(upstream)
        self.token = token
        self.seen: list[str] = []

    def start(self) -> AuthCheckingProxy:
        """Start serving with the auth-checking handler."""
        super().start()
        assert self._server is not None
        self._server.RequestHandlerClass = _AuthCheckingHandler
        return self


@pytest.fixture
def loaded_prometheus(namespace: str) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping a vLLM-like exporter of the test's Deployment (20 req/s)."""
    exporter = VllmExporter("m")
    exporter.start()
    server = PrometheusServer([ScrapeJob("vllm", [
        ScrapeTarget(exporter.address, {"namespace": namespace, "pod": f"{DEPLOYMENT}-5d8f7b9c4-abcde"})])])
    stop = threading.Event()

    def feed() -> None:
        started, done = time.monotonic(), 0
        while not stop.wait(0.1):
            due = math.floor(20 * (time.monotonic() - started)) - done
            if due > 0:
                exporter.complete(due, latency_seconds=0.1)
                done += due

    threading.Thread(target=feed, daemon=True).start()
    server.start()
    try:
        server.wait_for_scrape("vllm", timeout=30)
        server.wait_for_query("sum(rate(vllm:request_success_total[5s]))", timeout=60)
        yield server
    finally:
        stop.set()
        server.stop()
        exporter.stop()


def variants(secret: str) -> dict[str, str]:
    """The forms a leaked secret could take in a log line."""
    header = f"Bearer {secret}"
    return {
        "raw": secret,
        "base64": base64.b64encode(secret.encode()).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        "header-base64": base64.b64encode(header.encode()).decode().rstrip("="),
    }


def test_a_debug_run_with_bearer_tokens_logs_neither_token(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    loaded_prometheus: PrometheusServer, tmp_path: Path,
) -> None:
    """One ``run --once`` cycle at debug level: the tokens are used, and appear nowhere in its output."""
    kubernetes.client.AppsV1Api(k8s_client).create_namespaced_deployment(namespace, {
        "metadata": {"name": DEPLOYMENT},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": DEPLOYMENT}},
                 "template": {"metadata": {"labels": {"app": DEPLOYMENT}},
                              "spec": {"containers": [{"name": "c", "image": "registry.example/x:1"}]}}},
    })
    prom_token = f"promtok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "prometheus-token"
    token_file.write_text(prom_token + "\n")
    token_file.chmod(0o600)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "targets:\n"
        f"  - {{namespace: {namespace}, deployment: {DEPLOYMENT}, mode: dry-run,\n"
        "     capacity: {perReplica: 100}, metrics: {rateWindow: 5s}, placeholders: {enabled: false},\n"
        "     forecast: {model: naive, historyDays: 1}, coldStart: {learn: false}}\n"
    )
    # The admin kubeconfig authenticates with a static bearer token.
    kube_token = control_plane.admin_token
    assert kube_token in control_plane.kubeconfig_path.read_text()
    with AuthCheckingProxy(loaded_prometheus.url, prom_token) as proxy:
        # The first query gets a 401 whose body echoes the (correct) header: the error path must scrub it.
        proxy.status(401, f"unauthorized: Bearer {prom_token}".encode(), times=1)
        proc = subprocess.run(
            [sys.executable, "-m", "autoscaler", "run", "--once", "--no-leader-election", "--log-level", "debug",
             "--policy", str(policy), "--prometheus-url", proxy.url,
             "--prometheus-bearer-token-file", str(token_file),
             "--kubeconfig", str(control_plane.kubeconfig_path)],
            capture_output=True, text=True, timeout=120, check=False,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Not vacuous: Prometheus was only reachable with the token, and every request carried it ...
    assert len(proxy.seen) >= 10 and set(proxy.seen) == {f"Bearer {prom_token}"}
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "prometheus_query_failed" for e in events), "the echoed 401 was logged (scrubbed)"
    (decision,) = [e for e in events if e["event"] == "decision"]
    # ... the load was observed through it, and the API server accepted the kubeconfig token.
    assert decision["observed_load"] is not None and decision["observed_load"] > 0, decision
    assert decision["current_replicas"] == 1

    for name, secret in (("prometheus", prom_token), ("kubeconfig", kube_token)):
        for form, text in variants(secret).items():
            assert text not in output, f"the {name} token appears in the output ({form})"
