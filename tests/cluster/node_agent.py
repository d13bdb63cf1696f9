"""A fake node layer (kubelets + cluster-autoscaler) for the real control plane in the tests.

Why: the test control plane (:mod:`tests.cluster.controlplane`) has no kubelets and no cloud.
The autoscaler under test reacts to what the *real* scheduler and controllers do (pending pods,
preemption of placeholders, ready replicas), so something must play the node side with
realistic, but compressed, timing:

* **cluster-autoscaler**: an unschedulable pod that requests ``nvidia.com/gpu`` makes the agent
  "provision" a GPU node; the Node object appears after ``node_cold_start_s`` (the compressed
  VM boot + driver install), is marked Ready and loses the ``node.kubernetes.io/not-ready``
  taint (no node-lifecycle controller runs). Like the real cluster-autoscaler it scales up for
  pending pods of any priority (so placeholder pods pre-request nodes: the overprovisioning
  pattern), ignores pods that wait for a preemption (``status.nominatedNodeName``), does not
  count pods that already fit on free capacity or on nodes being provisioned, and removes GPU
  nodes that have been empty for ``node_idle_remove_s``.
* **kubelet**: a pod bound to one of the agent's nodes becomes Running/Ready after
  ``pod_start_s`` (per pod: annotation ``test.autoscaler/start-delay-seconds``, so tests can model
  image pull + model load; ``"inf"`` = never becomes ready), and pods being deleted are removed
  with grace period 0.

Use :meth:`NodeAgent.step` for deterministic tests (you pass the clock) or
:meth:`NodeAgent.start`/:meth:`NodeAgent.stop` to run it in a background thread. Every action
is recorded in :attr:`NodeAgent.events` as ``(time, kind, name)``.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import kubernetes.client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

GPU_RESOURCE = "nvidia.com/gpu"
START_DELAY_ANNOTATION = "test.autoscaler/start-delay-seconds"
AGENT_LABEL = "test.autoscaler/node-agent"
NOT_READY_TAINT_KEY = "node.kubernetes.io/not-ready"
TO_BE_DELETED_TAINT_KEY = "ToBeDeletedByClusterAutoscaler"  # cluster-autoscaler's scale-down taint

# Event kinds recorded by the agent.
SCALE_UP = "scale-up"  # name: node; a node was requested (cold start begins)
NODE_READY = "node-ready"  # name: node; the Node object exists, is Ready and untainted
SCALE_UP_BLOCKED = "scale-up-blocked"  # name: ns/pod; pod needs a node but max_nodes reached
POD_RUNNING = "pod-running"  # name: ns/pod; the pod was marked Running and Ready
POD_DELETED = "pod-deleted"  # name: ns/pod; a terminating pod was force-deleted
NODE_REMOVED = "node-removed"  # name: node; an idle node was deleted
ERROR = "error"  # name: exception text (background thread only)


class AgentEvent(NamedTuple):
    """One recorded action: ``(time, kind, name)``; time is the agent's clock."""

    time: float
    kind: str
    name: str


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_key(pod: Any) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _int_quantity(value: object) -> int:
    """Parse an integer resource quantity such as ``"1"`` (extended resources are integers)."""
    return int(str(value))


def gpu_request(pod: Any) -> int:
    """Effective ``nvidia.com/gpu`` request of a pod, as the scheduler computes it.

    Extended resources default their request to the limit; init containers run before the app
    containers, so the effective request is ``max(sum(containers), max(init containers))``.
    """

    def container_gpus(c: Any) -> int:
        res = c.resources
        if res is None:
            return 0
        for source in (res.requests, res.limits):
            if source and GPU_RESOURCE in source:
                return _int_quantity(source[GPU_RESOURCE])
        return 0

    main = sum(container_gpus(c) for c in pod.spec.containers or [])
    init = max((container_gpus(c) for c in pod.spec.init_containers or []), default=0)
    return max(main, init)


def is_unschedulable(pod: Any) -> bool:
    """True if the scheduler marked the pod ``PodScheduled=False`` with reason Unschedulable."""
    if pod.spec.node_name or pod.metadata.deletion_timestamp or pod.status.phase != "Pending":
        return False
    return any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in pod.status.conditions or []
    )


def is_active(pod: Any) -> bool:
    """True if the pod still occupies its node (not finished and not being deleted)."""
    return pod.metadata.deletion_timestamp is None and pod.status.phase not in (
        "Succeeded",
        "Failed",
    )


