"""KubeCluster against the real control plane: scale subresource, placeholders, HPA, manual edits.

Why: the actuator's promises — write replicas only through ``deployments/scale`` with
optimistic concurrency, write nothing when nothing changes, place placeholders exactly where
serving pods go so the real scheduler preempts them for serving pods, defer to an HPA — only
hold if the real API server, scheduler and garbage collector agree. Requests are observed
through a passthrough FaultProxy, so "nothing written" is checked on the wire, not inferred.
"""

from __future__ import annotations

import kubernetes.client
import pytest
from kubernetes.client import ApiClient

from autoscaler.errors import Conflict, HandleMismatch
from autoscaler.kube.client import KubeApi
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.placeholders import MANAGED_BY, MANAGED_BY_LABEL, TARGET_LABEL
from autoscaler.kube.scale_writer import SCALE_WRITE_ATTEMPTS
from autoscaler.ports import ClusterRead
from tests.cluster.fixtures import settled_deployment
from tests.cluster.node_agent import GPU_RESOURCE, NodeAgent
from tests.core.builders import make_decision
from tests.prom.faultproxy import FaultProxy

from .conftest import (
    PLACEHOLDER_CLASS,
    SERVING_IMAGE,
    events_of,
    hpa_body,
    make_target,
    rv,
    serving_deployment,
    wait_for,
)

pytestmark = pytest.mark.cluster

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def writes(proxy: FaultProxy, *, ignore_events: bool = True) -> list[tuple[str, str]]:
    """(method, path) of every write request the proxy forwarded (Events excluded by default)."""
    return [
        (r.method, r.path)
        for r in proxy.records
        if r.method in WRITE_METHODS and not (ignore_events and "/events" in r.path)
    ]


def test_scale_goes_through_subresource_and_nothing_is_written_without_change(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
    no_placeholder_class: None,
) -> None:
    """Replicas are patched only via deployments/scale; an unchanged decision sends no write at all."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace)
    cluster = KubeCluster(via_proxy)

    seen_target = cluster.read(target)
    state = seen_target.state
    assert state.spec_replicas == 1
    assert state.placeholder_replicas == 0
    assert state.hpa_min_replicas is None
    result = cluster.apply(target, make_decision(target, replicas=3, placeholders=1, current_replicas=1), seen_target)
    assert result.wrote_replicas and result.wrote_placeholders and result.refused is None
    scale_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web/scale"
    assert ("PATCH", scale_path) in writes(proxy)
    assert not [w for w in writes(proxy) if w[1] == f"/apis/apps/v1/namespaces/{namespace}/deployments/web"]
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3
    (scaled,) = events_of(core, namespace, name="web", reason="Scaled")
    assert scaled.type == "Normal"
    assert "1 -> 3" in scaled.message and "PredictedLoad" in scaled.message

    # Same decision again: not one write on the wire, resourceVersions unchanged.
    before = (settled_deployment(apps, namespace, "web"), settled_deployment(apps, namespace, "web-capacity"))
    proxy.reset_counts()
    seen_target = cluster.read(target)
    state = seen_target.state
    assert (state.spec_replicas, state.placeholder_replicas) == (3, 1)
    result = cluster.apply(target, make_decision(target, replicas=3, placeholders=1, current_replicas=3), seen_target)
    assert not result.wrote_replicas and not result.wrote_placeholders and not result.notes
    assert writes(proxy, ignore_events=False) == []
    assert (rv(apps, ns=namespace, name="web"), rv(apps, ns=namespace, name="web-capacity")) == before


def test_conflict_is_retried_while_the_spec_is_unchanged_then_given_up(
    apps: kubernetes.client.AppsV1Api, namespace: str, proxy: FaultProxy, via_proxy: KubeApi
) -> None:
    """A 409 on the scale write is retried on a fresh read while the replicas we decided from
    still stand; SCALE_WRITE_ATTEMPTS 409s in a row raise Conflict and change nothing."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace, placeholders={"enabled": False})
    cluster = KubeCluster(via_proxy)
    scale_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web/scale"

    # A real concurrent writer: the Deployment changes between our read and our write. A
    # Deployment's annotations count as spec (they bump metadata.generation), so the Deployment
    # controller answers with a status write of its own; it must be over before we write, or it
    # can land between our re-read and our retry and cost a third PATCH.
    seen_target = cluster.read(target)
    apps.patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": {"someone": "else"}}})
    settled_deployment(apps, namespace, "web")
    proxy.reset_counts()
    assert cluster.apply(target, make_decision(target, replicas=2, current_replicas=1), seen_target).wrote_replicas
    assert [w for w in writes(proxy) if w[1] == scale_path] == [("PATCH", scale_path)] * 2
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2

    # 409 once (injected on the scale path only): the retry succeeds. (Settled first: the
    # Deployment controller's status writes after the last scale would add real 409s.)
    settled_deployment(apps, namespace, "web")
    seen_target = cluster.read(target)
    proxy.status(409, b'{"kind":"Status","code":409,"reason":"Conflict"}', only_paths=r"/scale$", times=1)
    assert cluster.apply(target, make_decision(target, replicas=3, current_replicas=2), seen_target).wrote_replicas
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3

    # 409 on every attempt: Conflict, no crash, nothing changed; the next cycle succeeds.
    settled_deployment(apps, namespace, "web")
    seen_target = cluster.read(target)
    generation = apps.read_namespaced_deployment("web", namespace).metadata.generation
    proxy.reset_counts()
    conflict = b'{"kind":"Status","code":409,"reason":"Conflict"}'
    proxy.status(409, conflict, only_paths=r"/scale$", times=SCALE_WRITE_ATTEMPTS)
    with pytest.raises(Conflict):
        cluster.apply(target, make_decision(target, replicas=4, current_replicas=3), seen_target)
    assert apps.read_namespaced_deployment("web", namespace).metadata.generation == generation
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3
    assert proxy.faulted[scale_path] == SCALE_WRITE_ATTEMPTS
    seen_target = cluster.read(target)
    assert cluster.apply(target, make_decision(target, replicas=4, current_replicas=3), seen_target).wrote_replicas
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 4


