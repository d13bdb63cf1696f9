"""Two shards of ``autoscaler run`` split one policy: each holds its own Lease, scales only its targets.

Why: sharding is only safe if each controller Deployment acts on its own targets and on
nothing else, with its own leader election. Two real controller processes (the CLI as
shipped) run against a real Prometheus and the real control plane with ONE policy listing
three targets in two namespaces: shard A admits namespace A (``--shard-namespaces``), shard
B admits Deployments labelled ``team=b`` (``--shard-selector``), and the third target
(namespace B, ``team=c``) belongs to no shard. All three are overloaded (observed load
needs 3 replicas, they run 1), so any controller acting on a target would scale it.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client import ApiClient

from autoscaler.kube.fit_store import fit_store_prefix
from autoscaler.kube.sharding import CLAIMS_ANNOTATION, SHARD_LEASE_LABEL
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import delete_namespace
from tests.prom.exporters import VllmExporter
from tests.prom.server import PrometheusServer, ScrapeJob, ScrapeTarget, free_port

from .conftest import wait_for

#: Requests per second each target serves now; with perReplica 100 it needs 3 replicas.
LOAD_RPS = 250.0


@pytest.fixture
def second_namespace(namespace: str, k8s_client: ApiClient) -> Iterator[str]:
    """A second fresh namespace (shard B's), deleted afterwards like the ``namespace`` fixture's."""
    core = kubernetes.client.CoreV1Api(k8s_client)
    name = f"{namespace[:50]}-b"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    delete_namespace(core, name)


def deployment(name: str, team: str) -> dict[str, object]:
    """A small serving Deployment labelled ``team`` (no GPU: its pods need not run)."""
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"team": team}},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.6.3"}]},
            },
        },
    }


def policy_text(targets: list[tuple[str, str]]) -> str:
    """One enforcing policy for all targets: 100 req/s per replica, no placeholders, 5 s loop."""
    lines = ["loopIntervalSeconds: 5", "targets:"]
    for ns, name in targets:
        lines += [
            f"  - namespace: {ns}",
            f"    deployment: {name}",
            "    mode: enforce",
            "    capacity: {perReplica: 100}",
            "    scaling: {maxReplicas: 4}",
            "    placeholders: {enabled: false}",
            "    metrics: {rateWindow: 5s}",
            "    forecast: {model: naive, historyDays: 1}",
            "    coldStart: {learn: false}",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def loaded_prometheus(namespace: str, second_namespace: str) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping one vLLM-like exporter per target, each serving LOAD_RPS now."""
    pods = {(namespace, "vllm-a"), (second_namespace, "vllm-b"), (second_namespace, "vllm-c")}
    exporters = {key: VllmExporter("m") for key in pods}
    for exporter in exporters.values():
        exporter.start()
    server = PrometheusServer([ScrapeJob("vllm", [
        ScrapeTarget(exp.address, {"namespace": ns, "pod": f"{name}-5d8f7b9c4-abcde"})
        for (ns, name), exp in exporters.items()
    ])], scrape_interval="1s")
    stop = threading.Event()

    def feed() -> None:
        started, done = time.monotonic(), 0
        while not stop.wait(0.1):
            due = math.floor(LOAD_RPS * (time.monotonic() - started)) - done
            if due > 0:
                for exporter in exporters.values():
                    exporter.complete(due, latency_seconds=0.1)
                done += due

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    server.start()  # the first scrapes happen while the controllers import (a cycle without data only holds)
    try:
        yield server
    finally:
        stop.set()
        server.stop()
        for exporter in exporters.values():
            exporter.stop()


def test_two_shards_hold_their_own_leases_and_scale_only_their_targets(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str, second_namespace: str,
    loaded_prometheus: PrometheusServer, tmp_path: Path,
) -> None:
    """Shard A (namespace) and shard B (label selector) each lead their own Lease and scale only their target."""
    apps = kubernetes.client.AppsV1Api(k8s_client)
    coordination = kubernetes.client.CoordinationV1Api(k8s_client)
    ns_a, ns_b = namespace, second_namespace
    apps.create_namespaced_deployment(ns_a, deployment("vllm-a", "a"))
    apps.create_namespaced_deployment(ns_b, deployment("vllm-b", "b"))
    apps.create_namespaced_deployment(ns_b, deployment("vllm-c", "c"))
    generation_c = apps.read_namespaced_deployment("vllm-c", ns_b).metadata.generation
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text([(ns_a, "vllm-a"), (ns_b, "vllm-b"), (ns_b, "vllm-c")]))
    shards = {
        "shard-a": ["--shard-namespaces", ns_a],
        "shard-b": ["--shard-selector", "team in (b),tier!=batch"],
    }
    logs = {name: tmp_path / f"{name}.log" for name in shards}
    procs = {}
    for name, flags in shards.items():
        with logs[name].open("w") as err:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "autoscaler", "run", "--policy", str(policy),
                 "--prometheus-url", loaded_prometheus.url, "--kubeconfig", str(control_plane.kubeconfig_path),
                 "--listen", f"127.0.0.1:{free_port()}", "--lease-namespace", ns_a, "--lease-name", name,
                 "--identity", f"{name}-0", *flags],
                stdout=subprocess.DEVNULL, stderr=err,
            )

    def tails() -> str:
        return "\n".join(f"--- {n}\n" + logs[n].read_text()[-1500:] for n in logs)

    def published(lease_name: str, claimed: list[str]) -> kubernetes.client.V1Lease | None:
        """The shard's Lease once its leader published exactly ``claimed``."""
        lease = coordination.read_namespaced_lease(lease_name, ns_a)
        annotations = lease.metadata.annotations or {}
        return lease if json.loads(annotations.get(CLAIMS_ANNOTATION, "null")) == claimed else None

    def replicas(ns: str, name: str) -> int:
        return int(apps.read_namespaced_deployment_scale(name, ns).spec.replicas)

    try:
        wait_for(lambda: replicas(ns_a, "vllm-a") > 1 and replicas(ns_b, "vllm-b") > 1, timeout=120, interval=0.5,
                 message=lambda: "both shards to scale their own target\n" + tails())
        for name, claimed in (("shard-a", [f"{ns_a}/vllm-a"]), ("shard-b", [f"{ns_b}/vllm-b"])):
            lease = wait_for(lambda n=name, c=claimed: published(n, c), timeout=60,
                             message=f"{name} to publish its claims")
            assert lease.spec.holder_identity == f"{name}-0"
            assert lease.metadata.labels[SHARD_LEASE_LABEL] == "true"
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=30)
        # Every cycle of both shards is over: the target of no shard was never written.
        after_c = apps.read_namespaced_deployment("vllm-c", ns_b)
        assert after_c.metadata.generation == generation_c and after_c.spec.replicas == 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert all(p.returncode == 0 for p in procs.values()), tails()

    events = {n: _json_lines(logs[n].read_text()) for n in logs}
    own = {"shard-a": f"{ns_a}/vllm-a", "shard-b": f"{ns_b}/vllm-b"}
    for name, evs in events.items():
        decided = {e["target"] for e in evs if e.get("event") == "decision"}
        assert decided == {own[name]}, (name, decided)
        start = next(e for e in evs if e.get("event") == "shard")
        assert start["lease"] == f"{ns_a}/{name}"
        owned = [e for e in evs if e.get("event") == "shard_targets"]
        assert owned and owned[0]["owned"] == 1 and owned[0]["total"] == 3 and owned[0]["targets"] == [own[name]]
        assert not [e for e in evs if e.get("event") in ("shard_overlap", "shard_target_unreadable")]
    # A clean stop saved each shard's fitted state in its own set, beside its Lease.
    core = kubernetes.client.CoreV1Api(k8s_client)
    for name in own:
        part = core.read_namespaced_config_map(f"{fit_store_prefix(name)}-0", ns_a)
        assert part.binary_data and [e for e in events[name] if e.get("event") == "fit_state_saved"]
    assert next(e for e in events["shard-a"] if e.get("event") == "shard")["namespaces"] == [ns_a]
    assert next(e for e in events["shard-b"] if e.get("event") == "shard")["selector"] == "team in (b),tier!=batch"


def _json_lines(text: str) -> list[dict[str, object]]:
    """The JSON log events of a process whose stderr (warnings) shares the file with its logs.

    A warning written by another thread can land on the same line right after an event,
    so each line is decoded up to the end of its first JSON document.
    """
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(line)[0] for line in text.splitlines() if line.startswith("{")]
