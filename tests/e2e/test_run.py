"""``autoscaler run`` end to end: real Prometheus, real control plane, the CLI as shipped.

History with a daily ramp at a fixed time of day is backfilled into Prometheus so that
the ramp is due three minutes from now; a live vLLM-like exporter serves the current
(base) load; a node agent plays the kubelets and cluster-autoscaler. The controller runs
as a subprocess with ``--once`` per cycle, exactly as an operator would run it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client import ApiClient

from autoscaler.kube.status import STATUS_ANNOTATION
from tests.cluster.controlplane import ControlPlane
from tests.cluster.node_agent import NodeAgent
from tests.prom.backfill import backfill, synthetic_vllm_history
from tests.prom.exporters import VllmExporter
from tests.prom.server import PrometheusServer, ScrapeJob, ScrapeTarget, free_port

from .conftest import wait_for

DEPLOYMENT = "vllm-gpt2"
POD = f"{DEPLOYMENT}-5d8f7b9c4-abcde"
BASE_RPS, RAMP_RPS = 100.0, 500.0
#: The ramp starts at the first 5-minute boundary at least this far ahead (so the serving
#: lead time of 90 s never reaches into the ramp's bucket, while the node one does).
RAMP_AT_LEAST_IN_SECONDS = 240.0


def ramp_rate(ramp_time_of_day: float):
    """Daily pattern: BASE_RPS, and RAMP_RPS for 30 minutes from ``ramp_time_of_day``."""
    import numpy as np

    def rate(t: object) -> object:
        tod = np.mod(np.asarray(t, dtype=float), 86400.0)
        since = np.mod(tod - ramp_time_of_day, 86400.0)
        return np.where(since < 1800.0, RAMP_RPS, BASE_RPS)

    return rate


@pytest.fixture
def prometheus(namespace: str, tmp_path: Path) -> Iterator[tuple[PrometheusServer, VllmExporter, float]]:
    """A real Prometheus with 4 days of history (a daily ramp due in 4-9 minutes), a live exporter,
    and the time the ramp is due."""
    now = time.time()
    ramp_at = math.ceil((now + RAMP_AT_LEAST_IN_SECONDS) / 300.0) * 300.0
    exporter = VllmExporter("gpt2")
    exporter.start()
    job = ScrapeJob("vllm", [ScrapeTarget(exporter.address, {"namespace": namespace, "pod": POD})])
    server = PrometheusServer([job], scrape_interval="1s")
    history = synthetic_vllm_history(
        namespace=namespace, pods=[POD], model_name="gpt2", deployment=DEPLOYMENT,
        start=now - 4 * 86400, end=now - 420, step=60,
        arrival_rate=ramp_rate(ramp_at % 86400.0), latency_median=0.12, latency_sigma=0.2,
    )
    backfill(server.data_dir, history.series)
    server.start()
    stop = threading.Event()

    def feed() -> None:  # the current (base) load, completed at BASE_RPS
        started, done = time.monotonic(), 0
        while not stop.wait(0.1):
            due = math.floor(BASE_RPS * (time.monotonic() - started)) - done
            if due > 0:
                exporter.complete(due, latency_seconds=0.12)
                done += due

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    server.wait_for_scrape("vllm", timeout=30)
    try:
        yield server, exporter, ramp_at
    finally:
        stop.set()
        server.stop()
        exporter.stop()


def serving_deployment(namespace: str) -> dict[str, object]:
    """The seed-like vLLM Deployment: one T4 per replica, ready 0.5 s after binding."""
    labels = {"app": DEPLOYMENT}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": namespace},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"test.autoscaler/start-delay-seconds": "0.5"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4"},
                    "containers": [{
                        "name": "vllm", "image": "vllm/vllm-openai:v0.6.3",
                        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
                    }],
                },
            },
        },
    }


def write_policy(path: Path, namespace: str, *, mode: str) -> Path:
    """A policy for the test's target: 200 req/s per replica, a ~20 min cold start (10 min image pull)."""
    path.write_text(
        "loopIntervalSeconds: 30\n"
        "targets:\n"
        f"  - namespace: {namespace}\n"
        f"    deployment: {DEPLOYMENT}\n"
        "    modelName: gpt2\n"
        f"    mode: {mode}\n"
        "    capacity: {perReplica: 200}\n"
        "    forecast: {model: seasonal_naive, seasons: [daily], trendGuardPoints: 0, historyDays: 4}\n"
        "    coldStart: {learn: false, imagePullSeconds: 600}\n"
    )
    return path


