"""placeholders.backend: capacityBuffer against the real control plane with cluster-autoscaler's CRD.

Why: a CapacityBuffer is the second way to hold GPU nodes ahead of demand; its writes must
be right on a real API server (the CRD's schema and defaults, the PodTemplate it names, the
owner for garbage collection), it must be emptied by every path that empties placeholder
pods (release, pause, dry-run, a backend switch), and a cluster without the CRD must fail
only the target that asks for it. No cluster-autoscaler runs here: what CA would do with
the buffer is the simulator's business (:mod:`autoscaler.offline.sim.cluster`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from autoscaler.errors import ApiNotServed
from autoscaler.kube import capacity_buffer as cb
from autoscaler.kube.client import KubeApi
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.status import PAUSED_ANNOTATION
from autoscaler.policy.schema import Policy, Target
from autoscaler.ports import ApplyResult
from autoscaler.runtime.controller import Controller
from tests.cluster.fixtures import settled_deployment
from tests.core.builders import make_decision
from tests.fakes import FakeMetrics
from tests.prom.faultproxy import FaultProxy

from .conftest import (
    PLACEHOLDER_CLASS,
    ControllerAccount,
    WallClock,
    events_of,
    make_target,
    serving_deployment,
    wait_for,
)
from .test_cluster import writes

pytestmark = pytest.mark.cluster

CRD_FILE = Path(__file__).resolve().parents[1] / "cluster" / "crds" / "capacitybuffers.yaml"
CRD_NAME = "capacitybuffers.autoscaling.x-k8s.io"
MIG = "nvidia.com/mig-1g.10gb"


# ------------------------------------------------------------------------------ fixtures
def _crd_state(ext: kubernetes.client.ApiextensionsV1Api) -> Any:
    try:
        return ext.read_custom_resource_definition(CRD_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture
def buffer_crd(k8s_client: ApiClient, admin: KubeApi) -> str:
    """cluster-autoscaler's CapacityBuffer CRD installed, established and in discovery."""
    ext = kubernetes.client.ApiextensionsV1Api(k8s_client)
    wait_for(lambda: _crd_state(ext) is None or _crd_state(ext).metadata.deletion_timestamp is None,
             message="an earlier deletion of the CRD finished")  # fmt: skip
    if _crd_state(ext) is None:
        ext.create_custom_resource_definition(yaml.safe_load(CRD_FILE.read_text()))

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, message=f"CRD {CRD_NAME} established")
    wait_for(lambda: cb.served(admin), message="capacitybuffers in discovery")
    return CRD_NAME


@pytest.fixture
def no_buffer_crd(k8s_client: ApiClient, admin: KubeApi) -> Iterator[None]:
    """The CapacityBuffer API not served (the CRD deleted if an earlier test installed it)."""
    ext = kubernetes.client.ApiextensionsV1Api(k8s_client)
    if _crd_state(ext) is not None:
        ext.delete_custom_resource_definition(CRD_NAME)
    wait_for(lambda: _crd_state(ext) is None and not cb.served(admin), message="CapacityBuffer API gone", timeout=60)
    yield


@pytest.fixture
def placeholder_class(k8s_client: ApiClient) -> None:
    """The placeholders' PriorityClass, as deploy/priorityclass.yaml ships it."""
    sched = kubernetes.client.SchedulingV1Api(k8s_client)
    try:
        sched.create_priority_class({"metadata": {"name": PLACEHOLDER_CLASS}, "value": -10,
                                     "preemptionPolicy": "Never", "globalDefault": False})  # fmt: skip
    except ApiException as exc:
        if exc.status != 409:
            raise


def _buffer(k8s_client: ApiClient, namespace: str, name: str = "web-capacity") -> Any:
    custom = kubernetes.client.CustomObjectsApi(k8s_client)
    return custom.get_namespaced_custom_object(cb.GROUP, cb.VERSION, namespace, cb.PLURAL, name)


def _buffer_target(namespace: str, deployment: str = "web", **overrides: Any) -> Target:
    return make_target(namespace, deployment, placeholders={"backend": "capacityBuffer"}, **overrides)


def _mig_deployment(name: str, replicas: int) -> dict[str, Any]:
    """A serving Deployment whose pods request one MIG slice (the GPU operator's mixed strategy)."""
    body = serving_deployment(name, replicas, node_selector={"pool": "mig"})
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {MIG: "1"}, "limits": {MIG: "1"}}
    return body


class RisingForecast:
    """300 req/s over the next minutes, 900 req/s within a node cold start: placeholders are wanted."""

    model = "rising"

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """The peak over a window: higher for the longer (node) horizon."""
        return 300.0 if end - start < 300 else 900.0


def _apply(cluster: KubeCluster, target: Target, placeholders: int) -> ApplyResult:
    """Read, then apply a decision of 1 serving replica (as there is) and ``placeholders``."""
    seen = cluster.read(target)
    return cluster.apply(target, make_decision(target, replicas=1, placeholders=placeholders, current_replicas=1), seen)


