"""The ``Cluster`` port over the Kubernetes API: read a target's state, apply a decision.

Why: the control loop (:mod:`autoscaler.runtime.controller`) needs authoritative replica counts and
placeholder states, and needs its decisions written safely next to other writers (people
with ``kubectl scale``, an HPA, a second controller replica during a hand-over). Rules:

* **Serving replicas are written only through the scale subresource**
  (``deployments/scale``), with the ``resourceVersion`` that was read: if anyone changed the
  Deployment since, the API server answers 409. The Deployment is then re-read: while its
  ``spec.replicas`` is still the value the decision was made from (only status or metadata
  moved, e.g. the Deployment controller updating the status), the write is retried with the
  fresh ``resourceVersion``, at most :data:`SCALE_WRITE_ATTEMPTS` writes in all. When someone
  else changed ``spec.replicas`` the decision no longer applies, and when the attempts run out,
  the write is given up until the next loop (:class:`~autoscaler.errors.Conflict`).
* **Nothing is written when nothing changes** — not the replicas, not the placeholder
  Deployment, not the HPA, and no Event.
* **An HPA on the Deployment** owns the replicas: ``coexist`` sets its ``minReplicas``
  instead (:mod:`autoscaler.kube.hpa`), ``refuse`` writes nothing at all and emits a
  Warning Event. When a KEDA ScaledObject owns that HPA, ``coexist`` writes the
  ScaledObject's ``minReplicaCount`` instead (KEDA would revert the HPA, see
  :mod:`autoscaler.kube.keda`).
* **Manual edits** (``spec.replicas`` differs from what we last wrote, and we did not write
  since) are reported once as an Event and in the ``ApplyResult`` notes; the decision was
  already made from the observed value. The memory is per process: a restarted controller
  reports nothing for its first cycle, and a replica that regains leadership must call
  :meth:`KubeCluster.reset_memory` (the other leader's writes are not manual edits).
* **Placeholders** live in one Deployment per target (:mod:`autoscaler.kube.placeholders`);
  its PriorityClass is created when missing and allowed (a 403 is reported, not fatal).
  That Deployment is ours alone, so its replicas are patched without a ``resourceVersion``
  guard (the Deployment controller's status writes would otherwise race every write).
  With ``placeholders.backend: capacityBuffer`` a CapacityBuffer holds them instead
  (:mod:`autoscaler.kube.capacity_buffer`), and the backend not chosen is kept at 0, so a
  switch empties the other one. The state read reports the placeholders both hold (the
  other one only during a switch); a buffer's reservations count as cold (no image on the
  node). A cluster not serving the CapacityBuffer API fails that target's read
  (:class:`~autoscaler.errors.ApiNotServed`): it holds, the other targets go on.

The facade reads; three writers write, each owning its own memory:
:class:`~autoscaler.kube.scale_writer.ScaleWriter` (serving replicas, manual edits, pins),
:class:`~autoscaler.kube.coexistence.Coexistence` (HPA and KEDA floors) and
:class:`~autoscaler.kube.placeholder_writer.PlaceholderWriter` (both backends). What a read
saw is returned as the handle of its :class:`~autoscaler.ports.ClusterRead` (an
:class:`~autoscaler.kube.observed.Observed`); ``apply`` and ``pin`` write against the read
they are given, and the facade keeps nothing between the two calls.

Every action and refusal is an Event on the target Deployment (best effort, never fails the
cycle). Every API failure is one of our :mod:`autoscaler.errors` types.

Besides applying decisions it implements :class:`~autoscaler.ports.TargetOperations`
(annotations in :mod:`autoscaler.kube.status`):

* **Status** (:meth:`KubeCluster.publish`): the decision as a JSON annotation on the target
  Deployment, a metadata-only merge PATCH (the spec and its generation never move), sent
  only when the content changed or :data:`~autoscaler.kube.status.STATUS_REFRESH_SECONDS`
  passed; in dry-run, with a ``WouldScale`` Event when the numbers would change. A failure
  is logged and returned, never raised.
* **Release** (:meth:`KubeCluster.release`): the HPA's recorded ``minReplicas`` is put back
  and our placeholder Deployment and CapacityBuffer scaled to 0; nothing is written when there
  is nothing to undo.
* **Pin** (:meth:`KubeCluster.pin`): a paused target's ``paused-replicas``, through the scale
  subresource with the ``resourceVersion`` read (not with an HPA: it owns the replicas).

Cost per target and cycle: GET scale, GET Deployment, LIST serving pods, GET placeholder
Deployment, LIST placeholder pods, GET CapacityBuffer, LIST HPAs; LIST nodes is shared by all
targets and cached, and so is the discovery of the CapacityBuffer API: a ``pods`` target reads
a buffer only while the cluster serves one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.types import ClusterState, Decision
from autoscaler.errors import ActuationError, ClusterUnavailable, Forbidden, HandleMismatch
from autoscaler.kube import capacity_buffer as cb
from autoscaler.kube import hpa as hpa_mod
from autoscaler.kube import placeholders as ph
from autoscaler.kube import status as st
from autoscaler.kube.client import KubeApi
from autoscaler.kube.coexistence import Coexistence
from autoscaler.kube.events import EventRecorder, ObjectRef, deployment_ref
from autoscaler.kube.observed import Observed, to_json
from autoscaler.kube.placeholder_writer import PlaceholderWriter
from autoscaler.kube.scale_writer import ScaleWriter
from autoscaler.logs import get_logger
from autoscaler.policy.schema import Target
from autoscaler.ports import ApplyResult, ClusterRead, TargetStatus

#: Node labels that announce GPUs before the device plugin advertises ``nvidia.com/gpu``.
_GPU_NODE_LABELS = ("nvidia.com/gpu.present", "nvidia.com/gpu.count", "nvidia.com/gpu.product")


@dataclass
class _NodeCache:
    at: float = -1e18
    nodes: list[dict[str, Any]] = field(default_factory=list)
    forbidden: bool = False


def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A ``LabelSelector`` (API JSON) as a selector string for list calls.

    Pure. Args:
        selector: ``{"matchLabels": ..., "matchExpressions": ...}``.

    Returns:
        e.g. ``"app=vllm,tier in (a,b),!canary"``.

    Raises:
        ValueError: for an empty selector (it would select every pod) or an unknown operator.
    """
    parts = [f"{k}={v}" for k, v in sorted(((selector or {}).get("matchLabels") or {}).items())]
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown label selector operator {op!r}")
    if not parts:
        raise ValueError("the Deployment has an empty selector")
    return ",".join(parts)


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