def run_once(control_plane: ControlPlane, server: PrometheusServer, policy: Path, *extra: str) -> list[dict]:
    """One controller cycle through the CLI; returns its JSON log events."""
    proc = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--once", "--no-leader-election",
         "--policy", str(policy), "--prometheus-url", server.url,
         "--kubeconfig", str(control_plane.kubeconfig_path), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return events


def test_dry_run_logs_each_decision_and_writes_nothing(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    prometheus: tuple[PrometheusServer, VllmExporter, float], tmp_path: Path,
) -> None:
    """In dry-run the forecast ramp yields a logged decision; only the status and a WouldScale Event are written.

    No spec changes (replicas, pod template) and no placeholder Deployment; the status
    annotation says what it would do, and so does the Event (``kubectl describe``).
    """
    apps = kubernetes.client.AppsV1Api(k8s_client)
    apps.create_namespaced_deployment(namespace, serving_deployment(namespace))
    before = apps.read_namespaced_deployment(DEPLOYMENT, namespace).spec
    server, _, _ = prometheus
    events = run_once(control_plane, server, write_policy(tmp_path / "p.yaml", namespace, mode="enforce"),
                      "--dry-run")
    decisions = [e for e in events if e.get("event") == "decision"]
    assert len(decisions) == 1
    d = decisions[0]
    assert d["dry_run"] is True and d["target"] == f"{namespace}/{DEPLOYMENT}"
    assert d["would_set_placeholders"] >= 2, d  # the ramp needs 3 GPUs within the node cold start
    assert {s["name"] for s in d["steps"]} >= {"forecast", "bounds", "placeholders"}
    after = apps.read_namespaced_deployment(DEPLOYMENT, namespace)
    # (The API server bumps a Deployment's generation for an annotation change too.)
    assert after.spec == before and after.spec.replicas == 1
    status = json.loads(after.metadata.annotations[STATUS_ANNOTATION])
    assert status["mode"] == "dry-run" and status["desiredPlaceholders"] == d["would_set_placeholders"]
    names = [x.metadata.name for x in apps.list_namespaced_deployment(namespace).items]
    assert names == [DEPLOYMENT], "dry-run created nothing"
    (event,) = [e for e in kubernetes.client.CoreV1Api(k8s_client).list_namespaced_event(namespace).items
                if e.reason == "WouldScale"]  # fmt: skip
    assert event.type == "Normal" and event.involved_object.name == DEPLOYMENT


def test_placeholders_first_then_serving_replicas_ahead_of_the_ramp(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    prometheus: tuple[PrometheusServer, VllmExporter, float], tmp_path: Path,
) -> None:
    """Cycle 1 asks for GPU nodes with placeholders; cycle 2 scales serving onto them before the load."""
    apps = kubernetes.client.AppsV1Api(k8s_client)
    core = kubernetes.client.CoreV1Api(k8s_client)
    agent = NodeAgent(k8s_client, namespace=namespace, pod_start_s=3600.0, max_nodes=4)  # placeholders stay cold
    agent.start()
    try:
        apps.create_namespaced_deployment(namespace, serving_deployment(namespace))
        wait_for(lambda: (apps.read_namespaced_deployment(DEPLOYMENT, namespace).status.ready_replicas or 0) == 1,
                 timeout=60)
        server, _, ramp_at = prometheus
        policy = write_policy(tmp_path / "p.yaml", namespace, mode="enforce")

        first = [e for e in run_once(control_plane, server, policy) if e.get("event") == "decision"]
        placeholder = apps.read_namespaced_deployment(f"{DEPLOYMENT}-capacity", namespace)
        assert placeholder.spec.replicas >= 2, first
        assert apps.read_namespaced_deployment_scale(DEPLOYMENT, namespace).spec.replicas == 1, "serving waits"

        def bound_placeholders() -> int:
            pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=gpu-placeholder")
            return sum(1 for p in pods.items if p.spec.node_name)

        wait_for(lambda: bound_placeholders() >= 2, timeout=60)
        nodes_before = len(agent.node_names())

        run_once(control_plane, server, policy)
        assert time.time() < ramp_at, "the test must act before the ramp"
        assert apps.read_namespaced_deployment_scale(DEPLOYMENT, namespace).spec.replicas >= 3
        wait_for(lambda: (apps.read_namespaced_deployment(DEPLOYMENT, namespace).status.ready_replicas or 0) >= 3,
                 timeout=60)
        assert time.time() < ramp_at + 5, "serving capacity was ready before the load arrived"
        assert len(agent.node_names()) == nodes_before, "no new node: serving pods took the placeholders' GPUs"
    finally:
        agent.stop()
        agent.cleanup()


