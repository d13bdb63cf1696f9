"""deploy/rbac.yaml is exactly enough: the controller's ServiceAccount can do its whole job and nothing else.

Why: RBAC mistakes show up only in a real cluster — too little and the controller fails at its
first write, too much and it is a liability. The ServiceAccount here is bound by the objects of
deploy/rbac.yaml itself (namespaces renamed), authenticates with a real TokenRequest token,
and runs the real adapters (KubeCluster, LeaseElector, ConfigMapPolicySource).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from autoscaler.errors import Forbidden, PolicyRejected
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.fit_store import ConfigMapFitStore, fit_store_prefix
from autoscaler.kube.leader import LeaseElector
from autoscaler.kube.policy_source import ConfigMapPolicySource
from autoscaler.kube.status import STATUS_ANNOTATION
from autoscaler.ports import TargetStatus
from tests.cluster.fixtures import settled_deployment
from tests.core.builders import make_decision

from .conftest import (
    PLACEHOLDER_CLASS,
    REPO_ROOT,
    ControllerAccount,
    events_of,
    hpa_body,
    make_target,
    serving_deployment,
    wait_for,
)
from .test_keda import keda_target

pytestmark = pytest.mark.cluster

POLICY_CM = "gpu-autoscaler-policy"
LEASE = "gpu-predictive-autoscaler"
PRIORITY_CLASS_FILE = REPO_ROOT / "deploy" / "priorityclass.yaml"


def test_controller_account_can_do_everything_it_needs(
    controller_account: ControllerAccount,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    no_placeholder_class: None,
) -> None:
    """Read, scale, placeholders (create/scale/update), HPA, status, release, Events, Lease and policy all work.

    The PriorityClass comes from deploy/priorityclass.yaml (applied as an install would): the
    controller may only read it.
    """
    ns, cns, api = controller_account.target_namespace, controller_account.namespace, controller_account.api
    kubernetes.client.SchedulingV1Api(k8s_client).create_priority_class(yaml.safe_load(PRIORITY_CLASS_FILE.read_text()))
    apps.create_namespaced_deployment(ns, serving_deployment("web", 1))
    apps.create_namespaced_deployment(ns, serving_deployment("chat", 1))
    autoscaling = kubernetes.client.AutoscalingV1Api(k8s_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        ns, hpa_body("chat", "chat", min_replicas=1, max_replicas=4)
    )
    cluster = KubeCluster(api)
    web = make_target(ns, "web")
    chat = make_target(ns, "chat", hpa="coexist", placeholders={"enabled": False})
    # The scale write is guarded by the resourceVersion it read: let the Deployment controller
    # finish writing the new Deployment's status first (its writes would be 409s not ours).
    settled_deployment(apps, ns, "web")

    seen_web = cluster.read(web)
    state = seen_web.state
    assert state.spec_replicas == 1 and state.nodes_ready is not None  # nodes are listable
    result = cluster.apply(web, make_decision(web, replicas=2, placeholders=1, current_replicas=1), seen_web)
    assert result.wrote_replicas and result.wrote_placeholders and not result.notes
    assert kubernetes.client.SchedulingV1Api(k8s_client).read_priority_class(PLACEHOLDER_CLASS).value == -10
    seen_web = cluster.read(web)
    decision = make_decision(web, replicas=2, placeholders=2, current_replicas=2)
    assert cluster.apply(web, decision, seen_web).wrote_placeholders
    settled_deployment(apps, ns, "web-capacity")  # the template PUT is guarded by its resourceVersion
    apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:new"}]}}}}
    )
    seen_web = cluster.read(web)
    decision = make_decision(web, replicas=2, placeholders=2, current_replicas=2)
    assert cluster.apply(web, decision, seen_web).wrote_placeholders
    capacity = apps.read_namespaced_deployment("web-capacity", ns)
    assert capacity.spec.replicas == 2 and capacity.spec.template.spec.containers[0].image == "vllm:new"
    assert apps.read_namespaced_deployment_scale("web", ns).spec.replicas == 2

    seen_chat = cluster.read(chat)
    assert cluster.apply(chat, make_decision(chat, replicas=3, current_replicas=1), seen_chat).wrote_replicas
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler("chat", ns).spec.min_replicas == 3
    assert events_of(core, ns, name="web", reason="Scaled")
    assert events_of(core, ns, name="chat", reason="HPAMinReplicasSet")
    status = TargetStatus(mode="dry-run", time=time.time(), current_replicas=2, current_placeholders=2,
                          desired_replicas=3, desired_placeholders=2, reason="PredictedLoad")  # fmt: skip
    assert cluster.publish(web, status) is None and cluster.status_errors == 0
    assert STATUS_ANNOTATION in apps.read_namespaced_deployment("web", ns).metadata.annotations
    assert events_of(core, ns, name="web", reason="WouldScale")
    assert cluster.release(chat) and cluster.release(web)
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler("chat", ns).spec.min_replicas == 1
    assert apps.read_namespaced_deployment("web-capacity", ns).spec.replicas == 0
    assert cluster.events.errors == 0

    store = ConfigMapFitStore(api, namespace=cns, prefix=fit_store_prefix(LEASE))
    store.save([b"one", b"two"])  # create
    store.save([b"three"])  # replace, then delete the part no longer needed
    assert store.load() == [b"three"]

    elector = LeaseElector(api, namespace=cns, name=LEASE, identity="replica-a")
    assert elector.step() is True  # create
    assert elector.step() is True  # get + update
    elector.stop()  # release (update)
    stored = kubernetes.client.CoordinationV1Api(k8s_client).read_namespaced_lease(LEASE, cns)
    assert stored.spec.holder_identity is None

    text = f"targets:\n  - namespace: {ns}\n    deployment: web\n"
    core.create_namespaced_config_map(
        cns,
        kubernetes.client.V1ConfigMap(
            metadata=kubernetes.client.V1ObjectMeta(name=POLICY_CM), data={"policy.yaml": text}
        ),
    )
    rejected: list[PolicyRejected] = []
    source = ConfigMapPolicySource(api, namespace=cns, name=POLICY_CM, on_rejected=rejected.append).start()
    try:
        assert source.current()[1] == 1
        core.patch_namespaced_config_map(POLICY_CM, cns, {"data": {"policy.yaml": "targets: 3\n"}})
        wait_for(lambda: rejected, message="invalid policy rejected through the watch")
        wait_for(lambda: events_of(core, cns, name=POLICY_CM, reason="PolicyRejected"), message="Event on the CM")
        assert source.events.errors == 0
    finally:
        source.stop()


def _denied_calls(account: ControllerAccount) -> list[tuple[str, Callable[[], Any]]]:
    ns, cns, raw = account.target_namespace, account.namespace, account.raw
    apps = kubernetes.client.AppsV1Api(raw)
    core = kubernetes.client.CoreV1Api(raw)
    coordination = kubernetes.client.CoordinationV1Api(raw)
    scheduling = kubernetes.client.SchedulingV1Api(raw)
    autoscaling = kubernetes.client.AutoscalingV1Api(raw)
    rbac = kubernetes.client.RbacAuthorizationV1Api(raw)
    pod = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}}
    labels = {"metadata": {"labels": {"a": "b"}}}
    hpa = hpa_body("x", "web", min_replicas=1, max_replicas=2)
    priority_class = {"metadata": {"name": "x"}, "value": 1000000, "globalDefault": True}
    return [
        ("delete a Deployment", lambda: apps.delete_namespaced_deployment("web", ns)),
        ("list Deployments", lambda: apps.list_namespaced_deployment(ns)),
        ("read Deployments elsewhere", lambda: apps.read_namespaced_deployment("web", "default")),
        ("list Secrets", lambda: core.list_namespaced_secret(ns)),
        ("read a Secret", lambda: core.read_namespaced_secret("token", cns)),
        ("create a pod", lambda: core.create_namespaced_pod(ns, pod)),
        ("patch a pod", lambda: core.patch_namespaced_pod("web-1", ns, labels)),
        ("delete pods", lambda: core.delete_collection_namespaced_pod(ns)),
        ("list pods elsewhere", lambda: core.list_namespaced_pod("default")),
        ("list all ConfigMaps", lambda: core.list_namespaced_config_map(cns)),
        ("list another ConfigMap", lambda: core.list_namespaced_config_map(cns, field_selector="metadata.name=x")),
        ("write the policy", lambda: core.patch_namespaced_config_map(POLICY_CM, cns, {"data": {"a": "b"}})),
        ("read another Lease", lambda: coordination.read_namespaced_lease("other", cns)),
        ("delete the Lease", lambda: coordination.delete_namespaced_lease(LEASE, cns)),
        ("read another PriorityClass", lambda: scheduling.read_priority_class("system-node-critical")),
        ("delete the PriorityClass", lambda: scheduling.delete_priority_class(PLACEHOLDER_CLASS)),
        ("create a PriorityClass", lambda: scheduling.create_priority_class(priority_class)),
        ("delete a node", lambda: core.delete_node("gpu-node-1")),
        ("delete an HPA", lambda: autoscaling.delete_namespaced_horizontal_pod_autoscaler("chat", ns)),
        ("create an HPA", lambda: autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, hpa)),
        ("read RBAC", rbac.list_cluster_role),
    ]


def test_controller_account_is_denied_everything_else(
    controller_account: ControllerAccount, apps: kubernetes.client.AppsV1Api
) -> None:
    """Deleting Deployments, reading Secrets, patching pods and other calls outside its job get HTTP 403."""
    apps.create_namespaced_deployment(controller_account.target_namespace, serving_deployment("web", 0))
    allowed = []
    for label, call in _denied_calls(controller_account):
        try:
            call()
        except ApiException as exc:
            if exc.status != 403:
                allowed.append(f"{label}: HTTP {exc.status}")
        else:
            allowed.append(f"{label}: succeeded")
    assert allowed == []
    # Through our client the denial is a (permanent) Forbidden.
    api = controller_account.api
    with pytest.raises(Forbidden) as denied:
        api.call(api.core.list_namespaced_secret, controller_account.target_namespace, what="list secrets")
    assert denied.value.temporary is False and "HTTP 403" in str(denied.value)


def test_controller_account_can_coexist_with_keda(
    controller_account: ControllerAccount, keda_crd: str, apps: kubernetes.client.AppsV1Api, k8s_client: ApiClient
) -> None:
    """deploy/rbac.yaml lets the controller read a ScaledObject and patch its minReplicaCount, and release it."""
    ns = controller_account.target_namespace
    custom = keda_target(apps, k8s_client, ns)
    cluster = KubeCluster(controller_account.api)
    target = make_target(ns, "web", hpa="coexist", placeholders={"enabled": False})
    seen_target = cluster.read(target)
    assert cluster.apply(target, make_decision(target, replicas=3, current_replicas=2), seen_target).wrote_replicas
    assert (
        custom.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", "web")["spec"][
            "minReplicaCount"
        ]
        == 3
    )
    assert cluster.release(target) == ("Restored ScaledObject web minReplicaCount 3 -> 1",)
    assert cluster.events.errors == 0