class KubeCluster:
    """:class:`~autoscaler.ports.Cluster` over the Kubernetes API (see the module docstring)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        events: EventRecorder | None = None,
        log: Any = None,
        node_cache_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the port.

        Args:
            api: The API client.
            events: Event recorder (default: one on the same client).
            log: structlog-style logger.
            node_cache_seconds: How long one node list serves every target.
            clock: Monotonic clock for the node cache.
        """
        self.api = api
        self.log = log if log is not None else get_logger(component="kube")
        self.events = events if events is not None else EventRecorder(api, log=self.log)
        self.node_cache_seconds = node_cache_seconds
        self.clock = clock
        self.scale = ScaleWriter(api, events=self.events, log=self.log)
        self.coexistence = Coexistence(api, events=self.events, log=self.log)
        self.placeholders = PlaceholderWriter(api, events=self.events, log=self.log)
        self._nodes = _NodeCache()
        #: (when, whether) the cluster served the CapacityBuffer API at the last discovery.
        self._buffer_api: tuple[float, bool] = (-1e18, True)
        #: The target Deployment's uid per target, from the last read (Events name it).
        self._uids: dict[str, str | None] = {}
        #: The status last published per target: (fields without the time, its time).
        self._published: dict[str, tuple[dict[str, Any], float]] = {}
        #: Status writes that failed (for tests; the controller counts them as a metric).
        self.status_errors = 0

    def reset_memory(self) -> None:
        """Forget what we wrote (call when leadership was lost: another replica may write meanwhile)."""
        self.scale.written.clear()
        self.coexistence.written.clear()
        self._published.clear()

    # ------------------------------------------------------------------------------ read
    def read(self, target: Target) -> ClusterRead:
        """Current replicas, pending pods, placeholders, GPU nodes and HPA floor of a target.

        Args:
            target: The policy's target.

        Returns:
            The state (authoritative replica counts from the scale subresource) and, as
            its handle, the objects read (`Observed`), which :meth:`apply` and
            :meth:`pin` write against.

        Raises:
            NotFound: the Deployment does not exist.
            ApiNotServed: the target's placeholders.backend is capacityBuffer and the cluster does
                not serve that API.
            Forbidden: RBAC denies a required read.
            ClusterUnavailable: the API server failed, timed out or answered garbage.
        """
        ns, name = target.namespace, target.deployment
        try:
            state, observed = self._read(target, ns=ns, name=name)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ClusterUnavailable(f"read {target.key}: unexpected answer from the API server: {exc!r}") from exc
        return ClusterRead(target=target.key, state=state, handle=observed)

    def _observed(self, target: Target, read: ClusterRead | None) -> Observed:
        """The objects ``read`` saw of ``target``, or a fresh read's when there is none."""
        if read is None:
            read = self.read(target)
        if read.target != target.key:
            raise HandleMismatch(f"write {target.key}: the read handed in is of {read.target}, not of this target")
        if not isinstance(read.handle, Observed):
            kind = type(read.handle).__name__
            raise HandleMismatch(
                f"write {target.key}: the read handed in is not this cluster's (its handle is a {kind})"
            )
        return read.handle

    def _json(self, obj: Any) -> Any:
        return to_json(self.api, obj)

    def _read(self, target: Target, *, ns: str, name: str) -> tuple[ClusterState, Observed]:
        api = self.api
        scale = self._json(
            api.call(api.apps.read_namespaced_deployment_scale, name, ns, what=f"read deployments/scale {ns}/{name}")
        )
        spec_replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        scale_rv = str(scale["metadata"]["resourceVersion"])
        serving = self._json(
            api.call(api.apps.read_namespaced_deployment, name, ns, what=f"read deployment {ns}/{name}")
        )
        ready = int((serving.get("status") or {}).get("readyReplicas") or 0)
        selector = label_selector((serving.get("spec") or {}).get("selector"))
        pods = self._list_pods(ns, selector)
        pending = sum(1 for p in pods if ph.is_unbound(p))

        placeholder = self.placeholders.read(ns, name)
        counts = ph.PodCounts()
        placeholder_replicas = 0
        if placeholder is not None:
            placeholder_replicas = int((placeholder.get("spec") or {}).get("replicas") or 0)
            counts = ph.classify(self._list_pods(ns, ph.selector_string(name)))
        # A pods target reads its buffer only to empty one left by a switch, which cannot
        # exist where the API is not served: most clusters then pay no call per target.
        buffer = cb.read(api, target) if cb.is_active(target) or self._buffers_served() else None
        held = cb.replicas(buffer)

        hpa = hpa_mod.find_hpa(hpa_mod.list_hpas(api, ns), name)
        keda = self.coexistence.scaled_object(hpa)
        pause = st.parse_pause(serving)
        if pause is not None and pause.problem is not None:
            self.log.warning("pause_annotation_invalid", target=target.key, problem=pause.problem)
        self._uids[target.key] = (serving.get("metadata") or {}).get("uid")
        pod_spec = ((serving.get("spec") or {}).get("template") or {}).get("spec") or {}
        resources = tuple(ph.accelerators(pod_spec)) or (ph.GPU_RESOURCE,)
        nodes_ready, nodes_provisioning = self._gpu_nodes(pod_spec.get("nodeSelector") or {}, resources)
        observed = Observed(
            scale_resource_version=scale_rv,
            spec_replicas=spec_replicas,
            serving=serving,
            placeholder=placeholder,
            hpa=hpa,
            keda=keda,
            buffer=buffer,
        )
        original = hpa.original_min_replicas if hpa is not None else None
        if keda is not None:
            original = keda.original_min_replica_count
        state = ClusterState(
            spec_replicas=spec_replicas,
            ready_replicas=ready,
            pending_replicas=pending,
            placeholder_replicas=placeholder_replicas + held,
            placeholders_warm=counts.warm,
            placeholders_cold=counts.cold + held,
            placeholders_pending=counts.pending,
            nodes_ready=nodes_ready,
            nodes_provisioning=nodes_provisioning,
            hpa_min_replicas=hpa.min_replicas if hpa is not None else None,
            paused=pause is not None,
            paused_replicas=pause.replicas if pause is not None else None,
            hpa_original_min_replicas=original,
        )
        return state, observed

    def _list_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        answer = self.api.call(
            self.api.core.list_namespaced_pod, ns, label_selector=selector, what=f"list pods {selector} in {ns}"
        )
        items: list[dict[str, Any]] = self._json(answer).get("items") or []
        return items

    def _buffers_served(self) -> bool:
        """Whether the cluster serves CapacityBuffers, by discovery at most once per node-cache period.

        A discovery that fails or is denied counts as served, so the per-target read decides
        (and reports) as it did without this check.
        """
        now = self.clock()
        if now - self._buffer_api[0] > self.node_cache_seconds:
            try:
                served = cb.served(self.api)
            except ActuationError:
                served = True
            self._buffer_api = (now, served)
        return self._buffer_api[1]

    def _gpu_nodes(self, node_selector: Mapping[str, str], resources: tuple[str, ...]) -> tuple[int | None, int | None]:
        """(ready, provisioning) GPU nodes matching the target's nodeSelector; None if not listable.

        ``resources`` are the accelerators a serving pod requests (e.g. ``nvidia.com/gpu``, a
        MIG slice, ``amd.com/gpu``). *Ready*: Ready, schedulable, advertising every one of them.
        *Provisioning*: registered with an NVIDIA GPU label or capacity of one of them but not
        (yet) ready or not advertising them (driver and device plugin still starting). Nodes
        that do not exist yet are invisible here.
        """
        cache = self._nodes
        if cache.forbidden:
            return None, None
        now = self.clock()
        if now - cache.at > self.node_cache_seconds:
            try:
                # resourceVersion=0: served from the API server's watch cache (cheap).
                answer = self.api.call(self.api.core.list_node, resource_version="0", what="list nodes")
            except Forbidden as exc:
                cache.forbidden = True
                self.log.warning("nodes_not_listable", error=str(exc))
                return None, None
            except ActuationError as exc:
                self.log.warning("nodes_unavailable", error=str(exc), kind=exc.kind)
                return None, None
            cache.nodes = self._json(answer).get("items") or []
            cache.at = now
        ready = provisioning = 0
        nvidia = any(r.startswith("nvidia.com/") for r in resources)  # the GPU operator's labels
        for node in cache.nodes:
            labels = (node.get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) != v for k, v in node_selector.items()):
                continue
            status = node.get("status") or {}
            allocatable = min(_int((status.get("allocatable") or {}).get(r, 0)) for r in resources)
            capacity = max(_int((status.get("capacity") or {}).get(r, 0)) for r in resources)
            is_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            ) and not (node.get("spec") or {}).get("unschedulable")
            if is_ready and allocatable > 0:
                ready += 1
            elif capacity > 0 or (nvidia and any(k in labels for k in _GPU_NODE_LABELS)):
                provisioning += 1
        return ready, provisioning

    # ----------------------------------------------------------------------------- apply
    def apply(self, target: Target, decision: Decision, read: ClusterRead | None = None) -> ApplyResult:
        """Make the cluster match the decision, writing only what differs.

        Args:
            target: The policy's target.
            decision: What ``decide`` chose.
            read: The :meth:`read` the decision was made on (its resourceVersions guard
                the writes); ``None`` reads afresh.

        Returns:
            What was written, refused and noticed.

        Raises:
            Conflict: the Deployment's replicas changed concurrently or kept conflicting (see
                :meth:`_apply_scale`), or the HPA or placeholder Deployment changed concurrently
                twice; nothing more is tried until the next loop.
            ActuationError: (other subclasses) a write failed.
        """
        obs = self._observed(target, read)
        ref = obs.ref
        if obs.hpa is not None and target.hpa == "refuse":
            owner = f"KEDA ScaledObject {obs.keda.name} (HPA {obs.hpa.name})" if obs.keda else f"HPA {obs.hpa.name}"
            message = (
                f"{owner} owns replicas; refusing to write "
                f"(decision: {decision.replicas} replicas, {decision.placeholders} placeholders, "
                f"reason {decision.reason.value})"
            )
            self.events.emit(ref, type_="Warning", reason="Refused", message=message)
            self.log.warning("apply_refused", target=target.key, hpa=obs.hpa.name, reason=decision.reason.value)
            return ApplyResult(refused=message)
        notes: list[str] = []
        if obs.keda is not None:
            wrote_replicas = self.coexistence.apply_keda(target, obs=obs, so=obs.keda, decision=decision, notes=notes)
        elif obs.hpa is not None:
            wrote_replicas = self.coexistence.apply_hpa(target, obs=obs, hpa=obs.hpa, decision=decision, notes=notes)
        else:
            self.scale.check_manual_edit(target, obs=obs, notes=notes)
            wrote_replicas = self.scale.write(target, obs=obs, decision=decision)
        wrote_placeholders = self.placeholders.apply(target, obs=obs, decision=decision, notes=notes)
        return ApplyResult(wrote_replicas=wrote_replicas, wrote_placeholders=wrote_placeholders, notes=tuple(notes))

    # ------------------------------------------------------------- status, pause, release
    def _ref(self, target: Target) -> ObjectRef:
        return deployment_ref(target.namespace, target.deployment, uid=self._uids.get(target.key))

    def publish(self, target: Target, status: TargetStatus) -> str | None:
        """Write the status annotation (and a dry-run ``WouldScale`` Event) when it changed. Never raises.

        Args:
            target: The policy's target.
            status: What the controller decided (or that it is paused).

        Returns:
            ``None`` when written or unchanged; the error kind when the write failed (logged).
        """
        fields = st.status_fields(status)
        last = self._published.get(target.key)
        if last is not None and last[0] == fields and status.time - last[1] < st.STATUS_REFRESH_SECONDS:
            return None
        ns, name = target.namespace, target.deployment
        body = {"metadata": {"annotations": {st.STATUS_ANNOTATION: st.render_status(status)}}}
        try:
            self.api.call(
                self.api.apps.patch_namespaced_deployment, name, ns, body, what=f"patch deployment {ns}/{name} status"
            )
        except ActuationError as exc:
            self.status_errors += 1
            self.log.warning("status_write_failed", target=target.key, error=str(exc), kind=exc.kind)
            return exc.kind
        self._published[target.key] = (fields, status.time)
        message = st.would_scale_message(status)
        if message is not None and (last is None or last[0] != fields):
            self.events.emit(self._ref(target), type_="Normal", reason="WouldScale", message=message)
        return None

    def release(self, target: Target) -> tuple[str, ...]:
        """Restore the HPA's recorded ``minReplicas`` and scale our placeholders to 0.

        Reads afresh (the caller may be ``autoscaler release`` with no cycle before it).

        Args:
            target: The policy's target.

        Returns:
            One note per write; empty when there was nothing to undo.

        Raises:
            Conflict: the HPA changed concurrently twice.
            ActuationError: (other subclasses) a read or a write failed.
        """
        notes = self.coexistence.release(target) + self.placeholders.release(target)
        if notes:
            message = "Released: " + "; ".join(notes)
            self.events.emit(self._ref(target), type_="Normal", reason="Released", message=message)
            self.log.info("released", target=target.key, notes=notes)
        return tuple(notes)

    def pin(self, target: Target, replicas: int, read: ClusterRead | None = None) -> tuple[str, ...]:
        """Write a paused target's pinned replicas.

        Args:
            target: The policy's target.
            replicas: The ``paused-replicas`` count.
            read: This cycle's :meth:`read` of the target; ``None`` reads afresh.

        Returns:
            A note when written or refused (an HPA owns the replicas); empty when already there.

        Raises:
            Conflict: the Deployment changed since the read (pinned next cycle).
            ActuationError: (other subclasses) the write failed.
        """
        return self.scale.pin(target, obs=self._observed(target, read), replicas=replicas)