def test_placeholder_deployment_mirrors_target_and_is_garbage_collected(
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
    no_placeholder_class: None,
) -> None:
    """Placeholders get the target's scheduling fields, GPUs and image, our PriorityClass, and die with it."""
    tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    apps.create_namespaced_deployment(
        namespace, serving_deployment("web", 0, node_selector={"gpu": "t4"}, tolerations=tolerations)
    )
    target = make_target(namespace, placeholders={"gpus_per_pod": 2})
    cluster = KubeCluster(admin)
    seen_target = cluster.read(target)
    result = cluster.apply(target, make_decision(target, replicas=0, placeholders=2), seen_target)
    assert result.wrote_placeholders and not result.wrote_replicas

    pc = kubernetes.client.SchedulingV1Api(k8s_client).read_priority_class(PLACEHOLDER_CLASS)
    assert (pc.value, pc.preemption_policy, bool(pc.global_default)) == (-10, "Never", False)
    dep = apps.read_namespaced_deployment("web-capacity", namespace)
    assert dep.spec.replicas == 2
    assert dep.metadata.labels[MANAGED_BY_LABEL] == MANAGED_BY
    assert dep.metadata.labels[TARGET_LABEL] == "web"
    web = apps.read_namespaced_deployment("web", namespace)
    (owner,) = dep.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Deployment", "web", web.metadata.uid, False)
    pod = dep.spec.template.spec
    assert pod.priority_class_name == PLACEHOLDER_CLASS
    assert pod.node_selector == {"gpu": "t4"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [(GPU_RESOURCE, "Exists", "NoSchedule")]
    (container,) = pod.containers
    assert container.image == SERVING_IMAGE
    assert container.command == ["sleep", "infinity"]
    assert container.resources.requests[GPU_RESOURCE] == "2"
    assert container.resources.limits[GPU_RESOURCE] == "2"
    assert pod.termination_grace_period_seconds == 0
    assert pod.automount_service_account_token is False
    assert pod.enable_service_links is False
    assert "app" not in dep.spec.template.metadata.labels  # never matches the serving selector
    (created,) = events_of(core, namespace, name="web", reason="PlaceholdersScaled")
    assert "2 placeholder pods" in created.message
    # The ReplicaSet controller created the pods: the PriorityClass admitted them.
    wait_for(lambda: len(core.list_namespaced_pod(namespace, label_selector=f"{TARGET_LABEL}=web").items) == 2)
    settled_deployment(apps, namespace, "web-capacity")  # its status writes would race the template PUT

    # A new serving image: the placeholder template follows (still 2 pods, nothing else changes).
    apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:new"}]}}}}
    )
    seen_target = cluster.read(target)
    assert cluster.apply(target, make_decision(target, replicas=0, placeholders=2), seen_target).wrote_placeholders
    dep = apps.read_namespaced_deployment("web-capacity", namespace)
    assert dep.spec.template.spec.containers[0].image == "vllm:new"
    assert dep.spec.replicas == 2

    # Deleting the serving Deployment garbage-collects its placeholders (no orphaned GPU pods).
    apps.delete_namespaced_deployment("web", namespace)
    wait_for(
        lambda: not [d for d in apps.list_namespaced_deployment(namespace).items if d.metadata.name == "web-capacity"],
        message="placeholder Deployment garbage-collected with its owner",
    )