class NodeAgent:
    """Plays kubelets and a GPU cluster-autoscaler against a real control plane.

    All settings are plain attributes and may be changed while the agent runs (e.g. raise
    ``max_nodes`` in the middle of a test). Only nodes carrying this agent's
    ``test.autoscaler/node-agent`` label are managed, so agents of different tests never touch
    each other's nodes.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        namespace: str | None = None,
        node_cold_start_s: float = 2.0,
        pod_start_s: float = 0.5,
        node_idle_remove_s: float = 3600.0,
        max_nodes: int = 4,
        gpus_per_node: int = 1,
        node_labels: Mapping[str, str] | None = None,
        node_taints: Iterable[Mapping[str, str]] = (),
        node_name_prefix: str = "gpu-node",
        gpu_product: str = "Tesla-T4",
        instance_type: str = "g4dn.xlarge",
        expendable_priority_cutoff: int | None = None,
        interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an agent (not started).

        ``namespace`` limits which unschedulable pods trigger scale-ups (None: all namespaces);
        pods bound to the agent's nodes are always handled. ``expendable_priority_cutoff``
        mimics cluster-autoscaler's ``--expendable-pods-priority-cutoff`` (pods with a lower
        priority never trigger a scale-up; the real default is -10); None disables it.
        """
        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.namespace = namespace
        self.node_cold_start_s = node_cold_start_s
        self.pod_start_s = pod_start_s
        self.node_idle_remove_s = node_idle_remove_s
        self.max_nodes = max_nodes
        self.gpus_per_node = gpus_per_node
        self.node_labels = dict(node_labels or {})
        self.node_taints = [dict(t) for t in node_taints]
        self.gpu_product = gpu_product
        self.instance_type = instance_type
        self.expendable_priority_cutoff = expendable_priority_cutoff
        self.interval_s = interval_s
        self.clock = clock
        self.agent_id = secrets.token_hex(3)
        self._prefix = f"{node_name_prefix}-{self.agent_id}"
        self._seq = itertools.count(1)
        self._provisioning: dict[str, float] = {}  # node name -> time it becomes ready
        self._first_seen_bound: dict[str, tuple[float, str]] = {}  # pod uid -> (t, wall time)
        self._idle_since: dict[str, float] = {}
        self._blocked_reported: set[str] = set()
        self._events: list[AgentEvent] = []
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.errors: list[str] = []

    # ----------------------------------------------------------------------------------------
    # Public API

    @property
    def events(self) -> list[AgentEvent]:
        """A snapshot of the recorded events, oldest first."""
        with self._lock:
            return list(self._events)

    def events_of(self, kind: str) -> list[AgentEvent]:
        """Recorded events of one kind, oldest first."""
        return [e for e in self.events if e.kind == kind]

    def node_names(self) -> list[str]:
        """Names of the Node objects this agent currently owns."""
        return sorted(self._own_nodes())

    @property
    def provisioning(self) -> list[str]:
        """Names of nodes requested but not yet registered (cold start in progress)."""
        with self._lock:
            return sorted(self._provisioning)

    def start(self) -> NodeAgent:
        """Run :meth:`step` every ``interval_s`` seconds in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("agent already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"node-agent-{self.agent_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (waits for the current step to finish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def cleanup(self) -> None:
        """Forget pending provisioning and delete every Node this agent created."""
        with self._lock:
            self._provisioning.clear()
        for name in self._own_nodes():
            with contextlib.suppress(ApiException):
                self.core.delete_node(name)

    def step(self, now: float | None = None) -> None:
        """Do one reconciliation pass at time ``now`` (default: the agent's clock).

        Order: force-delete terminating pods, start bound pods, register nodes whose cold start
        is over, decide scale-ups, remove idle nodes.
        """
        with self._lock:
            now = self.clock() if now is None else now
            pods = self.core.list_pod_for_all_namespaces().items
            nodes = self._own_nodes()
            self._finish_terminating(pods, nodes, now)
            self._start_pods(pods, nodes, now)
            self._register_ready_nodes(now)
            nodes = self._own_nodes()
            self._scale_up(pods, nodes, now)
            self._remove_idle_nodes(pods, nodes, now)

    # ----------------------------------------------------------------------------------------
    # Reconciliation parts

    def _record(self, now: float, kind: str, name: str) -> None:
        self._events.append(AgentEvent(now, kind, name))

    def _own_nodes(self) -> dict[str, Any]:
        items = self.core.list_node(label_selector=f"{AGENT_LABEL}={self.agent_id}").items
        return {n.metadata.name: n for n in items}

    def _finish_terminating(self, pods: list[Any], nodes: Mapping[str, Any], now: float) -> None:
        """Kubelet part 1: complete the deletion of pods on our nodes (no containers to stop)."""
        for pod in pods:
            if pod.metadata.deletion_timestamp is None or pod.spec.node_name not in nodes:
                continue
            try:
                self.core.delete_namespaced_pod(
                    pod.metadata.name,
                    pod.metadata.namespace,
                    grace_period_seconds=0,
                    body=kubernetes.client.V1DeleteOptions(
                        grace_period_seconds=0,
                        preconditions=kubernetes.client.V1Preconditions(uid=pod.metadata.uid),
                    ),
                )
            except ApiException as err:
                if err.status not in (404, 409):
                    raise
                continue
            self._record(now, POD_DELETED, _pod_key(pod))

    def _start_pods(self, pods: list[Any], nodes: Mapping[str, Any], now: float) -> None:
        """Kubelet part 2: mark pods bound to our nodes Running + Ready after their start delay."""
        live_uids = set()
        for pod in pods:
            uid = pod.metadata.uid
            live_uids.add(uid)
            if (
                pod.spec.node_name not in nodes
                or pod.status.phase != "Pending"
                or pod.metadata.deletion_timestamp is not None
            ):
                continue
            first, wall = self._first_seen_bound.setdefault(uid, (now, _utc_now()))
            if now - first < self._start_delay(pod):
                continue
            try:
                self._patch_pod_running(pod, nodes[pod.spec.node_name], wall)
            except ApiException as err:
                if err.status not in (404, 409):
                    raise
                continue
            self._record(now, POD_RUNNING, _pod_key(pod))
        for uid in list(self._first_seen_bound):
            if uid not in live_uids:
                del self._first_seen_bound[uid]

    def _start_delay(self, pod: Any) -> float:
        annotations = pod.metadata.annotations or {}
        raw = annotations.get(START_DELAY_ANNOTATION)
        if raw is None:
            return self.pod_start_s
        try:
            return float(raw)
        except ValueError:
            return self.pod_start_s

    def _patch_pod_running(self, pod: Any, node: Any, start_time: str) -> None:
        ts = _utc_now()
        host_ip = next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), None)

        def container_status(c: Any, *, init: bool) -> dict[str, Any]:
            state = (
                {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": ts,
                        "finishedAt": ts,
                    }
                }
                if init
                else {"running": {"startedAt": ts}}
            )
            return {
                "name": c.name,
                "image": c.image,
                "imageID": f"docker-pullable://{c.image}",
                "containerID": f"containerd://{secrets.token_hex(32)}",
                "ready": not init,
                "started": not init,
                "restartCount": 0,
                "state": state,
            }

        conditions = [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ]
        status: dict[str, Any] = {
            "phase": "Running",
            "startTime": start_time,
            "conditions": conditions,
            "containerStatuses": [container_status(c, init=False) for c in pod.spec.containers or []],
        }
        if pod.spec.init_containers:
            status["initContainerStatuses"] = [container_status(c, init=True) for c in pod.spec.init_containers]
        if host_ip:
            status["hostIP"] = host_ip
        self._merge_patch(
            f"/api/v1/namespaces/{pod.metadata.namespace}/pods/{pod.metadata.name}/status",
            {"status": status},
        )

    def _register_ready_nodes(self, now: float) -> None:
        """Cold start over: create the Node, mark it Ready, then drop the not-ready taint."""
        for name, ready_at in sorted(self._provisioning.items()):
            if now < ready_at:
                continue
            self._create_ready_node(name)
            del self._provisioning[name]
            self._record(now, NODE_READY, name)

    def _create_ready_node(self, name: str) -> None:
        seq = int(name.rsplit("-", 1)[1])
        ip = f"10.{(seq >> 16) & 255}.{(seq >> 8) & 255}.{seq & 255}"
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": self.instance_type,
            "nvidia.com/gpu.product": self.gpu_product,
            "nvidia.com/gpu.count": str(self.gpus_per_node),
            **self.node_labels,
            AGENT_LABEL: self.agent_id,
        }
        body = kubernetes.client.V1Node(
            metadata=kubernetes.client.V1ObjectMeta(name=name, labels=labels),
            spec=kubernetes.client.V1NodeSpec(
                provider_id=f"fake://{name}",
                taints=[kubernetes.client.V1Taint(**t) for t in self.node_taints] or None,
            ),
        )
        try:
            self.core.create_node(body)
        except ApiException as err:
            if err.status != 409:
                raise
        resources = {
            "cpu": "4",
            "memory": "16Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
            GPU_RESOURCE: str(self.gpus_per_node),
        }
        ts = _utc_now()

        def cond(ctype: str, status: str, reason: str) -> dict[str, str]:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": f"fake kubelet: {reason}",
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }

        self._merge_patch(
            f"/api/v1/nodes/{name}/status",
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                        cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                        cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                        cond("Ready", "True", "KubeletReady"),
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": ip},
                        {"type": "Hostname", "address": name},
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "osImage": "fake GPU node",
                        "kernelVersion": "6.1.0",
                        "containerRuntimeVersion": "containerd://1.6.0",
                        "kubeletVersion": "v1.20.2",
                        "kubeProxyVersion": "v1.20.2",
                        "machineID": name,
                        "systemUUID": name,
                        "bootID": name,
                    },
                }
            },
        )
        # TaintNodesByCondition added node.kubernetes.io/not-ready at creation; the node
        # lifecycle controller that would remove it does not run here. Keep other taints.
        node = self.core.read_node(name)
        remaining = [
            self.api_client.sanitize_for_serialization(t)
            for t in node.spec.taints or []
            if t.key != NOT_READY_TAINT_KEY
        ]
        self._merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": remaining or None}})

    def _scale_up(self, pods: list[Any], nodes: Mapping[str, Any], now: float) -> None:
        """Cluster-autoscaler part: request nodes for unschedulable GPU pods that fit nowhere."""
        candidates = [
            p
            for p in pods
            if (self.namespace is None or p.metadata.namespace == self.namespace)
            and is_unschedulable(p)
            and not p.status.nominated_node_name  # waiting for a preemption to finish
            and gpu_request(p) > 0
            and (self.expendable_priority_cutoff is None or (p.spec.priority or 0) >= self.expendable_priority_cutoff)
        ]
        self._blocked_reported &= {_pod_key(p) for p in candidates}
        if not candidates:
            return
        # Free GPUs on our Ready nodes and on nodes being provisioned (a pod marked
        # unschedulable a moment ago may fit there: do not request a node twice for it).
        free: list[int] = []
        for name, node in nodes.items():
            alloc = _int_quantity((node.status.allocatable or {}).get(GPU_RESOURCE, 0))
            used = sum(gpu_request(p) for p in pods if p.spec.node_name == name and is_active(p))
            free.append(alloc - used)
        free.extend(self.gpus_per_node for _ in self._provisioning)
        candidates.sort(key=lambda p: -(p.spec.priority or 0))
        for pod in candidates:
            need = gpu_request(pod)
            if need > self.gpus_per_node:
                continue  # no node shape fits it; a real autoscaler would not help either
            slot = next((i for i, f in enumerate(free) if f >= need), None)
            if slot is not None:
                free[slot] -= need
                continue
            if len(nodes) + len(self._provisioning) >= self.max_nodes:
                key = _pod_key(pod)
                if key not in self._blocked_reported:
                    self._blocked_reported.add(key)
                    self._record(now, SCALE_UP_BLOCKED, key)
                continue
            name = f"{self._prefix}-{next(self._seq)}"
            self._provisioning[name] = now + self.node_cold_start_s
            free.append(self.gpus_per_node - need)
            self._record(now, SCALE_UP, name)

    def _remove_idle_nodes(self, pods: list[Any], nodes: Mapping[str, Any], now: float) -> None:
        """Cluster-autoscaler part: delete GPU nodes empty for ``node_idle_remove_s``."""
        busy = {p.spec.node_name for p in pods if p.spec.node_name and is_active(p)}
        for name in nodes:
            if name in busy:
                self._idle_since.pop(name, None)
                continue
            since = self._idle_since.setdefault(name, now)
            if now - since < self.node_idle_remove_s:
                continue
            del self._idle_since[name]
            if self._delete_idle_node(name, nodes[name]):
                self._record(now, NODE_REMOVED, name)
        for name in list(self._idle_since):
            if name not in nodes:
                del self._idle_since[name]

    def _delete_idle_node(self, name: str, node: Any) -> bool:
        """Delete an idle node the way cluster-autoscaler does: taint it NoSchedule first, then
        re-check that no pod was bound in the meantime (else untaint it and keep it)."""
        taints = [self.api_client.sanitize_for_serialization(t) for t in node.spec.taints or []]
        marker = {"key": TO_BE_DELETED_TAINT_KEY, "value": str(int(time.time())), "effect": "NoSchedule"}
        try:
            self._merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": [*taints, marker]}})
            bound = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
            if any(is_active(p) for p in bound):
                self._merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": taints or None}})
                return False
            self.core.delete_node(name)
        except ApiException as err:
            if err.status != 404:
                raise
        return True

    # ----------------------------------------------------------------------------------------
    # Helpers

    def _merge_patch(self, path: str, body: Mapping[str, Any]) -> None:
        """PATCH ``path`` with a JSON merge patch (the generated client would send a strategic
        merge patch for dict bodies)."""
        self.api_client.call_api(
            path,
            "PATCH",
            header_params={
                "Content-Type": "application/merge-patch+json",
                "Accept": "application/json",
            },
            body=dict(body),
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as err:  # keep playing the node layer; surface errors later
                msg = f"{type(err).__name__}: {err}"
                with self._lock:
                    self.errors.append(traceback.format_exc())
                    self._record(self.clock(), ERROR, msg[:300])
            self._stop.wait(self.interval_s)
