"""The ConfigMap policy source against a real API server: updates, rejections, deletion, watch faults.

Why: a bad ``kubectl apply`` of the policy must never stop the controller or drop its
policy, and a good one must take effect without a restart. These tests change a real
ConfigMap and watch the source follow it (over a real watch), including through dropped
connections and an expired (410) watch injected by a FaultProxy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from autoscaler.errors import ConfigError, PolicyRejected
from autoscaler.kube.client import KubeApi
from autoscaler.kube.policy_source import ConfigMapPolicySource
from tests.cluster.controlplane import ControlPlane
from tests.prom.faultproxy import FaultProxy

from .conftest import events_of, proxied_api, wait_for

pytestmark = pytest.mark.cluster

CM = "gpu-autoscaler-policy"


def policy_text(namespace: str, *, min_replicas: int = 1, interval: int = 30) -> str:
    """A valid policy document with one target."""
    return (
        f"loopIntervalSeconds: {interval}\n"
        "targets:\n"
        f"  - namespace: {namespace}\n"
        "    deployment: web\n"
        "    scaling:\n"
        f"      minReplicas: {min_replicas}\n"
    )


class RecordingLog:
    """A structlog-like logger that keeps every event (thread-safe)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _add(self, level: str, event: str, kw: dict[str, Any]) -> None:
        with self._lock:
            self.records.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        """Record an info event."""
        self._add("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        """Record a warning event."""
        self._add("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        """Record an error event."""
        self._add("error", event, kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        """Fields of every record of one event name."""
        with self._lock:
            return [kw for _, e, kw in self.records if e == event]


def configmap(name: str, text: str | None) -> kubernetes.client.V1ConfigMap:
    """A ConfigMap holding ``text`` under ``policy.yaml`` (no key when None)."""
    return kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name=name), data={"policy.yaml": text} if text is not None else {}
    )


@pytest.fixture
def source_factory(admin: KubeApi, namespace: str) -> Iterator[Any]:
    """Builds started sources (stopped at teardown)."""
    started: list[ConfigMapPolicySource] = []

    def make(api: KubeApi | None = None, **kw: Any) -> ConfigMapPolicySource:
        src = ConfigMapPolicySource(api or admin, namespace=namespace, name=CM, **kw)
        src.start()
        started.append(src)
        return src

    yield make
    for src in started:
        src.stop()


def test_updates_rejections_and_deletion(
    core: kubernetes.client.CoreV1Api, namespace: str, source_factory: Any
) -> None:
    """Valid updates start a generation; invalid ones are reported and ignored; deletion keeps the policy."""
    core.create_namespaced_config_map(namespace, configmap(CM, policy_text(namespace)))
    rejected: list[PolicyRejected] = []
    log = RecordingLog()
    source: ConfigMapPolicySource = source_factory(on_rejected=rejected.append, log=log)
    policy, generation = source.current()
    assert generation == 1 and policy.targets[0].scaling.min_replicas == 1

    core.patch_namespaced_config_map(CM, namespace, {"data": {"policy.yaml": policy_text(namespace, min_replicas=2)}})
    wait_for(lambda: source.current()[1] == 2, message="generation 2 after a valid update")
    assert source.current()[0].targets[0].scaling.min_replicas == 2

    bad = policy_text(namespace, min_replicas=-1).replace("loopIntervalSeconds: 30", "loopIntervalSeconds: 1")
    core.patch_namespaced_config_map(CM, namespace, {"data": {"policy.yaml": bad}})
    wait_for(lambda: rejected, message="the invalid update rejected")
    policy, generation = source.current()
    assert generation == 2 and policy.targets[0].scaling.min_replicas == 2  # the last good policy runs on
    paths = sorted(e.path for e in rejected[0].errors)
    assert paths == ["loopIntervalSeconds", "targets[0].scaling.minReplicas"]
    (logged,) = log.named("config_rejected")
    assert sorted(logged["paths"]) == paths
    (event,) = wait_for(lambda: events_of(core, namespace, name=CM, reason="PolicyRejected"), message="Event")
    assert event.type == "Warning" and event.involved_object.kind == "ConfigMap"
    assert "targets[0].scaling.minReplicas: must be at least 0" in event.message
    assert "loopIntervalSeconds" in event.message and "keeping policy generation 2" in event.message

    core.delete_namespaced_config_map(CM, namespace)
    wait_for(lambda: log.named("config_deleted"), message="deletion noticed")
    assert source.current() == (policy, 2)
    assert len(events_of(core, namespace, name=CM, reason="PolicyRejected")) == 1  # no Event for a deletion

    core.create_namespaced_config_map(namespace, configmap(CM, policy_text(namespace, min_replicas=3)))
    wait_for(lambda: source.current()[1] == 3, message="generation 3 after re-creation")
    assert source.current()[0].targets[0].scaling.min_replicas == 3
    assert len(rejected) == 1


def test_start_up_failures_are_config_errors(core: kubernetes.client.CoreV1Api, namespace: str, admin: KubeApi) -> None:
    """No ConfigMap, no key, or an invalid policy at start-up raise ConfigError naming the problem."""
    source = ConfigMapPolicySource(admin, namespace=namespace, name=CM)
    with pytest.raises(ConfigError, match="does not exist"):
        source.start()

    core.create_namespaced_config_map(namespace, configmap(CM, None))
    with pytest.raises(PolicyRejected) as missing:
        ConfigMapPolicySource(admin, namespace=namespace, name=CM).start()
    assert missing.value.errors[0].path == "data.policy.yaml"

    core.patch_namespaced_config_map(CM, namespace, {"data": {"policy.yaml": "targets: []\n"}})
    with pytest.raises(PolicyRejected) as invalid:
        ConfigMapPolicySource(admin, namespace=namespace, name=CM).start()
    assert [e.path for e in invalid.value.errors] == ["targets"]


def test_watch_recovers_from_dropped_connections_and_expiry(
    control_plane: ControlPlane,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    proxy: FaultProxy,
    source_factory: Any,
) -> None:
    """After a dropped watch, an HTTP 410 and a 503 on the ConfigMap path the source relists and follows updates."""
    core.create_namespaced_config_map(namespace, configmap(CM, policy_text(namespace)))
    api = proxied_api(control_plane, proxy)
    log = RecordingLog()
    source: ConfigMapPolicySource = source_factory(api, log=log, relist_seconds=1.0)
    path = rf"/namespaces/{namespace}/configmaps$"

    def inject(fault: Any, times: int) -> None:
        goal = sum(proxy.faulted.values()) + times
        fault(times)
        wait_for(lambda: sum(proxy.faulted.values()) >= goal, timeout=60, message=f"{times} fault(s) consumed")

    inject(lambda n: proxy.close_connections(only_paths=path, times=n), 2)
    inject(lambda n: proxy.status(410, '{"kind":"Status","code":410,"reason":"Expired"}', only_paths=path, times=n), 1)
    inject(lambda n: proxy.status(503, '{"kind":"Status","code":503}', only_paths=path, times=n), 1)

    core.patch_namespaced_config_map(CM, namespace, {"data": {"policy.yaml": policy_text(namespace, min_replicas=4)}})
    wait_for(lambda: source.current()[1] == 2, timeout=60, message="update followed after the faults")
    assert source.current()[0].targets[0].scaling.min_replicas == 4
    assert log.named("config_watch_failed")
    api.close()
