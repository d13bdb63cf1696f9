"""TLS verification is on by default for both servers the controller talks to.

Why: a controller that silently trusts any certificate sends its bearer tokens to whoever
answers. ``tests/adapters/test_faults.py`` already checks the Prometheus *source class*
(refused by default, trusted with its CA file or with ``verify_tls=False``); what is added
here is the operator's path: ``autoscaler run`` with its flags (no flag = verified, refused;
``--prometheus-ca-file`` = trusted; ``--prometheus-insecure-skip-tls-verify`` = the explicit
opt-out), and the Kubernetes client, whose kubeconfig without a CA must be refused rather
than trusted (no ``verify_ssl=False`` default anywhere in :func:`autoscaler.kube.client.connect`).
The runs go through the CLI entry point in-process: four runs cost seconds, not four
interpreter start-ups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest
from kubernetes.client import ApiClient

from autoscaler.cli.main import main
from autoscaler.errors import ClusterUnavailable
from autoscaler.kube.client import connect
from tests.cluster.controlplane import ControlPlane
from tests.kube.conftest import serving_deployment
from tests.prom.server import PrometheusServer

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


@pytest.fixture
def policy(tmp_path: Path, namespace: str, k8s_client: ApiClient) -> Path:
    """A dry-run policy for a Deployment that exists (``run --once`` fails when a target cannot be read)."""
    kubernetes.client.AppsV1Api(k8s_client).create_namespaced_deployment(namespace, serving_deployment("web", 1))
    path = tmp_path / "policy.yaml"
    path.write_text(f"targets: [{{namespace: {namespace}, deployment: web, mode: dry-run}}]\n")
    return path


@pytest.fixture
def https_prometheus(prometheus_bin: str, tmp_path: Path, self_signed: tuple[Path, Path]) -> Iterator[PrometheusServer]:
    """A real Prometheus serving HTTPS with a self-signed certificate."""
    cert, key = self_signed
    server = PrometheusServer([], binary=prometheus_bin, base_dir=tmp_path, tls=(cert, key)).start()
    yield server
    server.stop()


def run_once(capsys: pytest.CaptureFixture[str], policy: Path, prometheus_url: str, kubeconfig: Path,
             *extra: str) -> tuple[int, str]:
    """``autoscaler run --once`` through the CLI entry point, in-process; its exit code and stderr."""
    capsys.readouterr()
    code = main(["run", "--once", "--no-leader-election", "--policy", str(policy),
                 "--prometheus-url", prometheus_url, "--kubeconfig", str(kubeconfig), *extra])
    return code, capsys.readouterr().err


def write_kubeconfig(path: Path, control_plane: ControlPlane, *, ca: Path | None) -> Path:
    """A token kubeconfig for the test API server, with the CA pinned or with NO TLS setting at all."""
    cluster: dict[str, object] = {"server": control_plane.server_url}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": control_plane.admin_token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    path.chmod(0o600)
    return path


def test_kube_client_verifies_the_api_server_certificate_by_default(
    control_plane: ControlPlane, tmp_path: Path, namespace: str,
) -> None:
    """A kubeconfig with no CA and no insecure flag: the self-signed API server is refused; with its CA it works."""
    bare = write_kubeconfig(tmp_path / "bare.kubeconfig", control_plane, ca=None)
    api = connect(kubeconfig=bare, timeout=(2.0, 5.0))
    assert api.api_client.configuration.verify_ssl is True
    with pytest.raises(ClusterUnavailable, match=r"SSLError|CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        api.call(api.core.read_namespace, namespace, what=f"get namespace {namespace}")
    api.close()

    pinned = connect(kubeconfig=write_kubeconfig(tmp_path / "ca.kubeconfig", control_plane,
                                                 ca=control_plane.ca_cert_path), timeout=(2.0, 5.0))
    assert pinned.call(pinned.core.read_namespace, namespace, what="get namespace").metadata.name == namespace
    pinned.close()


def test_run_verifies_prometheus_and_the_api_server_unless_told_otherwise(
    control_plane: ControlPlane, https_prometheus: PrometheusServer, policy: Path, self_signed: tuple[Path, Path],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``autoscaler run`` without TLS flags refuses the self-signed Prometheus and a kubeconfig lacking the API
    server's CA (exit 1 each); ``--prometheus-ca-file`` or the explicit insecure flag let the cycle run (exit 0)."""
    cert, _ = self_signed
    admin = write_kubeconfig(tmp_path / "pinned.kubeconfig", control_plane, ca=control_plane.ca_cert_path)
    bare = write_kubeconfig(tmp_path / "bare.kubeconfig", control_plane, ca=None)
    url = https_prometheus.url
    done = {
        "prometheus default": run_once(capsys, policy, url, admin),
        "prometheus ca file": run_once(capsys, policy, url, admin, "--prometheus-ca-file", str(cert)),
        "prometheus insecure": run_once(capsys, policy, url, admin, "--prometheus-insecure-skip-tls-verify"),
        "kube default": run_once(capsys, policy, url, bare, "--prometheus-ca-file", str(cert)),
    }

    code, err = done["prometheus default"]
    assert code == 1, err[-2000:]
    assert f"Prometheus at {url} did not answer any query" in err.splitlines()[-1]
    failures = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "prometheus_query_failed" and "SSLError" in e.get("error", "") for e in failures), err
    for name in ("prometheus ca file", "prometheus insecure"):
        code, err = done[name]
        assert code == 0, (name, err[-2000:])
    code, err = done["kube default"]
    last = json.loads(err.splitlines()[-1])  # run logs JSON, its CLI errors too
    assert code == 1 and last["event"] == "cli_error" and "API server unreachable" in last["error"], err[-2000:]
    assert re.search(r"SSL|CERTIFICATE_VERIFY_FAILED|certificate verify failed", last["error"]), last
