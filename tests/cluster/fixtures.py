"""Cluster fixtures, shared by every test directory: one real control plane per session.

Why: starting etcd + kube-apiserver + scheduler + controller-manager takes seconds, so the
control plane is shared by the whole session; isolation between tests comes from a fresh
namespace per test and a node agent per test that only manages its own (uniquely named,
labelled) nodes and deletes them afterwards.

The binaries come from ``scripts/build-control-plane.sh`` (a cached no-op once built; CI should
run it as its own, cached step before pytest, as scripts/test.sh does, because a cold build
takes ~7 min on 2 shared cores). If they are missing and cannot be built, the session FAILS
with the build log: these tests are never skipped silently.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import kubernetes.client
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.cluster.controlplane import ControlPlane, ControlPlaneError
from tests.cluster.node_agent import NodeAgent

T = TypeVar("T")
_HERE = Path(__file__).resolve().parent


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet" (the object may not exist yet). The
    default deadline is generous on purpose: the loop ends as soon as the condition holds, and
    a loaded 2-core CI machine can take many times longer than a laptop. On timeout raises
    AssertionError naming ``message`` (a string or a callable producing one,
    e.g. a log tail), the last value and the last exception.
    """
    deadline = time.monotonic() + timeout
    last_value: T | None = None
    last_exc: Exception | None = None
    while True:
        try:
            last_value = predicate()
            last_exc = None
            if last_value:
                return last_value
        except Exception as exc:  # retried until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {text}; "
                f"last value: {last_value!r}; last exception: {last_exc!r}"
            )
        time.sleep(interval)


def settled_deployment(apps: kubernetes.client.AppsV1Api, namespace: str, name: str) -> str:
    """Wait until the controllers are done with a Deployment; return its resourceVersion then.

    The Deployment controller writes the status after every spec change, and again each time
    the ReplicaSet controller has created or deleted pods and written *its* status. A write
    guarded by a resourceVersion read before those writes end meets 409, and a check that the
    resourceVersion did not move blames us for them. Settled means: the Deployment's spec was
    observed, every ReplicaSet it owns observed its spec and has exactly its replicas, the
    Deployment's status counts them, and the resourceVersion then stays put for 0.5 s.
    """

    def stable() -> str | None:
        dep = apps.read_namespaced_deployment(name, namespace)
        if (dep.status.observed_generation or 0) != dep.metadata.generation:
            return None
        selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
        owned = [
            rs
            for rs in apps.list_namespaced_replica_set(namespace, label_selector=selector).items
            if any(ref.uid == dep.metadata.uid for ref in rs.metadata.owner_references or [])
        ]
        if not owned or any(
            (rs.status.observed_generation or 0) != rs.metadata.generation
            or (rs.status.replicas or 0) != (rs.spec.replicas or 0)
            for rs in owned
        ):
            return None
        if (dep.status.replicas or 0) != sum(rs.spec.replicas or 0 for rs in owned):
            return None
        time.sleep(0.5)
        again = apps.read_namespaced_deployment(name, namespace).metadata.resource_version
        return str(again) if again == dep.metadata.resource_version else None

    return wait_for(stable, message=f"deployment {namespace}/{name} settled")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A running control plane shared by the session (fails loudly if it cannot start)."""
    cp = ControlPlane(keep_workdir=os.environ.get("KUBE_CP_KEEP") == "1")
    error: ControlPlaneError | None = None
    try:
        cp.start()
    except ControlPlaneError as err:
        error = err
    if error is not None:
        pytest.fail(f"cannot start the Kubernetes control plane: {error}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def k8s_client(control_plane: ControlPlane) -> Iterator[ApiClient]:
    """Admin :class:`ApiClient` for the session's control plane."""
    with control_plane.api_client() as client:
        yield client


def _namespace_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")
    return f"{base[:48].rstrip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, control_plane: ControlPlane, k8s_client: ApiClient) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards (its pods synchronously)."""
    control_plane.assert_running()
    core = kubernetes.client.CoreV1Api(k8s_client)
    name = _namespace_name(request)
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    yield name
    control_plane.assert_running()
    delete_namespace(core, name)


def delete_namespace(core: kubernetes.client.CoreV1Api, name: str) -> None:
    """Delete a namespace without waiting the namespace controller's fixed 5 s grace period.

    Once the namespace is Terminating *and* the NamespaceLifecycle admission plugin rejects new
    objects in it, no pod can appear there any more; force-deleting the remaining pods (no
    kubelet would ever finish their graceful deletion) then leaves nothing that could be
    scheduled onto the next test's nodes. The namespace controller finalizes it in the
    background (~5 s later).
    """
    core.delete_namespace(name)
    probe = kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(generate_name="admission-probe-"))

    def creation_rejected() -> bool:
        try:
            core.create_namespaced_config_map(name, probe)
        except ApiException as err:
            if err.status in (403, 404):  # "being terminated" / already gone
                return True
            raise
        return False

    wait_for(creation_rejected, timeout=30, message=f"namespace {name} to reject new objects")

    def no_pods_left() -> bool:
        pods = core.list_namespaced_pod(name).items
        for pod in pods:
            try:
                core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
            except ApiException as err:
                if err.status != 404:
                    raise
        return not pods

    wait_for(no_pods_left, timeout=30, interval=0.2, message=f"pods of namespace {name} deleted")


@pytest.fixture
def node_agent(control_plane: ControlPlane, namespace: str) -> Iterator[NodeAgent]:
    """A started :class:`NodeAgent` scoped to the test's namespace; its nodes are deleted after.

    Settings (``max_nodes``, ``node_cold_start_s``, ...) can be changed by the test while it runs.
    Errors raised inside the agent's thread fail the test at teardown.
    """
    client = control_plane.api_client()
    agent = NodeAgent(client, namespace=namespace).start()
    try:
        yield agent
    finally:
        agent.stop()
        agent.cleanup()
        client.close()
    if agent.errors:
        pytest.fail("node agent errors:\n" + "\n".join(agent.errors[:3]), pytrace=False)
