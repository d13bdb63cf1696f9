"""Status, pause and release against the real control plane.

Why: an operator judges the autoscaler with ``kubectl`` (the status annotation, the Events)
and must be able to stop it and get the cluster back as it was: the HPA's own
``minReplicas``, no placeholder pods holding GPU nodes. Each path (dry-run, pause, a target
deleted from the policy, ``autoscaler release``) is driven through the real Controller,
Service or CLI over :class:`KubeCluster`, and what was written is checked on the API server
and, where "nothing" is promised, on the wire.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiClient

from autoscaler.cli.main import main as cli_main
from autoscaler.kube.client import KubeApi
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.status import (
    ORIGINAL_MIN_REPLICAS_ANNOTATION,
    PAUSED_ANNOTATION,
    PAUSED_REPLICAS_ANNOTATION,
    STATUS_ANNOTATION,
)
from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime.controller import Controller, NullLog
from autoscaler.runtime.service import AlwaysLeader, Service
from autoscaler.runtime.telemetry import Health, Telemetry
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import settled_deployment
from tests.core.builders import make_decision
from tests.fakes import FakeMetrics
from tests.prom.faultproxy import FaultProxy

from .conftest import (
    WallClock,
    events_of,
    hpa_body,
    make_target,
    serving_deployment,
)
from .test_cluster import writes

pytestmark = pytest.mark.cluster

FORBIDDEN = '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected","code":403}'


def _controller(target: Target, cluster: KubeCluster, operations: KubeCluster | None = None) -> Controller:
    return Controller(
        policy=Policy(targets=(target,)),
        metrics=FakeMetrics(),
        cluster=cluster,
        clock=WallClock(),
        operations=operations if operations is not None else cluster,
    )


def _status(apps: kubernetes.client.AppsV1Api, namespace: str, name: str = "web") -> dict[str, Any]:
    """The status annotation, read the way the README's jsonpath line reads it."""
    annotations = apps.read_namespaced_deployment(name, namespace).metadata.annotations or {}
    out: dict[str, Any] = json.loads(annotations[STATUS_ANNOTATION])
    return out


def _annotate(apps: kubernetes.client.AppsV1Api, namespace: str, name: str, values: dict[str, str | None]) -> None:
    apps.patch_namespaced_deployment(name, namespace, {"metadata": {"annotations": values}})
    settled_deployment(apps, namespace, name)


def _hpa(k8s_client: ApiClient, namespace: str, name: str = "web-hpa") -> Any:
    return kubernetes.client.AutoscalingV1Api(k8s_client).read_namespaced_horizontal_pod_autoscaler(name, namespace)


def _enforced_with_hpa(
    apps: kubernetes.client.AppsV1Api, k8s_client: ApiClient, namespace: str, cluster: KubeCluster
) -> Target:
    """``web`` (2 replicas) under an HPA (min 1, max 5), enforced once: HPA min 3, 2 placeholders."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 2))
    settled_deployment(apps, namespace, "web")
    kubernetes.client.AutoscalingV1Api(k8s_client).create_namespaced_horizontal_pod_autoscaler(
        namespace, hpa_body("web-hpa", "web", min_replicas=1, max_replicas=5)
    )
    target = make_target(namespace, hpa="coexist")
    seen_target = cluster.read(target)
    cluster.apply(target, make_decision(target, replicas=3, placeholders=2, current_replicas=2), seen_target)
    return target


def test_dry_run_publishes_status_and_would_scale_and_writes_nothing_else(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """Dry-run: a metadata PATCH (the status) and a WouldScale Event; no scale, no placeholders; repeats silent."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    spec = apps.read_namespaced_deployment("web", namespace).spec
    target = replace(make_target(namespace), mode="dry-run")
    controller = _controller(target, KubeCluster(via_proxy))
    proxy.reset_counts()

    (result,) = controller.reconcile_once().results
    assert result.error is None and result.applied is None and result.status_error is None
    status = _status(apps, namespace)
    assert status["mode"] == "dry-run"
    assert (status["currentReplicas"], status["desiredReplicas"]) == (1, 2)  # 300 req/s at 200 per replica
    assert result.decision is not None and status["reason"] == result.decision.reason.value
    assert status["lastUpdate"].endswith("Z") and "currentPlaceholders" in status
    assert writes(proxy) == [("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/web")]
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 1
    # The API server bumps a Deployment's generation on an annotation change too (they are
    # copied to its ReplicaSet); the spec, and so the pods, stay as they were: no rollout.
    assert apps.read_namespaced_deployment("web", namespace).spec == spec
    assert len(apps.list_namespaced_replica_set(namespace, label_selector="app=web").items) == 1
    assert not [d for d in apps.list_namespaced_deployment(namespace).items if d.metadata.name == "web-capacity"]
    (event,) = events_of(core, namespace, name="web", reason="WouldScale")
    assert event.type == "Normal" and "would scale replicas 1 -> 2" in event.message

    # The same decision next cycle: not one write, not even an Event.
    proxy.reset_counts()
    (result,) = controller.reconcile_once().results
    assert result.error is None
    assert writes(proxy, ignore_events=False) == []


