"""Smoke tests of the cluster test infrastructure against the real control plane.

Why: the autoscaler's integration tests build on three facts that these tests pin down — the
``deployments/scale`` subresource drives real ReplicaSet/pod creation, the real scheduler
preempts low-priority placeholder pods for serving pods on the SAME (already warm) GPU node,
and the fake node layer (:mod:`tests.cluster.node_agent`) provisions nodes and readies pods the
way cluster-autoscaler and kubelets would. If these fail, the autoscaler tests cannot be
trusted either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .controlplane import ControlPlane, token_subject
from .fixtures import wait_for
from .node_agent import (
    GPU_RESOURCE,
    NODE_READY,
    POD_RUNNING,
    SCALE_UP,
    SCALE_UP_BLOCKED,
    START_DELAY_ANNOTATION,
    NodeAgent,
    is_unschedulable,
)

pytestmark = pytest.mark.cluster

PLACEHOLDER_CLASS = "gpu-placeholder"


# ---------------------------------------------------------------------------------------------
# Helpers


def gpu_deployment(
    name: str,
    replicas: int,
    *,
    priority_class: str | None = None,
    grace_seconds: int | None = None,
    annotations: dict[str, str] | None = None,
) -> kubernetes.client.V1Deployment:
    """A Deployment whose pods request one GPU (the image is never pulled: no kubelets)."""
    labels = {"app": name}
    container = kubernetes.client.V1Container(
        name="main",
        image="registry.k8s.io/pause:3.9",
        resources=kubernetes.client.V1ResourceRequirements(
            requests={GPU_RESOURCE: "1", "cpu": "100m"}, limits={GPU_RESOURCE: "1"}
        ),
    )
    return kubernetes.client.V1Deployment(
        metadata=kubernetes.client.V1ObjectMeta(name=name, labels=labels),
        spec=kubernetes.client.V1DeploymentSpec(
            replicas=replicas,
            selector=kubernetes.client.V1LabelSelector(match_labels=labels),
            template=kubernetes.client.V1PodTemplateSpec(
                metadata=kubernetes.client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=kubernetes.client.V1PodSpec(
                    containers=[container],
                    priority_class_name=priority_class,
                    termination_grace_period_seconds=grace_seconds,
                ),
            ),
        ),
    )


def live_pods(core: kubernetes.client.CoreV1Api, namespace: str, app: str) -> list[Any]:
    """Pods of ``app`` that are not being deleted."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def is_ready(pod: Any) -> bool:
    """True if the pod is Running with condition Ready=True."""
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def ready_replicas(apps: kubernetes.client.AppsV1Api, namespace: str, name: str) -> int:
    """``status.readyReplicas`` of a Deployment (0 when unset)."""
    return apps.read_namespaced_deployment(name, namespace).status.ready_replicas or 0


@pytest.fixture
def core(k8s_client: ApiClient) -> kubernetes.client.CoreV1Api:
    """CoreV1Api on the admin client."""
    return kubernetes.client.CoreV1Api(k8s_client)


@pytest.fixture
def apps(k8s_client: ApiClient) -> kubernetes.client.AppsV1Api:
    """AppsV1Api on the admin client."""
    return kubernetes.client.AppsV1Api(k8s_client)


