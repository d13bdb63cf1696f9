"""Accelerator kinds other than one ``nvidia.com/gpu``: MIG slices, AMD GPUs, several GPUs.

Why: with the GPU operator's "mixed" MIG strategy a serving pod requests e.g.
``nvidia.com/mig-1g.10gb``; on AMD nodes ``amd.com/gpu``; a large model several GPUs. A
placeholder must request exactly that, or it makes the cluster autoscaler add the wrong
node (or none), and the node count must follow the same resource. Pure parts first, then
the real control plane: the scheduler places a MIG placeholder on a node advertising the
slice.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from autoscaler.adapters.prometheus.signals import cluster_queries
from autoscaler.kube.client import KubeApi
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.placeholders import accelerators, pod_template
from tests.core.builders import make_decision

from .conftest import PLACEHOLDER_CLASS, make_target, serving_deployment, wait_for

MIG = "nvidia.com/mig-1g.10gb"


def _spec(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"containers": list(containers)}


def _container(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": "c", "image": "vllm", "resources": {"requests": requests or {}, "limits": limits or {}}}


def test_accelerators_are_read_from_the_pod_template() -> None:
    """Any nvidia.com/* or amd.com/gpu, request or (extended-resource default) limit, summed over containers."""
    assert accelerators(_spec(_container({"nvidia.com/gpu": "2", "cpu": "4"}))) == {"nvidia.com/gpu": 2}
    assert accelerators(_spec(_container(limits={MIG: "1"}))) == {MIG: 1}
    assert accelerators(_spec(_container({"amd.com/gpu": "1"}), _container({"amd.com/gpu": "2"}))) == {"amd.com/gpu": 3}
    assert accelerators(_spec(_container({"cpu": "1", "example.com/fpga": "1"}))) == {}
    assert accelerators(_spec(_container({"nvidia.com/gpu": "0.5"}))) == {}  # not a device count


def test_placeholders_request_what_a_serving_pod_requests() -> None:
    """The placeholder's request and limit are the serving pod's accelerators times gpusPerPod."""

    def placeholder_resources(spec: dict[str, Any], gpus_per_pod: int = 1) -> dict[str, Any]:
        target = make_target("ns", placeholders={"gpus_per_pod": gpus_per_pod})
        serving = {"metadata": {"name": "web"}, "spec": {"template": {"spec": spec}}}
        resources: dict[str, Any] = pod_template(target, serving)["spec"]["containers"][0]["resources"]
        return resources

    mig = placeholder_resources(_spec(_container({MIG: "1"})))
    assert mig["requests"][MIG] == "1" and mig["limits"][MIG] == "1" and "nvidia.com/gpu" not in mig["requests"]
    amd = placeholder_resources(_spec(_container({"amd.com/gpu": "4"})), gpus_per_pod=2)
    assert amd["requests"]["amd.com/gpu"] == "8" and amd["limits"]["amd.com/gpu"] == "8"
    default = placeholder_resources(_spec(_container({"cpu": "1"})))
    assert default["requests"]["nvidia.com/gpu"] == "1"


def test_node_query_counts_every_accelerator_kind() -> None:
    """The kube-state-metrics node query follows the resource names (dots, slashes, dashes become _)."""
    query = cluster_queries(["vllm"])["node_gpus"]
    assert 'resource=~"nvidia_com_gpu|nvidia_com_mig_.+|amd_com_gpu"' in query


@pytest.fixture
def mig_node(k8s_client: ApiClient) -> Iterator[str]:
    """A Ready node advertising 7 MIG slices, labelled with a pool of its own; its pool label value."""
    core = kubernetes.client.CoreV1Api(k8s_client)
    pool = f"mig-{secrets.token_hex(3)}"
    name = f"node-{pool}"
    core.create_node({"metadata": {"name": name, "labels": {"pool": pool, "kubernetes.io/hostname": name}}})
    resources = {"cpu": "8", "memory": "32Gi", "pods": "110", MIG: "7"}
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node"}
    core.patch_node_status(name, {"status": {"capacity": resources, "allocatable": resources, "conditions": [ready]}})
    # TaintNodesByCondition added node.kubernetes.io/not-ready at creation (no kubelet or node
    # lifecycle controller removes it here), as tests/cluster/node_agent.py does for its nodes.
    core.patch_node(name, {"spec": {"taints": None}})
    try:
        yield pool
    finally:
        with contextlib.suppress(ApiException):
            core.delete_node(name)


@pytest.mark.cluster
def test_a_mig_placeholder_is_scheduled_on_a_node_with_the_slice(
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
    mig_node: str,
) -> None:
    """A MIG target counts the MIG node as ready; its placeholder requests the slice and is bound there."""
    body = serving_deployment("web", 0, node_selector={"pool": mig_node})
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {MIG: "1"}, "limits": {MIG: "1"}}
    apps.create_namespaced_deployment(namespace, body)
    sched = kubernetes.client.SchedulingV1Api(k8s_client)
    with contextlib.suppress(ApiException):
        sched.create_priority_class({"metadata": {"name": PLACEHOLDER_CLASS}, "value": -10,
                                     "preemptionPolicy": "Never", "globalDefault": False})  # fmt: skip
    target = make_target(namespace)
    cluster = KubeCluster(admin, node_cache_seconds=0.0)
    seen_target = cluster.read(target)
    state = seen_target.state
    assert (state.nodes_ready, state.nodes_provisioning) == (1, 0)
    assert cluster.apply(target, make_decision(target, replicas=0, placeholders=1), seen_target).wrote_placeholders
    container = apps.read_namespaced_deployment("web-capacity", namespace).spec.template.spec.containers[0]
    assert container.resources.requests[MIG] == "1" and "nvidia.com/gpu" not in container.resources.requests

    def bound() -> str | None:
        pods = core.list_namespaced_pod(namespace, label_selector="autoscaler.gpu/target=web").items
        return pods[0].spec.node_name if pods and pods[0].spec.node_name else None

    wait_for(lambda: bound() == f"node-{mig_node}", message="placeholder bound to the MIG node")

    amd = serving_deployment("amd", 0, node_selector={"pool": mig_node})
    amd["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"amd.com/gpu": "1"}}
    apps.create_namespaced_deployment(namespace, amd)
    state = cluster.read(make_target(namespace, "amd")).state
    assert state.nodes_ready == 0  # the node has MIG slices, not AMD GPUs