def _controller(cluster: KubeCluster, *targets: Target, rising: bool = False) -> Controller:
    source = (lambda _target, _now: RisingForecast()) if rising else None
    return Controller(policy=Policy(targets=targets), metrics=FakeMetrics(), cluster=cluster, clock=WallClock(),
                      operations=cluster, forecast_source=source)  # fmt: skip


# --------------------------------------------------------------------------------- tests
def test_enforce_writes_the_buffer_and_its_pod_template(
    buffer_crd: str,
    placeholder_class: None,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """The buffer holds the decided replicas of a PodTemplate requesting the serving pod's MIG slice; no pods.

    A repeated decision writes nothing; a new serving image replaces the PodTemplate once.
    """
    apps.create_namespaced_deployment(namespace, _mig_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    uid = apps.read_namespaced_deployment("web", namespace).metadata.uid
    target = _buffer_target(namespace)
    cluster = KubeCluster(via_proxy)
    seen_target = cluster.read(target)
    result = _apply(cluster, target, 2)
    assert result.wrote_placeholders and not result.notes

    buffer = _buffer(k8s_client, namespace)
    assert buffer["spec"]["replicas"] == 2 and buffer["spec"]["podTemplateRef"] == {"name": "web-capacity"}
    assert buffer["spec"]["provisioningStrategy"] == "buffer.x-k8s.io/active-capacity"  # the CRD's default
    assert buffer["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gpu-predictive-autoscaler"
    assert [o["uid"] for o in buffer["metadata"]["ownerReferences"]] == [uid]
    template = core.read_namespaced_pod_template("web-capacity", namespace)
    assert [o.uid for o in template.metadata.owner_references] == [uid]
    pod = template.template.spec
    requests = pod.containers[0].resources.requests
    assert requests[MIG] == "1" and "nvidia.com/gpu" not in requests
    assert pod.node_selector == {"pool": "mig"} and pod.priority_class_name == PLACEHOLDER_CLASS
    assert not [d for d in apps.list_namespaced_deployment(namespace).items if d.metadata.name == "web-capacity"]
    assert not core.list_namespaced_pod(namespace, label_selector="autoscaler.gpu/target=web").items
    (event,) = events_of(core, namespace, name="web", reason="PlaceholdersScaled")
    assert event.message.startswith("Created PodTemplate web-capacity; Created CapacityBuffer web-capacity with 2 ")

    seen_target = cluster.read(target)
    state = seen_target.state  # the decision core sees the buffer as placeholders, all cold (no image)
    assert (state.placeholder_replicas, state.placeholders_warm, state.placeholders_cold) == (2, 0, 2)
    proxy.reset_counts()
    assert not _apply(cluster, target, 2).wrote_placeholders
    assert writes(proxy, ignore_events=False) == []

    apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:new"}]}}}}
    )
    seen_target = cluster.read(target)
    proxy.reset_counts()
    assert _apply(cluster, target, 3).wrote_placeholders
    assert core.read_namespaced_pod_template("web-capacity", namespace).template.spec.containers[0].image == "vllm:new"
    assert _buffer(k8s_client, namespace)["spec"]["replicas"] == 3
    assert sorted(writes(proxy)) == [
        ("PATCH", f"/apis/autoscaling.x-k8s.io/v1beta1/namespaces/{namespace}/capacitybuffers/web-capacity"),
        ("PUT", f"/api/v1/namespaces/{namespace}/podtemplates/web-capacity"),
    ]


def test_release_dry_run_and_pause_scale_the_buffer_to_zero(
    buffer_crd: str,
    placeholder_class: None,
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    """Every path that empties placeholder pods empties the buffer, and says so."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = _buffer_target(namespace)
    cluster = KubeCluster(admin)

    def hold(count: int) -> None:
        _apply(cluster, target, count)
        assert _buffer(k8s_client, namespace)["spec"]["replicas"] == count

    hold(3)
    assert cluster.release(target) == ("Scaled CapacityBuffer web-capacity 3 -> 0",)
    assert _buffer(k8s_client, namespace)["spec"]["replicas"] == 0
    (event,) = events_of(core, namespace, name="web", reason="Released")
    assert "CapacityBuffer web-capacity 3 -> 0" in event.message
    assert cluster.release(target) == ()  # nothing left to undo

    hold(2)
    (result,) = _controller(cluster, replace(target, mode="dry-run")).reconcile_once().results
    assert result.error is None and result.released == ("Scaled CapacityBuffer web-capacity 2 -> 0",)
    assert _buffer(k8s_client, namespace)["spec"]["replicas"] == 0

    hold(2)
    apps.patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}})
    (result,) = _controller(cluster, target).reconcile_once().results
    assert result.paused and result.released == ("Scaled CapacityBuffer web-capacity 2 -> 0",)
    assert _buffer(k8s_client, namespace)["spec"]["replicas"] == 0


def test_dry_run_creates_no_buffer(
    buffer_crd: str,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """A dry-run target on the buffer backend writes its status annotation only: no buffer, no PodTemplate."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = replace(_buffer_target(namespace), mode="dry-run")
    proxy.reset_counts()
    (result,) = _controller(KubeCluster(via_proxy), target, rising=True).reconcile_once().results
    assert result.error is None and result.decision is not None and result.decision.placeholders > 0
    assert writes(proxy) == [("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/web")]
    custom = kubernetes.client.CustomObjectsApi(k8s_client)
    assert custom.list_namespaced_custom_object(cb.GROUP, cb.VERSION, namespace, cb.PLURAL)["items"] == []
    assert core.list_namespaced_pod_template(namespace).items == []


def test_switching_the_backend_empties_the_other_one(
    buffer_crd: str,
    placeholder_class: None,
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    """pods -> capacityBuffer scales the placeholder Deployment to 0, and back again the buffer."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    pods, buffer = make_target(namespace), _buffer_target(namespace)
    cluster = KubeCluster(admin)
    _apply(cluster, pods, 2)
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 2

    seen_buffer = cluster.read(buffer)
    state = seen_buffer.state
    assert state.placeholder_replicas == 2  # the pods still hold their nodes while switching
    assert _apply(cluster, buffer, 2).wrote_placeholders
    assert _buffer(k8s_client, namespace)["spec"]["replicas"] == 2
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 0
    assert cluster.read(buffer).state.placeholder_replicas == 2
    assert _apply(cluster, pods, 1).wrote_placeholders
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 1
    assert _buffer(k8s_client, namespace)["spec"]["replicas"] == 0
    assert cluster.read(pods).state.placeholder_replicas == 1


def test_without_the_crd_the_target_holds_and_the_others_go_on(
    no_buffer_crd: None, placeholder_class: None, admin: KubeApi, apps: kubernetes.client.AppsV1Api, namespace: str
) -> None:
    """No CapacityBuffer API: that target fails with a clear error and writes nothing; a pods target is scaled."""
    for name in ("web", "chat"):
        apps.create_namespaced_deployment(namespace, serving_deployment(name, 1))
        settled_deployment(apps, namespace, name)
    web, chat = _buffer_target(namespace, "web"), make_target(namespace, "chat")
    cluster = KubeCluster(admin)
    cycle = _controller(cluster, web, chat).reconcile_once()
    by_target = {r.target: r for r in cycle.results}

    error = by_target[web.key].error
    assert isinstance(error, ApiNotServed) and error.kind == "api_not_served" and not error.temporary
    assert "placeholders.backend: capacityBuffer" in str(error) and "autoscaling.x-k8s.io/v1beta1" in str(error)
    assert by_target[web.key].applied is None
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 1  # held
    assert by_target[chat.key].error is None and by_target[chat.key].applied is not None
    assert apps.read_namespaced_deployment_scale("chat", namespace).spec.replicas == 2  # 300 req/s, 200 each
    assert cluster.release(web) == ()  # no API, no buffer: nothing to undo, no error


def test_deploy_rbac_allows_exactly_the_buffer_calls(
    buffer_crd: str,
    placeholder_class: None,
    controller_account: ControllerAccount,
    apps: kubernetes.client.AppsV1Api,
    k8s_client: ApiClient,
) -> None:
    """deploy/rbac.yaml lets the controller create, scale, update and release a buffer; not delete it."""
    ns, api = controller_account.target_namespace, controller_account.api
    apps.create_namespaced_deployment(ns, serving_deployment("web", 1))
    settled_deployment(apps, ns, "web")
    target = _buffer_target(ns)
    cluster = KubeCluster(api)
    assert _apply(cluster, target, 2).wrote_placeholders
    apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:new"}]}}}}
    )
    assert _apply(cluster, target, 1).wrote_placeholders
    assert cluster.release(target) == ("Scaled CapacityBuffer web-capacity 1 -> 0",)
    assert cluster.events.errors == 0
    custom = kubernetes.client.CustomObjectsApi(controller_account.raw)
    core = kubernetes.client.CoreV1Api(controller_account.raw)
    for call in (
        lambda: custom.delete_namespaced_custom_object(cb.GROUP, cb.VERSION, ns, cb.PLURAL, "web-capacity"),
        lambda: custom.list_namespaced_custom_object(cb.GROUP, cb.VERSION, ns, cb.PLURAL),
        lambda: core.delete_namespaced_pod_template("web-capacity", ns),
    ):
        with pytest.raises(ApiException) as denied:
            call()
        assert denied.value.status == 403


def test_without_the_crd_a_pods_target_reads_no_buffer(
    no_buffer_crd: None,
    placeholder_class: None,
    apps: kubernetes.client.AppsV1Api,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """No CapacityBuffer API: one discovery serves every read of the node-cache period; no buffer GET per target."""
    for name in ("web", "chat"):
        apps.create_namespaced_deployment(namespace, serving_deployment(name, 1))
        settled_deployment(apps, namespace, name)
    cluster = KubeCluster(via_proxy)
    proxy.reset_counts()
    for name in ("web", "chat", "web"):
        assert cluster.read(make_target(namespace, name)).state.placeholder_replicas == 0
    group = f"/apis/{cb.GROUP}/{cb.VERSION}"
    assert proxy.count(group) == 1
    for name in ("web", "chat"):
        assert proxy.count(f"{group}/namespaces/{namespace}/{cb.PLURAL}/{name}-capacity") == 0
