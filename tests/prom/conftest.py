"""Fixtures for tests that need a real Prometheus.

Why: every such test must run against the real binary, so the session first
runs ``scripts/install-prometheus.sh`` (idempotent; a no-op when Prometheus is
installed). If that fails the tests *fail* with the installer's output —
never a silent skip, which would let CI go green without testing anything.

Factories start servers, exporters and proxies and stop every one of them at
teardown, by PID / thread, so a failing test leaves nothing running.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .exporters import DcgmExporter, KubeStateExporter, TextExporter, VllmExporter
from .faultproxy import FaultProxy
from .server import PrometheusServer, ScrapeJob

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-prometheus.sh"


@pytest.fixture(scope="session")
def prometheus_binaries() -> dict[str, str]:
    """Install (if needed) and locate ``prometheus`` and ``promtool``; fail loudly if impossible."""
    # the script is idempotent: it exits 0 at once when both binaries are on PATH
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"{INSTALL_SCRIPT} could not run: {exc}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{INSTALL_SCRIPT} failed (rc={proc.returncode}); the Prometheus tests need the "
            f"Debian 'prometheus' package.\nstdout:\n{proc.stdout[-3000:]}\n"
            f"stderr:\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail(f"{missing} not on PATH after {INSTALL_SCRIPT}", pytrace=False)
    return {name: str(path) for name, path in found.items()}


PrometheusFactory = Callable[..., PrometheusServer]


@pytest.fixture
def prometheus_factory(prometheus_binaries: dict[str, str], tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Build :class:`PrometheusServer` objects: ``make(jobs, start=True, **kwargs)``.

    With ``start=False`` the server is only prepared (backfill into
    ``server.data_dir``, then call ``server.start()``). All are stopped at teardown.
    """
    servers: list[PrometheusServer] = []

    def make(
        jobs: list[ScrapeJob] | tuple[ScrapeJob, ...] = (), *, start: bool = True, **kwargs: Any
    ) -> PrometheusServer:
        kwargs.setdefault("binary", prometheus_binaries["prometheus"])
        kwargs.setdefault("base_dir", tmp_path)
        server = PrometheusServer(jobs, **kwargs)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def exporters() -> Iterator[Callable[[TextExporter], Any]]:
    """``start(exporter)`` starts an exporter and returns it; all are stopped at teardown."""
    started: list[TextExporter] = []

    def start(exporter: TextExporter) -> Any:
        exporter.start()
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


@pytest.fixture
def vllm_exporter(exporters: Callable[[TextExporter], Any]) -> VllmExporter:
    """A started :class:`VllmExporter` for model ``llama-3-8b``."""
    exporter: VllmExporter = exporters(VllmExporter("llama-3-8b"))
    return exporter


@pytest.fixture
def dcgm_exporter(exporters: Callable[[TextExporter], Any]) -> DcgmExporter:
    """A started :class:`DcgmExporter` with two GPUs on ``gpu-node-1``."""
    exporter: DcgmExporter = exporters(DcgmExporter(hostname="gpu-node-1", gpus=2))
    return exporter


@pytest.fixture
def kube_state_exporter(exporters: Callable[[TextExporter], Any]) -> KubeStateExporter:
    """A started, empty :class:`KubeStateExporter`."""
    exporter: KubeStateExporter = exporters(KubeStateExporter())
    return exporter


@pytest.fixture
def fault_proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """``make(upstream_url, **kwargs)`` starts a :class:`FaultProxy`; all stopped at teardown."""
    proxies: list[FaultProxy] = []

    def make(upstream: str, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **kwargs).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 as ``(cert_file, key_file)``."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found (apt-get install openssl)", pytrace=False)
    proc = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"openssl failed: {proc.stderr}", pytrace=False)
    return cert, key