def test_run_serves_metrics_and_stops_cleanly_on_sigterm(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    prometheus: tuple[PrometheusServer, VllmExporter, float], tmp_path: Path,
) -> None:
    """The long-running loop exports its metrics and readiness, and exits 0 on SIGTERM."""
    import signal
    import urllib.request

    apps = kubernetes.client.AppsV1Api(k8s_client)
    apps.create_namespaced_deployment(namespace, serving_deployment(namespace))
    server, _, _ = prometheus
    policy = write_policy(tmp_path / "p.yaml", namespace, mode="dry-run")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "run", "--no-leader-election", "--policy", str(policy),
         "--prometheus-url", server.url, "--kubeconfig", str(control_plane.kubeconfig_path),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert f'autoscaler_desired_placeholders{{deployment="{DEPLOYMENT}",namespace="{namespace}"}}' in text
        assert "autoscaler_loop_duration_seconds_count 1.0" in text or "autoscaler_loop_duration_seconds_count" in text
        assert 'autoscaler_decisions_total{' in text
        assert "autoscaler_policy_generation 1.0" in text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events.index("started") < events.index("decision") < events.index("stopped")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI and capture its output."""
    return subprocess.run([sys.executable, "-m", "autoscaler", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_start_up_errors_are_clear_and_non_zero(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    prometheus: tuple[PrometheusServer, VllmExporter, float], tmp_path: Path,
) -> None:
    """No Prometheus, a bad kubeconfig and missing RBAC each end the process with one clear line."""
    kubernetes.client.AppsV1Api(k8s_client).create_namespaced_deployment(namespace, serving_deployment(namespace))
    server, _, _ = prometheus
    policy = write_policy(tmp_path / "p.yaml", namespace, mode="dry-run")
    common = ["run", "--once", "--no-leader-election", "--policy", str(policy)]

    no_prom = run_cli(*common, "--prometheus-url", f"http://127.0.0.1:{free_port()}",
                      "--kubeconfig", str(control_plane.kubeconfig_path))
    assert no_prom.returncode == 1 and "Prometheus at" in no_prom.stderr.splitlines()[-1]

    bad = tmp_path / "kubeconfig"
    bad.write_text("this: is: not: a kubeconfig")
    bad_kube = run_cli(*common, "--prometheus-url", server.url, "--kubeconfig", str(bad))
    assert bad_kube.returncode == 2 and "kubeconfig" in bad_kube.stderr.splitlines()[-1]

    core = kubernetes.client.CoreV1Api(k8s_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = control_plane.service_account_token(namespace, "nobody")
    no_rbac = run_cli(*common, "--prometheus-url", server.url,
                      "--kubeconfig", str(control_plane.make_kubeconfig_for_token(token)))
    assert no_rbac.returncode == 1 and "RBAC" in no_rbac.stderr.splitlines()[-1]

    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("targets: [{namespace: x, deployment: y, scaling: {maxReplicas: -3}}]")
    invalid = run_cli("run", "--once", "--no-leader-election", "--policy", str(bad_policy),
                      "--prometheus-url", server.url, "--kubeconfig", str(control_plane.kubeconfig_path))
    assert invalid.returncode == 2 and "targets[0].scaling.maxReplicas" in invalid.stderr


def leader_gauge(port: int) -> float | None:
    """This process's ``autoscaler_leader`` value, or None while it is not serving yet."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("autoscaler_leader{"):  # one series, labelled by its Lease
                    return float(line.rsplit(" ", 1)[1])
    except OSError:
        return None
    return None