def test_a_failed_status_write_is_counted_and_the_decision_stands(
    admin: KubeApi, apps: kubernetes.client.AppsV1Api, namespace: str, proxy: FaultProxy, via_proxy: KubeApi
) -> None:
    """Enforce with the status PATCH refused (403): the replicas are written, the failure is a metric."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace, placeholders={"enabled": False})
    operations = KubeCluster(via_proxy)
    proxy.status(403, FORBIDDEN, only_paths=r"/deployments/web$")
    controller = _controller(target, KubeCluster(admin), operations)

    cycle = controller.reconcile_once()
    (result,) = cycle.results
    assert result.error is None and result.applied is not None and result.applied.wrote_replicas
    assert result.status_error == "forbidden" and operations.status_errors == 1
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2
    assert STATUS_ANNOTATION not in (apps.read_namespaced_deployment("web", namespace).metadata.annotations or {})
    telemetry = Telemetry()
    telemetry.record_cycle(cycle, started=time.time(), scheduled=None)
    labels = {"namespace": namespace, "deployment": "web", "kind": "forbidden"}
    assert telemetry.registry.get_sample_value("autoscaler_status_write_errors_total", labels) == 1.0


def test_leaving_enforce_for_dry_run_restores_the_hpa_and_empties_placeholders(
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    """coexist records the HPA's own minReplicas once; dry-run puts it back and scales placeholders to 0."""
    cluster = KubeCluster(admin)
    target = _enforced_with_hpa(apps, k8s_client, namespace, cluster)
    hpa = _hpa(k8s_client, namespace)
    assert hpa.spec.min_replicas == 3 and hpa.metadata.annotations[ORIGINAL_MIN_REPLICAS_ANNOTATION] == "1"
    seen_target = cluster.read(target)
    cluster.apply(target, make_decision(target, replicas=4, placeholders=2, current_replicas=2), seen_target)
    hpa = _hpa(k8s_client, namespace)
    assert hpa.spec.min_replicas == 4 and hpa.metadata.annotations[ORIGINAL_MIN_REPLICAS_ANNOTATION] == "1"
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 2

    controller = _controller(replace(target, mode="dry-run"), cluster)
    (result,) = controller.reconcile_once().results
    assert result.error is None and len(result.released) == 2
    hpa = _hpa(k8s_client, namespace)
    assert hpa.spec.min_replicas == 1 and ORIGINAL_MIN_REPLICAS_ANNOTATION not in (hpa.metadata.annotations or {})
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 0
    (event,) = events_of(core, namespace, name="web", reason="Released")
    assert "minReplicas 4 -> 1" in event.message and "placeholders 2 -> 0" in event.message
    assert _status(apps, namespace)["mode"] == "dry-run"

    (result,) = controller.reconcile_once().results
    assert result.error is None and result.released == ()  # nothing left to undo