def test_serving_scale_up_preempts_warm_placeholder_on_same_node(
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    node_agent: NodeAgent,
    no_placeholder_class: None,
) -> None:
    """A placeholder brings up a tainted GPU node; scaling the serving Deployment preempts it there, no new node."""
    node_agent.max_nodes = 1  # the evicted placeholder's replacement stays Pending, deterministically
    node_agent.node_labels = {"gpu": "t4"}
    node_agent.node_taints = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    apps.create_namespaced_deployment(
        namespace, serving_deployment("web", 0, node_selector={"gpu": "t4"}, tolerations=tolerations)
    )
    target = make_target(namespace)
    cluster = KubeCluster(admin, node_cache_seconds=0.0)

    seen_target = cluster.read(target)
    cluster.apply(target, make_decision(target, replicas=0, placeholders=1), seen_target)
    warm = wait_for(
        lambda: (s := cluster.read(target).state).placeholders_warm == 1 and s,
        timeout=60,
        message=lambda: f"placeholder warm on a new node; agent events {node_agent.events}",
    )
    assert (warm.placeholders_cold, warm.placeholders_pending, warm.nodes_ready) == (0, 0, 1)
    (node,) = node_agent.node_names()

    cluster.apply(target, make_decision(target, replicas=1, placeholders=1))  # reads afresh
    state = wait_for(
        lambda: (s := cluster.read(target).state).ready_replicas == 1 and s.placeholders_pending == 1 and s,
        timeout=60,
        message=lambda: f"serving ready, placeholder pending; agent events {node_agent.events}",
    )
    assert state.spec_replicas == 1 and state.placeholders_warm == 0
    (serving,) = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert serving.spec.node_name == node
    assert node_agent.node_names() == [node], "the serving pod must not need a new node"


def test_hpa_coexist_sets_min_replicas_and_clamps_to_max(
    admin: KubeApi,
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    """With hpa: coexist the HPA's minReplicas follows the decision (clamped to maxReplicas); replicas untouched."""
    autoscaling = kubernetes.client.AutoscalingV1Api(k8s_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 2))
    settled_deployment(apps, namespace, "web")
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace, hpa_body("web-hpa", "web", min_replicas=1, max_replicas=5)
    )
    target = make_target(namespace, hpa="coexist", placeholders={"enabled": False})
    cluster = KubeCluster(admin)
    generation = apps.read_namespaced_deployment("web", namespace).metadata.generation

    assert cluster.read(target).state.hpa_min_replicas == 1
    result = cluster.apply(target, make_decision(target, replicas=3, current_replicas=2))
    assert result.wrote_replicas and not result.notes
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler("web-hpa", namespace).spec.min_replicas == 3
    # The Deployment's spec (replicas) is the HPA's to write: its generation did not move.
    assert apps.read_namespaced_deployment("web", namespace).metadata.generation == generation
    (event,) = events_of(core, namespace, name="web", reason="HPAMinReplicasSet")
    assert event.type == "Normal" and "1 -> 3" in event.message

    assert cluster.read(target).state.hpa_min_replicas == 3
    result = cluster.apply(target, make_decision(target, replicas=8, current_replicas=2))
    assert result.notes and "clamped to 5" in result.notes[0]
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler("web-hpa", namespace).spec.min_replicas == 5
    clamped = [e for e in events_of(core, namespace, name="web", reason="HPAMinReplicasSet") if e.type == "Warning"]
    assert clamped and "maxReplicas 5" in clamped[0].message
    assert apps.read_namespaced_deployment("web", namespace).metadata.generation == generation


def test_hpa_refuse_writes_nothing(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    k8s_client: ApiClient,
    namespace: str,
    proxy: FaultProxy,
    via_proxy: KubeApi,
) -> None:
    """With hpa: refuse nothing is written (Deployment and HPA resourceVersions unchanged); a Warning says why."""
    autoscaling = kubernetes.client.AutoscalingV1Api(k8s_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 2))
    settled_deployment(apps, namespace, "web")
    hpa = autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace, hpa_body("web-hpa", "web", min_replicas=1, max_replicas=5)
    )
    target = make_target(namespace, hpa="refuse")
    cluster = KubeCluster(via_proxy)
    before = settled_deployment(apps, namespace, "web")

    seen_target = cluster.read(target)
    proxy.reset_counts()
    result = cluster.apply(target, make_decision(target, replicas=4, placeholders=2, current_replicas=2), seen_target)
    assert result.refused is not None and "HPA web-hpa owns replicas; refusing to write" in result.refused
    assert not result.wrote_replicas and not result.wrote_placeholders
    assert writes(proxy) == []
    assert rv(apps, ns=namespace, name="web") == before
    after = autoscaling.read_namespaced_horizontal_pod_autoscaler("web-hpa", namespace)
    assert after.metadata.resource_version == hpa.metadata.resource_version
    assert not [d for d in apps.list_namespaced_deployment(namespace).items if d.metadata.name == "web-capacity"]
    (event,) = events_of(core, namespace, name="web", reason="Refused")
    assert event.type == "Warning"
    assert "HPA web-hpa owns replicas; refusing to write" in event.message and "PredictedLoad" in event.message

    # Refusing again next cycle aggregates into the same Event (count 2), no Event flood.
    seen_target = cluster.read(target)
    cluster.apply(target, make_decision(target, replicas=4, placeholders=2, current_replicas=2), seen_target)
    (event,) = events_of(core, namespace, name="web", reason="Refused")
    assert event.count == 2


