"""A KEDA ScaledObject owning the target's HPA, against the real control plane with KEDA's CRD.

Why: KEDA rewrites the HPA it owns from its ScaledObject on every reconcile, so the floor
must be written on the ScaledObject (``minReplicaCount``), with the same clamp as for an
HPA, recorded so a release puts it back; ``refuse`` must name the ScaledObject and write
nothing. No KEDA operator runs here: the test creates the ScaledObject and the
``keda-hpa-<name>`` HPA it would own (owner reference included), as KEDA does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiClient

from autoscaler.kube.client import KubeApi
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.keda import GROUP, PLURAL, VERSION
from autoscaler.kube.status import ORIGINAL_MIN_REPLICAS_ANNOTATION
from autoscaler.policy.schema import Policy
from autoscaler.runtime.controller import Controller
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


def _scaled_object(custom: kubernetes.client.CustomObjectsApi, namespace: str) -> Any:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "web")


def keda_target(apps: kubernetes.client.AppsV1Api, k8s_client: ApiClient, namespace: str) -> Any:
    """Deployment web (2 replicas), ScaledObject web (min 1, max 5) and the HPA KEDA would own."""
    custom = kubernetes.client.CustomObjectsApi(k8s_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 2))
    settled_deployment(apps, namespace, "web")
    so = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScaledObject", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 1, "maxReplicaCount": 5,
                 "triggers": [{"type": "prometheus", "metadata": {
                     "serverAddress": "http://prometheus:9090", "query": "sum(rate(x[1m]))", "threshold": "10"}}]},
    })  # fmt: skip
    hpa = hpa_body("keda-hpa-web", "web", min_replicas=1, max_replicas=5)
    hpa["metadata"]["ownerReferences"] = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScaledObject", "name": "web",
                                           "uid": so["metadata"]["uid"], "controller": True}]  # fmt: skip
    kubernetes.client.AutoscalingV1Api(k8s_client).create_namespaced_horizontal_pod_autoscaler(namespace, hpa)
    return custom


def test_coexist_writes_the_scaled_object_floor_and_release_restores_it(
    keda_crd: str,
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    """minReplicaCount follows the decision (clamped to maxReplicaCount), not KEDA's HPA; dry-run restores it."""
    custom = keda_target(apps, k8s_client, namespace)
    target = make_target(namespace, hpa="coexist", placeholders={"enabled": False})
    cluster = KubeCluster(admin)

    seen_target = cluster.read(target)
    result = cluster.apply(target, make_decision(target, replicas=3, current_replicas=2), seen_target)
    assert result.wrote_replicas and not result.notes
    so = _scaled_object(custom, namespace)
    assert so["spec"]["minReplicaCount"] == 3 and so["metadata"]["annotations"][ORIGINAL_MIN_REPLICAS_ANNOTATION] == "1"
    autoscaling = kubernetes.client.AutoscalingV1Api(k8s_client)
    hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("keda-hpa-web", namespace)
    assert hpa.spec.min_replicas == 1  # KEDA's to write, from the ScaledObject
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2
    (event,) = events_of(core, namespace, name="web", reason="ScaledObjectMinReplicaCountSet")
    assert event.type == "Normal" and "1 -> 3" in event.message

    seen_target = cluster.read(target)
    result = cluster.apply(target, make_decision(target, replicas=8, current_replicas=2), seen_target)
    assert result.notes and "clamped to 5" in result.notes[0]
    so = _scaled_object(custom, namespace)
    assert so["spec"]["minReplicaCount"] == 5 and so["metadata"]["annotations"][ORIGINAL_MIN_REPLICAS_ANNOTATION] == "1"

    controller = Controller(policy=Policy(targets=(replace(target, mode="dry-run"),)), metrics=FakeMetrics(),
                            cluster=cluster, clock=WallClock(), operations=cluster)  # fmt: skip
    (cycle,) = controller.reconcile_once().results
    assert cycle.error is None and cycle.released == ("Restored ScaledObject web minReplicaCount 5 -> 1",)
    so = _scaled_object(custom, namespace)
    assert so["spec"]["minReplicaCount"] == 1
    assert ORIGINAL_MIN_REPLICAS_ANNOTATION not in (so["metadata"].get("annotations") or {})


def test_refuse_names_the_scaled_object_and_writes_nothing(
    keda_crd: str,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """hpa: refuse with KEDA: a Warning names the ScaledObject; not one write on the wire."""
    custom = keda_target(apps, k8s_client, namespace)
    before = _scaled_object(custom, namespace)["metadata"]["resourceVersion"]
    target = make_target(namespace, hpa="refuse")
    cluster = KubeCluster(via_proxy)
    seen_target = cluster.read(target)
    proxy.reset_counts()
    result = cluster.apply(target, make_decision(target, replicas=4, placeholders=1, current_replicas=2), seen_target)
    assert result.refused is not None and "KEDA ScaledObject web (HPA keda-hpa-web) owns replicas" in result.refused
    assert writes(proxy) == []
    assert _scaled_object(custom, namespace)["metadata"]["resourceVersion"] == before
    (event,) = events_of(core, namespace, name="web", reason="Refused")
    assert event.type == "Warning" and "KEDA ScaledObject web" in event.message