def test_pause_pins_the_replicas_releases_and_writes_nothing_more(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """paused-replicas pins the scale and empties placeholders; a held pause sends no write; unpausing decides again."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace)
    cluster = KubeCluster(via_proxy)
    seen_target = cluster.read(target)
    cluster.apply(target, make_decision(target, replicas=1, placeholders=2, current_replicas=1), seen_target)
    settled_deployment(apps, namespace, "web-capacity")
    _annotate(apps, namespace, "web", {PAUSED_REPLICAS_ANNOTATION: "3"})
    controller = _controller(target, cluster)

    (result,) = controller.reconcile_once().results
    assert result.error is None and result.paused and result.decision is None and result.applied is None
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 0
    status = _status(apps, namespace)
    assert status["mode"] == "paused" and status["reason"] == "Paused" and "desiredReplicas" not in status
    assert events_of(core, namespace, name="web", reason="Paused")

    settled_deployment(apps, namespace, "web")
    settled_deployment(apps, namespace, "web-capacity")
    proxy.reset_counts()
    (result,) = controller.reconcile_once().results
    assert result.paused and result.released == ()
    assert writes(proxy, ignore_events=False) == []

    _annotate(apps, namespace, "web", {PAUSED_REPLICAS_ANNOTATION: None, PAUSED_ANNOTATION: "true"})
    (result,) = controller.reconcile_once().results  # paused without a pin: held at 3
    assert result.paused and apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3

    _annotate(apps, namespace, "web", {PAUSED_ANNOTATION: None})
    (result,) = controller.reconcile_once().results
    assert not result.paused and result.decision is not None and result.applied is not None
    assert _status(apps, namespace)["mode"] == "enforce"


def test_a_target_deleted_from_the_policy_is_released(
    admin: KubeApi, apps: kubernetes.client.AppsV1Api, k8s_client: ApiClient, namespace: str
) -> None:
    """A new policy generation without the target restores its HPA and empties its placeholders."""
    cluster = KubeCluster(admin)
    target = _enforced_with_hpa(apps, k8s_client, namespace, cluster)
    other = make_target(namespace, "other", placeholders={"enabled": False})

    class Source:
        def __init__(self) -> None:
            self.policy, self.generation = Policy(targets=(target, other)), 1

        def current(self) -> tuple[Policy, int]:
            return self.policy, self.generation

    source = Source()
    controller = Controller(policy=source.policy, metrics=FakeMetrics(), cluster=cluster, clock=WallClock(),
                            operations=cluster)  # fmt: skip
    service = Service(controller=controller, policy_source=source, elector=AlwaysLeader(), telemetry=Telemetry(),
                      health=Health(max_cycle_age=120.0), log=NullLog())  # fmt: skip
    service.follow_policy()
    assert _hpa(k8s_client, namespace).spec.min_replicas == 3

    source.policy, source.generation = Policy(targets=(other,)), 2
    service.follow_policy()
    assert [t.key for t in controller.policy.targets] == [other.key]
    assert _hpa(k8s_client, namespace).spec.min_replicas == 1
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 0


def test_release_command_restores_every_named_target(
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    k8s_client: ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``autoscaler release --target NS/NAME`` (the uninstall step) restores the HPA and empties placeholders."""
    _enforced_with_hpa(apps, k8s_client, namespace, KubeCluster(admin))
    kubeconfig = control_plane.make_kubeconfig_for_token(control_plane.admin_token, verify_tls=True)
    argv = ["release", "--kubeconfig", str(kubeconfig), "--target", f"{namespace}/web"]

    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert f"{namespace}/web: Restored HPA web-hpa minReplicas 3 -> 1; Scaled placeholders 2 -> 0" in out
    assert _hpa(k8s_client, namespace).spec.min_replicas == 1
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 0

    assert cli_main(argv) == 0  # idempotent
    assert f"{namespace}/web: nothing to release" in capsys.readouterr().out