def test_manual_edit_is_reported_once(
    admin: KubeApi, apps: kubernetes.client.AppsV1Api, core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    """A replica change made outside the autoscaler is reported in the result and as a Warning Event, once."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")  # the Deployment controller's status writes would race our write
    target = make_target(namespace, placeholders={"enabled": False})
    cluster = KubeCluster(admin)
    seen_target = cluster.read(target)
    cluster.apply(target, make_decision(target, replicas=3, current_replicas=1), seen_target)

    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 5}})  # kubectl scale
    seen_target = cluster.read(target)
    assert seen_target.state.spec_replicas == 5
    result = cluster.apply(target, make_decision(target, replicas=5, current_replicas=5), seen_target)
    assert result.notes == ("replicas changed outside the autoscaler (was 3, now 5)",)
    assert not result.wrote_replicas
    (event,) = events_of(core, namespace, name="web", reason="ManualEdit")
    assert event.type == "Warning" and event.message == "replicas changed outside the autoscaler (was 3, now 5)"

    seen_target = cluster.read(target)
    assert cluster.apply(target, make_decision(target, replicas=5, current_replicas=5), seen_target).notes == ()
    # A replica that regained leadership forgets: the other leader's writes are no manual edits.
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 6}})
    cluster.reset_memory()
    seen_target = cluster.read(target)
    assert cluster.apply(target, make_decision(target, replicas=6, current_replicas=6), seen_target).notes == ()


def test_apply_writes_against_the_read_it_is_given(
    admin: KubeApi, apps: kubernetes.client.AppsV1Api, namespace: str
) -> None:
    """The read is the guard: a decision made on a read that someone's scale overtook is refused
    (409, spec moved), the same decision on a fresh read, or with none, is written."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace, placeholders={"enabled": False})
    cluster = KubeCluster(admin)
    before = cluster.read(target)
    assert before.target == target.key and before.state.spec_replicas == 1
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})  # kubectl scale
    with pytest.raises(Conflict):
        cluster.apply(target, make_decision(target, replicas=3, current_replicas=1), before)
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2
    after = cluster.read(target)
    assert after.state.spec_replicas == 2
    assert cluster.apply(target, make_decision(target, replicas=3, current_replicas=2), after).wrote_replicas
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3
    assert cluster.apply(target, make_decision(target, replicas=4, current_replicas=3)).wrote_replicas
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 4


def test_a_read_of_another_target_is_refused_and_nothing_is_written(
    admin: KubeApi, apps: kubernetes.client.AppsV1Api, namespace: str, proxy: FaultProxy, via_proxy: KubeApi
) -> None:
    """Handing one target's read to another target's apply or pin is a caller's mistake: refused, no write."""
    for name in ("web", "chat"):
        apps.create_namespaced_deployment(namespace, serving_deployment(name, 1))
        settled_deployment(apps, namespace, name)
    web = make_target(namespace, placeholders={"enabled": False})
    chat = make_target(namespace, "chat", placeholders={"enabled": False})
    cluster = KubeCluster(via_proxy)
    seen_web = cluster.read(web)
    proxy.reset_counts()
    with pytest.raises(HandleMismatch, match=f"of {web.key}, not of this target"):
        cluster.apply(chat, make_decision(chat, replicas=3, current_replicas=1), seen_web)
    with pytest.raises(HandleMismatch, match=f"of {web.key}, not of this target"):
        cluster.pin(chat, 2, seen_web)
    foreign = ClusterRead(target=chat.key, state=seen_web.state, handle="the simulator's read")
    with pytest.raises(HandleMismatch, match="not this cluster's \\(its handle is a str\\)"):
        cluster.apply(chat, make_decision(chat, replicas=3, current_replicas=1), foreign)
    assert writes(proxy) == []
    assert apps.read_namespaced_deployment_scale("chat", namespace).spec.replicas == 1