def test_two_controller_processes_elect_one_leader_and_fail_over(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    prometheus: tuple[PrometheusServer, VllmExporter, float], tmp_path: Path,
) -> None:
    """Two `autoscaler run` processes: exactly one leads; SIGKILL it and the other takes over."""
    import signal

    kubernetes.client.AppsV1Api(k8s_client).create_namespaced_deployment(namespace, serving_deployment(namespace))
    server, _, _ = prometheus
    policy = tmp_path / "p.yaml"
    write_policy(policy, namespace, mode="dry-run")
    policy.write_text(policy.read_text().replace("loopIntervalSeconds: 30", "loopIntervalSeconds: 5"))
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "--policy", str(policy), "--prometheus-url", server.url,
             "--kubeconfig", str(control_plane.kubeconfig_path), "--listen", f"127.0.0.1:{port}",
             "--lease-namespace", namespace, "--identity", f"replica-{i}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i, port in enumerate(ports)
    ]
    try:
        wait_for(lambda: sorted(leader_gauge(p) or 0.0 for p in ports) == [0.0, 1.0]
                 and all(leader_gauge(p) is not None for p in ports), timeout=60)
        leader = next(i for i, p in enumerate(ports) if leader_gauge(p) == 1.0)
        other = 1 - leader
        procs[leader].send_signal(signal.SIGKILL)  # no release: the lease must expire
        procs[leader].wait(timeout=10)
        wait_for(lambda: leader_gauge(ports[other]) == 1.0, timeout=60)
        lease = kubernetes.client.CoordinationV1Api(k8s_client).read_namespaced_lease(
            "gpu-predictive-autoscaler", namespace)
        assert lease.spec.holder_identity == f"replica-{other}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def healthz(port: int) -> int | None:
    """This process's ``/healthz`` status code, or None while it is not serving."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def test_a_stuck_leader_fails_liveness_and_loses_the_lease(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
    prometheus: tuple[PrometheusServer, VllmExporter, float], tmp_path: Path,
) -> None:
    """Two `autoscaler run` processes; the leader's control loop hangs (its process keeps running, its elector
    thread too): its /healthz fails after 3 loop intervals + 30 s, it stops renewing the Lease, and the other
    replica takes over within the lease duration after that."""
    import os
    import signal

    from autoscaler.runtime.service import stall_seconds

    kubernetes.client.AppsV1Api(k8s_client).create_namespaced_deployment(namespace, serving_deployment(namespace))
    server, _, _ = prometheus
    policy = tmp_path / "p.yaml"
    write_policy(policy, namespace, mode="dry-run")
    policy.write_text(policy.read_text().replace("loopIntervalSeconds: 30", "loopIntervalSeconds: 5"))
    ports = [free_port(), free_port()]
    hang = [tmp_path / f"hang-{i}" for i in range(2)]
    repo = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.stuck_launcher", "run", "--policy", str(policy),
             "--prometheus-url", server.url, "--kubeconfig", str(control_plane.kubeconfig_path),
             "--listen", f"127.0.0.1:{port}", "--lease-namespace", namespace, "--identity", f"replica-{i}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=repo,
            env={**os.environ, "AUTOSCALER_TEST_HANG_FILE": str(hang[i])},
        )
        for i, port in enumerate(ports)
    ]
    try:
        wait_for(lambda: sorted(leader_gauge(p) or 0.0 for p in ports) == [0.0, 1.0]
                 and all(leader_gauge(p) is not None for p in ports), timeout=60)
        leader = next(i for i, p in enumerate(ports) if leader_gauge(p) == 1.0)
        other = 1 - leader
        assert [healthz(p) for p in ports] == [200, 200]
        hang[leader].touch()  # the leader's next cycle never returns
        stuck_at = time.monotonic()
        wait_for(lambda: healthz(ports[leader]) == 503, timeout=stall_seconds(5.0) + 30)
        detected = time.monotonic() - stuck_at
        assert detected >= stall_seconds(5.0) - 5.0, "not before the loop was stuck for the limit"
        # It stops leading at its elector's next attempt (every 2 s) after the stall.
        wait_for(lambda: leader_gauge(ports[leader]) == 0.0, timeout=5)
        wait_for(lambda: leader_gauge(ports[other]) == 1.0, timeout=15 + 10)  # leaseDurationSeconds, a retry
        lease = kubernetes.client.CoordinationV1Api(k8s_client).read_namespaced_lease(
            "gpu-predictive-autoscaler", namespace)
        assert lease.spec.holder_identity == f"replica-{other}"
        assert procs[leader].poll() is None, "the stuck replica is alive, just stuck: only liveness could tell"
        assert healthz(ports[other]) == 200
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
