"""Fixtures for the Kubernetes adapter tests: the real control plane of ``tests/cluster``, reused.

Why: the adapters in :mod:`autoscaler.kube` are only trustworthy when judged against a real
API server, scheduler and controller-manager (optimistic concurrency, RBAC, preemption,
garbage collection). The control plane, per-test namespace and node agent come unchanged
from ``tests/cluster/fixtures.py`` (registered suite-wide in ``tests/conftest.py``). Faults are injected over real HTTP
with :class:`tests.prom.faultproxy.FaultProxy` in front of the API server — the client is
never monkey-patched.

Also here: builders for targets, decisions and GPU Deployments, and the RBAC fixture that
applies ``deploy/rbac.yaml`` itself (namespaces renamed) so the file stays the single source
of truth for the controller's permissions.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from autoscaler.kube.client import KubeApi, connect, from_api_client
from autoscaler.policy.schema import Forecast, Placeholders, Target
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import delete_namespace, wait_for
from tests.cluster.node_agent import GPU_RESOURCE
from tests.prom.faultproxy import FaultProxy

__all__ = ["wait_for"]

REPO_ROOT = Path(__file__).resolve().parents[2]
RBAC_FILE = REPO_ROOT / "deploy" / "rbac.yaml"
#: Namespaces as written in deploy/rbac.yaml (renamed per test).
RBAC_CONTROLLER_NS = "gpu-autoscaler"
RBAC_TARGET_NS = "vllm"
SERVING_IMAGE = "registry.example/vllm-openai:v0.6.3"
PLACEHOLDER_CLASS = "gpu-placeholder"


# ------------------------------------------------------------------------------ builders
def make_target(namespace: str, deployment: str = "web", **overrides: Any) -> Target:
    """An enforcing target with default settings; ``placeholders`` may be a dict of overrides."""
    ph = overrides.pop("placeholders", None)
    target = Target(namespace=namespace, deployment=deployment, mode="enforce", **overrides)
    if ph is not None:
        target = replace(target, placeholders=replace(Placeholders(), **ph))
    return target


def serving_deployment(
    name: str,
    replicas: int,
    *,
    image: str = SERVING_IMAGE,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A vLLM-like Deployment whose pods request one GPU (images are never pulled: no kubelets)."""
    labels = {"app": name}
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "vllm",
                "image": image,
                "resources": {"requests": {GPU_RESOURCE: "1", "cpu": "100m"}, "limits": {GPU_RESOURCE: "1"}},
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def hpa_body(name: str, deployment: str, *, min_replicas: int, max_replicas: int) -> dict[str, Any]:
    """An ``autoscaling/v1`` HPA on a Deployment (inert here: no HPA controller runs)."""
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "targetCPUUtilizationPercentage": 80,
        },
    }


def events_of(core: kubernetes.client.CoreV1Api, namespace: str, *, name: str, reason: str) -> list[Any]:
    """core/v1 Events about object ``name`` with ``reason``."""
    items = core.list_namespaced_event(namespace).items
    return [e for e in items if e.involved_object.name == name and e.reason == reason]


class WallClock:
    """Time at wall pace from a second into the current forecast bucket (at most a bucket behind).

    Wall pace, because the API server's timestamps are wall time. Started at a bucket's
    beginning, because a bucket completing between two of a test's cycles fits a model
    and changes the published status: one more PATCH than a test that counts writes
    expects (it failed so when two cycles straddled hh:m5:00). A test lasts well under a
    bucket, so its cycles stay in one.
    """

    def __init__(self) -> None:
        bucket = float(Forecast().resolution_seconds)
        self._started = time.time()
        self._origin = self._started // bucket * bucket + 1.0

    def now(self) -> float:
        """Unix seconds."""
        return self._origin + (time.time() - self._started)


# ------------------------------------------------------------------------------ fixtures
KEDA_CRD = REPO_ROOT / "tests" / "cluster" / "crds" / "keda-scaledobjects.yaml"


@pytest.fixture(scope="session")
def keda_crd(k8s_client: ApiClient) -> str:
    """KEDA's ScaledObject CRD (our minimal structural copy) installed and established; its name."""
    ext = kubernetes.client.ApiextensionsV1Api(k8s_client)
    body = yaml.safe_load(KEDA_CRD.read_text())
    name = str(body["metadata"]["name"])
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, message=f"CRD {name} established")
    return name


@pytest.fixture
def admin(control_plane: ControlPlane) -> Iterator[KubeApi]:
    """Our :class:`KubeApi` wrapper over an admin client (direct to the API server)."""
    api = from_api_client(control_plane.api_client())
    yield api
    api.close()


@pytest.fixture
def apps(k8s_client: ApiClient) -> kubernetes.client.AppsV1Api:
    """Raw AppsV1Api on the admin client (test set-up and assertions)."""
    return kubernetes.client.AppsV1Api(k8s_client)


