"""The simulated cluster: GPU nodes, pods, a kube-scheduler and a cluster-autoscaler.

Time advances in fixed steps (:meth:`SimCluster.advance`). What is modelled, and why:

* **Nodes** pass through the cold-start phases (provision, services, GPU drivers) before
  they are schedulable; each has ``gpus_per_node`` GPUs and bills from creation to removal.
* **Image pull** happens once per node, started by the first pod bound to it, and keeps
  going if that pod is preempted: a node that held a placeholder has the image already.
* **Serving pods** are ready after the remaining pull plus model load; **placeholder pods**
  are "warm" once the image is on their node.
* **kube-scheduler**: pending pods by priority; a free GPU on a ready node first (nodes
  with the image preferred, like ImageLocality); else preemption of lower-priority pods,
  choosing the node as upstream's ``pickOneNodeForPreemption`` does — among equal
  priorities and victim counts, the node whose victim started **most recently** (which
  may still be pulling the image).
* **Capacity buffers** (``placeholder_backend="capacityBuffer"``, cluster-autoscaler's
  CapacityBuffer API): the placeholder replicas are reservations, not pods that run. CA
  provisions and keeps nodes for them, but nothing pulls the image there, and a serving
  pod takes a reserved GPU without preemption, choosing the node by image locality
  rather than the newest victim; the displaced reservation asks for a node again.
* **cluster-autoscaler**: every scan, one new node per pending pod not covered by nodes
  already provisioning; removes a node empty for ``unneeded_seconds`` (10 min) unless a
  scale-up happened within ``delay_after_add_seconds``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

SERVING, PLACEHOLDER = "serving", "placeholder"


@dataclass(frozen=True)
class ClusterPhases:
    """Durations of the cold-start phases in the simulated cluster (seconds)."""

    node_provision: float = 300.0
    node_services: float = 60.0
    gpu_driver: float = 180.0
    image_pull: float = 360.0
    model_load: float = 60.0
    scan_interval: float = 10.0
    unneeded_seconds: float = 600.0
    delay_after_add_seconds: float = 600.0

    @property
    def node_ready(self) -> float:
        """From node creation to schedulable."""
        return self.node_provision + self.node_services + self.gpu_driver

    @property
    def total(self) -> float:
        """From a pending pod to a ready replica on a new node (incl. one CA scan)."""
        return self.scan_interval + self.node_ready + self.image_pull + self.model_load


#: Cold-start presets (``autoscaler simulate --cold-start``).
PRESETS: dict[str, ClusterPhases] = {
    "15min": ClusterPhases(),
    "10min": ClusterPhases(
        node_provision=180.0, node_services=45.0, gpu_driver=120.0, image_pull=190.0, model_load=60.0
    ),
}


@dataclass
class Node:
    """A GPU node."""

    name: str
    created: float
    ready_at: float
    gpus: int
    pull_started: float | None = None
    empty_since: float | None = None
    pods: list[Pod] = field(default_factory=list)

    def image_ready_at(self, pull_seconds: float) -> float | None:
        """When the serving image is (or will be) on this node; None if no pull started."""
        return None if self.pull_started is None else self.pull_started + pull_seconds

    def free_gpus(self) -> int:
        """GPUs not requested by a bound pod."""
        return self.gpus - len(self.pods)


@dataclass
class Pod:
    """A serving or placeholder pod."""

    name: str
    kind: str
    priority: int
    created: float
    node: Node | None = None
    started: float | None = None
    ready_at: float | None = None

    def is_ready(self, now: float) -> bool:
        """Ready (serving) or warm (placeholder) at ``now``."""
        return self.ready_at is not None and now >= self.ready_at


class SimCluster:
    """Nodes, pods and the two control-plane components that matter for cold starts."""

    def __init__(
        self,
        *,
        phases: ClusterPhases,
        gpus_per_node: int = 1,
        max_nodes: int = 1000,
        serving_priority: int = 0,
        placeholder_priority: int = -10,
        placeholder_backend: str = "pods",
    ) -> None:
        if placeholder_backend not in ("pods", "capacityBuffer"):
            raise ValueError(f"unknown placeholder backend {placeholder_backend!r}")
        self.phases = phases
        self.buffer = placeholder_backend == "capacityBuffer"
        self.gpus_per_node = gpus_per_node
        self.max_nodes = max_nodes
        self.serving_priority = serving_priority
        self.placeholder_priority = placeholder_priority
        self.nodes: list[Node] = []
        #: Node-seconds of the nodes already removed: a sum, not the nodes, so a run of
        #: weeks does not keep every node it ever made (in the 14-day soak at 100 targets,
        #: ~1,000 nodes a day, ~0.4 MB a day of the growth the soak reports).
        self._removed_node_seconds = 0.0
        self.pods: dict[str, list[Pod]] = {SERVING: [], PLACEHOLDER: []}
        self.desired: dict[str, int] = {SERVING: 0, PLACEHOLDER: 0}
        self.preemptions = 0
        self.last_scale_up: float | None = None
        self._ids = itertools.count()
        self._next_scan = 0.0

    # -- set-up ---------------------------------------------------------------------------
    def bootstrap(self, *, serving: int, now: float) -> None:
        """Start with ``serving`` ready replicas on ready nodes that have the image."""
        for _ in range(-(-serving // self.gpus_per_node)):
            node = self._new_node(now, ready_at=now)
            node.pull_started = now - self.phases.image_pull
        self.desired[SERVING] = serving
        for _ in range(serving):
            pod = self._new_pod(SERVING, now)
            node = next(n for n in self.nodes if n.free_gpus() > 0)
            self._bind(pod, node, now)
            pod.ready_at = now

    # -- the writes the autoscalers make ------------------------------------------------
    def scale(self, kind: str, replicas: int, now: float) -> None:
        """Set a Deployment's replicas (the ReplicaSet controller reacts at once)."""
        self.desired[kind] = max(0, replicas)
        self._reconcile_replicas(kind, now)

    # -- time -----------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Bring the cluster to time ``now``: schedule, autoscale nodes, remove idle ones."""
        for kind in (SERVING, PLACEHOLDER):
            self._reconcile_replicas(kind, now)
        self._schedule(now)
        if now >= self._next_scan:
            self._next_scan = now + self.phases.scan_interval
            self._autoscale_nodes(now)

    # -- queries ----------------------------------------------------------------------------
    def ready(self, kind: str, now: float) -> int:
        """Ready serving pods, or warm placeholder pods."""
        return sum(1 for p in self.pods[kind] if p.is_ready(now))

    def bound_not_ready(self, kind: str, now: float) -> int:
        """Pods on a node but not ready yet (pulling / loading)."""
        return sum(1 for p in self.pods[kind] if p.node is not None and not p.is_ready(now))

    def pending(self, kind: str) -> int:
        """Pods waiting for a node."""
        return sum(1 for p in self.pods[kind] if p.node is None)

    def nodes_ready(self, now: float) -> int:
        """Schedulable nodes."""
        return sum(1 for n in self.nodes if n.ready_at <= now)

    def nodes_provisioning(self, now: float) -> int:
        """Nodes created but not yet schedulable."""
        return sum(1 for n in self.nodes if n.ready_at > now)

    def gpu_slots(self, now: float) -> tuple[int, int, int, int]:
        """GPUs of the live nodes by use: (booting, free on a ready node, serving, placeholder).

        Serving and placeholder count bound pods (ready or still starting). The four add
        up to every GPU billed at ``now``; the cost attribution splits node-hours by them.
        """
        booting = free = serving = placeholder = 0
        for node in self.nodes:
            if node.ready_at > now:
                booting += node.gpus
                continue
            used = len(node.pods)
            free += node.gpus - used
            for pod in node.pods:
                if pod.kind == SERVING:
                    serving += 1
                else:
                    placeholder += 1
        return booting, free, serving, placeholder

    def node_seconds(self, now: float) -> float:
        """GPU node-seconds billed so far (creation to removal, or to ``now``)."""
        return sum(now - n.created for n in self.nodes) + self._removed_node_seconds

    # -- internals --------------------------------------------------------------------------
    def _new_node(self, now: float, *, ready_at: float | None = None) -> Node:
        node = Node(
            name=f"gpu-{next(self._ids)}",
            created=now,
            ready_at=now + self.phases.node_ready if ready_at is None else ready_at,
            gpus=self.gpus_per_node,
        )
        self.nodes.append(node)
        return node

    def _new_pod(self, kind: str, now: float) -> Pod:
        priority = self.serving_priority if kind == SERVING else self.placeholder_priority
        pod = Pod(name=f"{kind}-{next(self._ids)}", kind=kind, priority=priority, created=now)
        self.pods[kind].append(pod)
        return pod

    def _reconcile_replicas(self, kind: str, now: float) -> None:
        pods = self.pods[kind]
        want = self.desired[kind]
        while len(pods) < want:
            self._new_pod(kind, now)
        if len(pods) > want:
            # ReplicaSet deletion order: unscheduled, then not ready, then newest first.
            ranked = sorted(pods, key=lambda p: (p.node is not None, p.is_ready(now), -p.created))
            for pod in ranked[: len(pods) - want]:
                self._delete(pod, now)

    def _delete(self, pod: Pod, now: float) -> None:
        self.pods[pod.kind].remove(pod)
        if pod.node is not None:
            pod.node.pods.remove(pod)
            if not pod.node.pods:
                pod.node.empty_since = now

    def _bind(self, pod: Pod, node: Node, now: float) -> None:
        pod.node = node
        pod.started = now
        node.pods.append(pod)
        node.empty_since = None
        if self.buffer and pod.kind == PLACEHOLDER:
            pod.ready_at = now  # a reservation: nothing runs, nothing is pulled
            return
        if node.pull_started is None:
            node.pull_started = now
        image_at = node.image_ready_at(self.phases.image_pull) or now
        pod.ready_at = max(now, image_at) + (self.phases.model_load if pod.kind == SERVING else 0.0)

    def _schedule(self, now: float) -> None:
        pending = [p for kind in (SERVING, PLACEHOLDER) for p in self.pods[kind] if p.node is None]
        if not pending:
            return
        pending.sort(key=lambda p: (-p.priority, p.created))
        ready_nodes = [n for n in self.nodes if n.ready_at <= now]
        for pod in pending:
            free = [n for n in ready_nodes if n.free_gpus() > 0]
            if free:
                # ImageLocality: prefer a node whose image is already there (or arriving).
                free.sort(key=lambda n: (n.pull_started is None, n.pull_started or 0.0))
                self._bind(pod, free[0], now)
                continue
            if pod.kind == PLACEHOLDER:
                continue  # placeholders never preempt (preemptionPolicy: Never)
            if self.buffer:
                self._take_reservation(pod, ready_nodes, now)
                continue
            victim_node = self._pick_preemption_node(pod, ready_nodes)
            if victim_node is None:
                continue
            victims = [p for p in victim_node.pods if p.priority < pod.priority]
            victim = max(victims, key=lambda p: p.started or 0.0)
            self._delete(victim, now)
            self.preemptions += 1
            self._bind(pod, victim_node, now)

    def _take_reservation(self, pod: Pod, nodes: list[Node], now: float) -> None:
        """Bind a serving pod on a GPU a capacity buffer reserved (image locality first)."""
        reserved = [n for n in nodes if any(p.kind == PLACEHOLDER for p in n.pods)]
        if not reserved:
            return
        reserved.sort(key=lambda n: (n.pull_started is None, n.pull_started or 0.0))
        node = reserved[0]
        held = next(p for p in node.pods if p.kind == PLACEHOLDER)
        node.pods.remove(held)
        held.node, held.started, held.ready_at = None, None, None  # the buffer asks again
        self._bind(pod, node, now)

    @staticmethod
    def _pick_preemption_node(pod: Pod, nodes: list[Node]) -> Node | None:
        """Upstream order: lowest highest-victim priority, lowest priority sum, fewest
        victims, then the most recent start time among the highest-priority victims."""
        best: tuple[float, float, int, float] | None = None
        chosen: Node | None = None
        for node in nodes:
            victims = [p for p in node.pods if p.priority < pod.priority]
            if not victims:
                continue
            top = max(p.priority for p in victims)
            latest = max(p.started or 0.0 for p in victims if p.priority == top)
            key = (top, sum(p.priority for p in victims), len(victims), -latest)
            if best is None or key < best:
                best, chosen = key, node
        return chosen

    def _autoscale_nodes(self, now: float) -> None:
        pending = sum(1 for kind in (SERVING, PLACEHOLDER) for p in self.pods[kind] if p.node is None)
        upcoming = sum(n.free_gpus() for n in self.nodes if n.ready_at > now)
        ready_free = sum(n.free_gpus() for n in self.nodes if n.ready_at <= now)
        missing = pending - upcoming - ready_free
        room = self.max_nodes - len(self.nodes)
        add = min(room, -(-max(0, missing) // self.gpus_per_node))
        for _ in range(add):
            self._new_node(now)
        if add > 0:
            self.last_scale_up = now
        if self.last_scale_up is not None and now - self.last_scale_up < self.phases.delay_after_add_seconds:
            return
        for node in list(self.nodes):
            if node.pods or node.ready_at > now:
                continue
            since = node.empty_since if node.empty_since is not None else node.ready_at
            if now - since >= self.phases.unneeded_seconds:
                self.nodes.remove(node)
                self._removed_node_seconds += now - node.created