@pytest.fixture
def placeholder_class(k8s_client: ApiClient) -> Iterator[str]:
    """PriorityClass ``gpu-placeholder`` (value -10, preemptionPolicy Never), deleted after."""
    sched = kubernetes.client.SchedulingV1Api(k8s_client)
    body = kubernetes.client.V1PriorityClass(
        metadata=kubernetes.client.V1ObjectMeta(name=PLACEHOLDER_CLASS),
        value=-10,
        preemption_policy="Never",
        global_default=False,
        description="Placeholder pods that pre-request GPU nodes; preempted by serving pods.",
    )
    try:
        sched.create_priority_class(body)
    except ApiException as err:
        if err.status != 409:
            raise
    yield PLACEHOLDER_CLASS
    sched.delete_priority_class(PLACEHOLDER_CLASS)


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_control_plane_is_up(control_plane: ControlPlane, k8s_client: ApiClient) -> None:
    """The apiserver answers as Kubernetes 1.20 and all four components are running."""
    version = kubernetes.client.VersionApi(k8s_client).get_code()
    assert (version.major, version.minor) == ("1", "20")
    control_plane.assert_running()
    assert set(control_plane.pids) == {
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
    }
    assert control_plane.kubeconfig_path.is_file()
    # A client built from the admin kubeconfig works too (what the autoscaler CLI would use).
    with kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as client:
        names = {n.metadata.name for n in kubernetes.client.CoreV1Api(client).list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_scale_subresource_creates_ready_pods(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    node_agent: NodeAgent,
) -> None:
    """Patching ``deployments/scale`` makes the controller-manager create pods that become Ready."""
    node_agent.node_cold_start_s = 0.5
    apps.create_namespaced_deployment(namespace, gpu_deployment("web", 0))

    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2
    wait_for(lambda: len(live_pods(core, namespace, "web")) == 2, message="2 pods created")
    wait_for(
        lambda: ready_replicas(apps, namespace, "web") == 2,
        message=lambda: f"2 ready replicas; agent events {node_agent.events}",
    )
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.status.replicas == 2
    assert len(node_agent.events_of(NODE_READY)) == 2  # one single-GPU node per pod

    # Scale down: pods are deleted (the agent finishes the termination), idle nodes go away.
    # (Set only now: a fresh node is empty until the scheduler's next retry binds its pod.)
    node_agent.node_idle_remove_s = 1.0
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    wait_for(
        lambda: not core.list_namespaced_pod(namespace, label_selector="app=web").items,
        message="pods deleted after scale to 0",
    )
    wait_for(lambda: not node_agent.node_names(), message="idle nodes removed")


def test_placeholder_preempted_by_serving_pod_on_same_node(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    node_agent: NodeAgent,
    placeholder_class: str,
) -> None:
    """A serving pod preempts the placeholder on its warm node; the placeholder re-requests one."""
    node_agent.max_nodes = 1  # keep the replacement placeholder Pending deterministically

    # 1. The placeholder pre-requests a GPU node, which the "cluster-autoscaler" provisions.
    apps.create_namespaced_deployment(
        namespace,
        gpu_deployment("placeholder", 1, priority_class=placeholder_class, grace_seconds=0),
    )
    wait_for(
        lambda: ready_replicas(apps, namespace, "placeholder") == 1,
        message=lambda: f"placeholder ready; agent events {node_agent.events}",
    )
    (node1,) = node_agent.node_names()
    (placeholder,) = live_pods(core, namespace, "placeholder")
    assert placeholder.spec.node_name == node1
    assert placeholder.spec.priority == -10
    assert placeholder.spec.preemption_policy == "Never"  # NonPreemptingPriority (beta in 1.20)

    # 2. Serving Deployment (priority 0) scaled 0 -> 1 through the scale subresource.
    apps.create_namespaced_deployment(namespace, gpu_deployment("serving", 0))
    apps.patch_namespaced_deployment_scale("serving", namespace, {"spec": {"replicas": 1}})
    wait_for(
        lambda: ready_replicas(apps, namespace, "serving") == 1,
        message=lambda: f"serving pod ready; agent events {node_agent.events}",
    )
    (serving,) = live_pods(core, namespace, "serving")
    assert serving.spec.node_name == node1, "serving pod must land on the warm node"
    assert serving.spec.priority == 0
    assert node_agent.node_names() == [node1], "no new node may be created for the serving pod"
    assert len(node_agent.events_of(SCALE_UP)) == 1

    # 3. The placeholder was evicted; its replacement is Pending for lack of a GPU.
    def replacement_unschedulable() -> Any:
        pods = live_pods(core, namespace, "placeholder")
        if len(pods) == 1 and is_unschedulable(pods[0]):
            return pods[0]
        return None

    replacement = wait_for(replacement_unschedulable, message="replacement placeholder Pending")
    assert replacement.metadata.uid != placeholder.metadata.uid
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(placeholder.metadata.name, namespace)
    assert gone.value.status == 404
    assert replacement.status.phase == "Pending"
    (cond,) = [c for c in replacement.status.conditions if c.type == "PodScheduled"]
    assert cond.status == "False"
    assert cond.reason == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in cond.message
    key = f"{namespace}/{replacement.metadata.name}"
    wait_for(
        lambda: any(e.name == key for e in node_agent.events_of(SCALE_UP_BLOCKED)),
        message="agent saw the replacement as needing a node (blocked by max_nodes=1)",
    )

    # 4. With room to grow, the replacement gets a fresh node: the buffer is restored.
    node_agent.max_nodes = 2
    wait_for(
        lambda: ready_replicas(apps, namespace, "placeholder") == 1,
        message=lambda: f"replacement placeholder ready; agent events {node_agent.events}",
    )
    nodes = node_agent.node_names()
    assert len(nodes) == 2
    (replacement,) = live_pods(core, namespace, "placeholder")
    assert replacement.spec.node_name in set(nodes) - {node1}
    serving_running = next(e for e in node_agent.events_of(POD_RUNNING) if e.name.startswith(f"{namespace}/serving-"))
    assert node_agent.events_of(SCALE_UP)[1].time > serving_running.time


def test_agent_step_is_deterministic(
    control_plane: ControlPlane, core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    """With an explicit clock, ``step(now)`` provisions and starts pods exactly on schedule."""
    client = control_plane.api_client()
    agent = NodeAgent(client, namespace=namespace, node_cold_start_s=2.0, pod_start_s=0.5)
    try:
        pod = kubernetes.client.V1Pod(
            metadata=kubernetes.client.V1ObjectMeta(name="model", annotations={START_DELAY_ANNOTATION: "5"}),
            spec=gpu_deployment("model", 1).spec.template.spec,
        )
        core.create_namespaced_pod(namespace, pod)
        wait_for(
            lambda: is_unschedulable(core.read_namespaced_pod("model", namespace)),
            message="scheduler marks the pod unschedulable",
        )
        agent.step(now=100.0)
        assert [e.kind for e in agent.events] == [SCALE_UP]
        assert agent.node_names() == []
        agent.step(now=101.9)  # cold start not over; the pending pod must not trigger another
        assert agent.node_names() == []
        assert len(agent.events_of(SCALE_UP)) == 1
        agent.step(now=102.0)
        (node,) = agent.node_names()
        assert agent.events[-1][1:] == (NODE_READY, node)
        assert not core.read_node(node).spec.taints

        wait_for(
            lambda: core.read_namespaced_pod("model", namespace).spec.node_name == node,
            message="scheduler binds the pod to the new node",
        )
        agent.step(now=103.0)  # first seen bound: start delay (annotation: 5 s) begins
        agent.step(now=107.9)
        assert core.read_namespaced_pod("model", namespace).status.phase == "Pending"
        agent.step(now=108.0)
        running = core.read_namespaced_pod("model", namespace)
        assert is_ready(running)
        assert running.status.container_statuses[0].ready
        assert agent.events[-1] == (108.0, POD_RUNNING, f"{namespace}/model")

        # Graceful deletion never completes without a kubelet; the agent completes it.
        agent.node_idle_remove_s = 10.0
        core.delete_namespaced_pod("model", namespace, grace_period_seconds=30)
        assert core.read_namespaced_pod("model", namespace).metadata.deletion_timestamp
        agent.step(now=109.0)
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_pod("model", namespace)
        assert gone.value.status == 404
        # Idle removal honours node_idle_remove_s on the agent's clock (idle since 109.0).
        agent.step(now=118.9)
        assert agent.node_names() == [node]
        agent.step(now=119.0)
        assert agent.node_names() == []
    finally:
        agent.cleanup()
        client.close()


def test_garbage_collector_deletes_owned_objects(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    node_agent: NodeAgent,
) -> None:
    """Deleting a Deployment removes its ReplicaSet and pods (garbagecollector controller)."""
    apps.create_namespaced_deployment(namespace, gpu_deployment("gc", 1))
    wait_for(lambda: ready_replicas(apps, namespace, "gc") == 1, message="gc pod ready")
    apps.delete_namespaced_deployment("gc", namespace)
    wait_for(
        lambda: not apps.list_namespaced_replica_set(namespace).items,
        message="ReplicaSet garbage-collected",
    )
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, message="pods garbage-collected")


def test_service_account_token_is_bound_by_rbac(
    control_plane: ControlPlane,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    """A TokenRequest token authenticates as the ServiceAccount and gets only its Role's rights."""
    core.create_namespaced_service_account(
        namespace,
        kubernetes.client.V1ServiceAccount(metadata=kubernetes.client.V1ObjectMeta(name="autoscaler")),
    )
    rbac = kubernetes.client.RbacAuthorizationV1Api(k8s_client)
    rbac.create_namespaced_role(
        namespace,
        kubernetes.client.V1Role(
            metadata=kubernetes.client.V1ObjectMeta(name="scaler"),
            rules=[
                kubernetes.client.V1PolicyRule(
                    api_groups=["apps"],
                    resources=["deployments", "deployments/scale"],
                    verbs=["get", "list", "watch", "patch", "update"],
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        kubernetes.client.V1RoleBinding(
            metadata=kubernetes.client.V1ObjectMeta(name="scaler"),
            role_ref=kubernetes.client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="scaler"),
            subjects=[kubernetes.client.RbacV1Subject(kind="ServiceAccount", name="autoscaler", namespace=namespace)],
        ),
    )
    apps.create_namespaced_deployment(namespace, gpu_deployment("target", 0))

    token = control_plane.service_account_token(namespace, "autoscaler")
    assert token_subject(token) == f"system:serviceaccount:{namespace}:autoscaler"
    kubeconfig = control_plane.make_kubeconfig_for_token(token, verify_tls=True)
    with kubernetes.config.new_client_from_config(config_file=str(kubeconfig)) as sa_client:
        sa_apps = kubernetes.client.AppsV1Api(sa_client)
        # RBAC is evaluated from an informer cache; the binding may take a moment to apply.
        wait_for(
            lambda: sa_apps.patch_namespaced_deployment_scale("target", namespace, {"spec": {"replicas": 1}}),
            message="ServiceAccount may patch deployments/scale",
        )
        assert apps.read_namespaced_deployment("target", namespace).spec.replicas == 1
        with pytest.raises(ApiException) as denied:
            kubernetes.client.CoreV1Api(sa_client).list_namespaced_pod(namespace)
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:
            sa_apps.delete_namespaced_deployment("target", namespace)
        assert denied.value.status == 403