@pytest.fixture
def core(k8s_client: ApiClient) -> kubernetes.client.CoreV1Api:
    """Raw CoreV1Api on the admin client (test set-up and assertions)."""
    return kubernetes.client.CoreV1Api(k8s_client)


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the API server (passthrough until a test sets a fault)."""
    with FaultProxy(control_plane.server_url) as fp:
        yield fp


def proxied_api(control_plane: ControlPlane, fp: FaultProxy, *, timeout: tuple[float, float] = (2.0, 5.0)) -> KubeApi:
    """An admin :class:`KubeApi` that talks to the API server through the proxy (plain HTTP)."""
    cfg = kubernetes.client.Configuration()
    cfg.host = fp.url
    cfg.api_key = {"authorization": control_plane.admin_token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return from_api_client(ApiClient(configuration=cfg), timeout=timeout)


@pytest.fixture
def via_proxy(control_plane: ControlPlane, proxy: FaultProxy) -> Iterator[KubeApi]:
    """Admin :class:`KubeApi` through :func:`proxy`."""
    api = proxied_api(control_plane, proxy)
    yield api
    api.close()


@pytest.fixture
def no_placeholder_class(k8s_client: ApiClient) -> Iterator[None]:
    """Make sure the placeholder PriorityClass does not exist before the test (and remove it after)."""
    sched = kubernetes.client.SchedulingV1Api(k8s_client)

    def delete() -> None:
        with contextlib.suppress(ApiException):
            sched.delete_priority_class(PLACEHOLDER_CLASS)
        wait_for(lambda: not _exists(lambda: sched.read_priority_class(PLACEHOLDER_CLASS)), message="PC deleted")

    delete()
    yield
    delete()


def _exists(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@dataclass
class ControllerAccount:
    """The controller's ServiceAccount bound by deploy/rbac.yaml, and a client acting as it."""

    namespace: str
    target_namespace: str
    api: KubeApi
    raw: ApiClient


def rbac_objects(controller_ns: str, target_ns: str) -> list[dict[str, Any]]:
    """The objects of deploy/rbac.yaml with its two namespaces renamed (rules untouched)."""
    rename = {RBAC_CONTROLLER_NS: controller_ns, RBAC_TARGET_NS: target_ns}
    objects = [o for o in yaml.safe_load_all(RBAC_FILE.read_text()) if o]
    for obj in objects:
        meta = obj["metadata"]
        if "namespace" in meta:
            meta["namespace"] = rename[meta["namespace"]]
        for subject in obj.get("subjects") or []:
            subject["namespace"] = rename[subject["namespace"]]
    return objects


def apply_objects(client: ApiClient, objects: list[dict[str, Any]]) -> None:
    """Create (or replace, for leftovers of an earlier test) ServiceAccounts and RBAC objects."""
    core = kubernetes.client.CoreV1Api(client)
    rbac = kubernetes.client.RbacAuthorizationV1Api(client)
    methods: dict[str, tuple[Any, str]] = {
        "ServiceAccount": (core, "namespaced_service_account"),
        "Role": (rbac, "namespaced_role"),
        "RoleBinding": (rbac, "namespaced_role_binding"),
        "ClusterRole": (rbac, "cluster_role"),
        "ClusterRoleBinding": (rbac, "cluster_role_binding"),
    }
    for obj in objects:
        api, suffix = methods[obj["kind"]]
        scope = (obj["metadata"]["namespace"],) if "namespace" in obj["metadata"] else ()
        try:
            getattr(api, f"create_{suffix}")(*scope, obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
            getattr(api, f"replace_{suffix}")(obj["metadata"]["name"], *scope, obj)


def delete_cluster_objects(client: ApiClient, objects: list[dict[str, Any]]) -> None:
    """Delete the cluster-scoped objects of deploy/rbac.yaml (namespaced ones go with their namespace)."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(client)
    for obj in objects:
        with contextlib.suppress(ApiException):
            if obj["kind"] == "ClusterRole":
                rbac.delete_cluster_role(obj["metadata"]["name"])
            elif obj["kind"] == "ClusterRoleBinding":
                rbac.delete_cluster_role_binding(obj["metadata"]["name"])


@pytest.fixture
def controller_account(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str
) -> Iterator[ControllerAccount]:
    """The controller's ServiceAccount in its own namespace, bound by deploy/rbac.yaml.

    The test's namespace plays the target namespace (the file's "vllm"). The client
    authenticates with a TokenRequest token and verifies TLS, loaded through
    :func:`autoscaler.kube.client.connect` from a kubeconfig, as the CLI would.
    """
    core = kubernetes.client.CoreV1Api(k8s_client)
    controller_ns = f"gpu-autoscaler-{secrets.token_hex(3)}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=controller_ns)))
    objects = rbac_objects(controller_ns, namespace)
    apply_objects(k8s_client, objects)
    token = control_plane.service_account_token(controller_ns, "gpu-autoscaler")
    api = connect(kubeconfig=control_plane.make_kubeconfig_for_token(token, verify_tls=True), timeout=(2.0, 10.0))
    # RBAC is evaluated from an informer cache: wait until the bindings are in force.
    probe = kubernetes.client.AuthorizationV1Api(api.api_client)

    def allowed(ns: str, resource: str, verb: str, group: str = "") -> bool:
        review = kubernetes.client.V1SelfSubjectAccessReview(
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    namespace=ns, resource=resource, verb=verb, group=group
                )
            )
        )
        return bool(probe.create_self_subject_access_review(review).status.allowed)

    wait_for(
        lambda: (
            allowed(namespace, "pods", "list")
            and allowed(controller_ns, "leases", "create", "coordination.k8s.io")
            and allowed("", "nodes", "list")
        ),
        message="deploy/rbac.yaml bindings in force",
    )
    try:
        yield ControllerAccount(namespace=controller_ns, target_namespace=namespace, api=api, raw=api.api_client)
    finally:
        api.close()
        delete_cluster_objects(k8s_client, objects)
        delete_namespace(core, controller_ns)


def rv(apps: kubernetes.client.AppsV1Api, *, ns: str, name: str) -> str:
    """resourceVersion of a Deployment."""
    return str(apps.read_namespaced_deployment(name, ns).metadata.resource_version)
