"""API server faults over real HTTP: every failure becomes one of our error types and nothing crashes.

Why: the control loop decides what to do from the *kind* of failure (retry next cycle, or
report and wait for a person), so 403/404/409/5xx, timeouts, dropped connections and garbage
answers must arrive as :mod:`autoscaler.errors` types, never as a client exception or an
``AttributeError``. A FaultProxy in front of the real API server produces each fault; the
client is not patched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kubernetes.client
import pytest

from autoscaler.errors import ActuationError, ClusterUnavailable, Forbidden, InvalidRequest, NotFound
from autoscaler.kube.client import KubeApi
from autoscaler.kube.cluster import KubeCluster
from autoscaler.policy.schema import Policy
from autoscaler.runtime.controller import Controller
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import settled_deployment
from tests.core.builders import make_decision
from tests.fakes import FakeMetrics, StepClock
from tests.prom.faultproxy import FaultProxy

from .conftest import (
    events_of,
    hpa_body,
    make_target,
    proxied_api,
    serving_deployment,
)

pytestmark = pytest.mark.cluster

STATUS_BODY = '{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected {code}","code":{code}}}'
Fault = Callable[[FaultProxy], None]
#: The controller's virtual time: it stamps decisions only, never compared with the API server's.
START = 1_700_000_000.0


def _status(code: int) -> Fault:
    return lambda p: p.status(code, STATUS_BODY.format(code=code))


FAULTS: list[tuple[str, Fault, type[ActuationError]]] = [
    ("403", _status(403), Forbidden),
    ("401", _status(401), Forbidden),
    ("404", _status(404), NotFound),
    ("422", _status(422), InvalidRequest),
    ("429", _status(429), ClusterUnavailable),
    ("500", _status(500), ClusterUnavailable),
    ("503", _status(503), ClusterUnavailable),
    ("timeout", lambda p: p.delay(8.0), ClusterUnavailable),
    ("dropped", lambda p: p.close_connections(), ClusterUnavailable),
    ("garbage", lambda p: p.garbage(), ClusterUnavailable),
]


@pytest.fixture
def fast_api(control_plane: ControlPlane, proxy: FaultProxy) -> Iterator[KubeApi]:
    """Admin client through the proxy with a 3 s read timeout (the delay fault is 8 s).

    Short enough to keep the timeout row quick, long enough that a healthy API server on a
    loaded CI machine never exceeds it in the other rows.
    """
    api = proxied_api(control_plane, proxy, timeout=(2.0, 3.0))
    yield api
    api.close()


@pytest.mark.parametrize(("fault", "expected"), [(f, e) for _, f, e in FAULTS], ids=[i for i, _, _ in FAULTS])
def test_read_failures_map_to_our_errors(
    apps: kubernetes.client.AppsV1Api,
    namespace: str,
    proxy: FaultProxy,
    fast_api: KubeApi,
    fault: Fault,
    expected: type[ActuationError],
) -> None:
    """Each fault on read raises the matching ActuationError subclass; the next read works again."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace)
    cluster = KubeCluster(fast_api)
    fault(proxy)
    with pytest.raises(expected) as raised:
        cluster.read(target)
    assert isinstance(raised.value, ActuationError)
    assert type(raised.value) is expected
    assert "Bearer" not in str(raised.value)
    proxy.passthrough()
    assert cluster.read(target).state.spec_replicas == 1


def test_write_failures_raise_and_event_failures_never_do(
    apps: kubernetes.client.AppsV1Api, namespace: str, proxy: FaultProxy, fast_api: KubeApi
) -> None:
    """A 5xx on the scale write raises ClusterUnavailable; a failing Event write is counted, not raised."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace, placeholders={"enabled": False})
    cluster = KubeCluster(fast_api)

    seen_target = cluster.read(target)
    proxy.status(503, STATUS_BODY.format(code=503), only_paths=r"/scale$")
    with pytest.raises(ClusterUnavailable):
        cluster.apply(target, make_decision(target, replicas=2, current_replicas=1), seen_target)
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 1

    proxy.status(500, STATUS_BODY.format(code=500), only_paths=r"/events")
    seen_target = cluster.read(target)
    result = cluster.apply(target, make_decision(target, replicas=2, current_replicas=1), seen_target)
    assert result.wrote_replicas
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2
    assert cluster.events.errors == 1


def test_forbidden_priority_class_is_reported_and_placeholders_still_written(
    apps: kubernetes.client.AppsV1Api,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    proxy: FaultProxy,
    fast_api: KubeApi,
    no_placeholder_class: None,
) -> None:
    """Without the right to create the PriorityClass the placeholder Deployment is still written, with a Warning."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 0))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace)
    cluster = KubeCluster(fast_api)
    seen_target = cluster.read(target)
    proxy.status(403, STATUS_BODY.format(code=403), only_paths=r"/priorityclasses")
    result = cluster.apply(target, make_decision(target, replicas=0, placeholders=1), seen_target)
    assert result.wrote_placeholders
    assert any("cannot create PriorityClass gpu-placeholder" in n for n in result.notes)
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 1
    (event,) = events_of(core, namespace, name="web", reason="PriorityClassMissing")
    assert event.type == "Warning" and "placeholder pods cannot be created" in event.message


def test_controller_cycle_survives_an_unavailable_api_server(
    apps: kubernetes.client.AppsV1Api, namespace: str, proxy: FaultProxy, fast_api: KubeApi
) -> None:
    """A full control cycle over KubeCluster records the failure kind and acts once the API server is back."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    target = make_target(namespace, placeholders={"enabled": False})
    policy = Policy(targets=(target,))
    clock = StepClock(START)
    controller = Controller(policy=policy, metrics=FakeMetrics(), cluster=KubeCluster(fast_api), clock=clock)
    proxy.status(503, STATUS_BODY.format(code=503))
    (result,) = controller.reconcile_once().results
    assert isinstance(result.error, ClusterUnavailable) and result.error.kind == "cluster_unavailable"
    assert result.applied is None

    proxy.passthrough()
    clock.advance(policy.loop_interval_seconds)
    (result,) = controller.reconcile_once().results
    assert result.error is None and result.applied is not None and result.applied.wrote_replicas
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 2  # 300 req/s / 200 per replica


def test_conflicts_on_placeholder_and_hpa_writes_are_retried(
    apps: kubernetes.client.AppsV1Api,
    k8s_client: kubernetes.client.ApiClient,
    namespace: str,
    proxy: FaultProxy,
    fast_api: KubeApi,
) -> None:
    """A 409 on the placeholder scale, the placeholder template PUT or the HPA patch is retried and succeeds."""
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    apps.create_namespaced_deployment(namespace, serving_deployment("chat", 1))
    autoscaling = kubernetes.client.AutoscalingV1Api(k8s_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace, hpa_body("chat", "chat", min_replicas=1, max_replicas=4)
    )
    web = make_target(namespace, "web")
    chat = make_target(namespace, "chat", placeholders={"enabled": False})
    cluster = KubeCluster(fast_api)
    conflict = '{"kind":"Status","code":409,"reason":"Conflict"}'
    seen_web = cluster.read(web)
    cluster.apply(web, make_decision(web, replicas=1, placeholders=1, current_replicas=1), seen_web)

    seen_web = cluster.read(web)
    proxy.status(409, conflict, only_paths=r"/deployments/web-capacity/scale$", times=1)
    decision = make_decision(web, replicas=1, placeholders=2, current_replicas=1)
    assert cluster.apply(web, decision, seen_web).wrote_placeholders
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 2

    # Only the injected 409 may meet the guarded template PUT, not the controller's status writes.
    settled_deployment(apps, namespace, "web-capacity")
    apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:2"}]}}}}
    )
    seen_web = cluster.read(web)
    proxy.status(409, conflict, only_paths=r"/deployments/web-capacity$", times=1)
    decision = make_decision(web, replicas=1, placeholders=2, current_replicas=1)
    assert cluster.apply(web, decision, seen_web).wrote_placeholders
    capacity = apps.read_namespaced_deployment("web-capacity", namespace)
    assert capacity.spec.template.spec.containers[0].image == "vllm:2"

    seen_chat = cluster.read(chat)
    proxy.reset_counts()
    proxy.status(409, conflict, only_paths=r"/horizontalpodautoscalers/chat$", times=1)
    assert cluster.apply(chat, make_decision(chat, replicas=3, current_replicas=1), seen_chat).wrote_replicas
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler("chat", namespace).spec.min_replicas == 3
    assert sum(proxy.faulted.values()) == 1


def test_placeholder_scale_is_not_raced_by_status_updates(
    apps: kubernetes.client.AppsV1Api, namespace: str, proxy: FaultProxy, fast_api: KubeApi
) -> None:
    """The placeholder Deployment's resourceVersion moving after our read costs no 409 and no retry.

    The Deployment controller rewrites a fresh placeholder's status while its pods start; a
    write guarded on the read ``resourceVersion`` lost that race twice in a row in CI. Here the
    version is moved on purpose (an annotation, twice) between the read and the write.
    """
    apps.create_namespaced_deployment(namespace, serving_deployment("web", 1))
    settled_deployment(apps, namespace, "web")
    web = make_target(namespace, "web")
    cluster = KubeCluster(fast_api)
    seen_web = cluster.read(web)
    decision = make_decision(web, replicas=1, placeholders=1, current_replicas=1)
    assert cluster.apply(web, decision, seen_web).wrote_placeholders
    seen_web = cluster.read(web)
    for n in range(2):
        apps.patch_namespaced_deployment("web-capacity", namespace, {"metadata": {"annotations": {"bump": str(n)}}})
    proxy.reset_counts()
    decision = make_decision(web, replicas=1, placeholders=3, current_replicas=1)
    assert cluster.apply(web, decision, seen_web).wrote_placeholders
    assert apps.read_namespaced_deployment("web-capacity", namespace).spec.replicas == 3
    assert proxy.count(f"/apis/apps/v1/namespaces/{namespace}/deployments/web-capacity/scale") == 1
