"""The ``Cluster`` port over the Kubernetes API: read a target's state, apply a decision.

Why: the control loop (:mod:`autoscaler.controller`) needs authoritative replica counts and
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
from autoscaler.errors import ActuationError, ClusterUnavailable, Conflict, Forbidden, NotFound
from autoscaler.kube import capacity_buffer as cb
from autoscaler.kube import hpa as hpa_mod
from autoscaler.kube import keda as keda_mod
from autoscaler.kube import placeholders as ph
from autoscaler.kube import status as st
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import EventRecorder, ObjectRef, deployment_ref
from autoscaler.kube.hpa import HpaInfo
from autoscaler.logs import get_logger
from autoscaler.policy.schema import Target
from autoscaler.ports import ApplyResult, TargetStatus

#: Most PATCHes of ``deployments/scale`` per apply while 409s only report status/metadata writes.
SCALE_WRITE_ATTEMPTS = 4

#: Node labels that announce GPUs before the device plugin advertises ``nvidia.com/gpu``.
_GPU_NODE_LABELS = ("nvidia.com/gpu.present", "nvidia.com/gpu.count", "nvidia.com/gpu.product")


@dataclass
class _Observed:
    """What :meth:`KubeCluster.read` saw, kept for the :meth:`KubeCluster.apply` that follows."""

    scale_resource_version: str
    spec_replicas: int
    serving: dict[str, Any]
    placeholder: dict[str, Any] | None
    hpa: HpaInfo | None
    keda: keda_mod.ScaledObjectInfo | None = None
    buffer: dict[str, Any] | None = None

    @property
    def ref(self) -> ObjectRef:
        meta = self.serving.get("metadata") or {}
        return deployment_ref(str(meta.get("namespace")), str(meta.get("name")), uid=meta.get("uid"))


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
        self._observed: dict[str, _Observed] = {}
        #: Replicas (or HPA minReplicas) we last wrote, per target: detects manual edits.
        self._written: dict[str, int] = {}
        self._written_hpa: dict[str, int] = {}
        self._priority_classes_ok: set[str] = set()
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
        self._written.clear()
        self._written_hpa.clear()
        self._observed.clear()
        self._published.clear()

    # ------------------------------------------------------------------------------ read
    def read(self, target: Target) -> ClusterState:
        """Current replicas, pending pods, placeholders, GPU nodes and HPA floor of a target.

        Args:
            target: The policy's target.

        Returns:
            The state (authoritative replica counts from the scale subresource).

        Raises:
            NotFound: the Deployment does not exist.
            ApiNotServed: the target's placeholders.backend is capacityBuffer and the cluster does
                not serve that API.
            Forbidden: RBAC denies a required read.
            ClusterUnavailable: the API server failed, timed out or answered garbage.
        """
        ns, name = target.namespace, target.deployment
        try:
            return self._read(target, ns=ns, name=name)
        except ActuationError:
            self._observed.pop(target.key, None)
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self._observed.pop(target.key, None)
            raise ClusterUnavailable(f"read {target.key}: unexpected answer from the API server: {exc!r}") from exc

    def _json(self, obj: Any) -> Any:
        return self.api.api_client.sanitize_for_serialization(obj)

    def _read(self, target: Target, *, ns: str, name: str) -> ClusterState:
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

        placeholder = self._read_placeholder(ns, name)
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
        keda = self._scaled_object(hpa)
        pause = st.parse_pause(serving)
        if pause is not None and pause.problem is not None:
            self.log.warning("pause_annotation_invalid", target=target.key, problem=pause.problem)
        self._uids[target.key] = (serving.get("metadata") or {}).get("uid")
        pod_spec = ((serving.get("spec") or {}).get("template") or {}).get("spec") or {}
        resources = tuple(ph.accelerators(pod_spec)) or (ph.GPU_RESOURCE,)
        nodes_ready, nodes_provisioning = self._gpu_nodes(pod_spec.get("nodeSelector") or {}, resources)
        self._observed[target.key] = _Observed(
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
        return ClusterState(
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

    def _scaled_object(self, hpa: HpaInfo | None) -> keda_mod.ScaledObjectInfo | None:
        """The KEDA ScaledObject owning the HPA, if any (``None`` when it is gone meanwhile)."""
        if hpa is None or hpa.scaled_object is None:
            return None
        try:
            return keda_mod.read(self.api, hpa.namespace, hpa.scaled_object)
        except NotFound:
            return None

    def _list_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        answer = self.api.call(
            self.api.core.list_namespaced_pod, ns, label_selector=selector, what=f"list pods {selector} in {ns}"
        )
        items: list[dict[str, Any]] = self._json(answer).get("items") or []
        return items

    def _read_placeholder(self, ns: str, name: str) -> dict[str, Any] | None:
        pname = ph.placeholder_name(name)
        try:
            answer = self.api.call(
                self.api.apps.read_namespaced_deployment, pname, ns, what=f"read deployment {ns}/{pname}"
            )
        except NotFound:
            return None
        out: dict[str, Any] = self._json(answer)
        return out

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
    def apply(self, target: Target, decision: Decision) -> ApplyResult:
        """Make the cluster match the decision, writing only what differs.

        Uses the state of the preceding :meth:`read` (reads afresh if there was none).

        Args:
            target: The policy's target.
            decision: What ``decide`` chose.

        Returns:
            What was written, refused and noticed.

        Raises:
            Conflict: the Deployment's replicas changed concurrently or kept conflicting (see
                :meth:`_apply_scale`), or the HPA or placeholder Deployment changed concurrently
                twice; nothing more is tried until the next loop.
            ActuationError: (other subclasses) a write failed.
        """
        obs = self._observed.pop(target.key, None)
        if obs is None:
            self.read(target)
            obs = self._observed.pop(target.key)
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
            wrote_replicas = self._apply_keda(target, obs=obs, so=obs.keda, decision=decision, notes=notes)
        elif obs.hpa is not None:
            wrote_replicas = self._apply_hpa(target, obs=obs, hpa=obs.hpa, decision=decision, notes=notes)
        else:
            self._check_manual_edit(target, obs=obs, notes=notes)
            wrote_replicas = self._apply_scale(target, obs=obs, decision=decision)
        wrote_placeholders = self._apply_placeholders(target, obs=obs, decision=decision, notes=notes)
        return ApplyResult(wrote_replicas=wrote_replicas, wrote_placeholders=wrote_placeholders, notes=tuple(notes))

    def _check_manual_edit(self, target: Target, *, obs: _Observed, notes: list[str]) -> None:
        last = self._written.get(target.key)
        if last is None or last == obs.spec_replicas:
            return
        message = f"replicas changed outside the autoscaler (was {last}, now {obs.spec_replicas})"
        notes.append(message)
        self.events.emit(obs.ref, type_="Warning", reason="ManualEdit", message=message)
        self.log.warning("manual_edit", target=target.key, was=last, now=obs.spec_replicas)
        self._written[target.key] = obs.spec_replicas  # report each edit once

    def _apply_scale(self, target: Target, *, obs: _Observed, decision: Decision) -> bool:
        """Write serving replicas through the scale subresource, retrying 409s while the decision holds.

        A 409 means the Deployment changed since our read. It is re-read: if ``spec.replicas``
        already is the decided value, nothing is left to do; if it is still the value the
        decision was made from, only status or metadata moved and the write is retried with
        the fresh ``resourceVersion`` (at most :data:`SCALE_WRITE_ATTEMPTS` writes); if someone
        else set another value, the decision was made from a state that no longer exists and
        is dropped (the next loop decides from the new value).

        Raises:
            Conflict: the replicas changed concurrently, or every attempt met a 409.
            ActuationError: (other subclasses) a read or write failed.
        """
        ns, name, want = target.namespace, target.deployment, decision.replicas
        current = obs.spec_replicas
        if current == want:
            self._written[target.key] = want
            return False
        resource_version = obs.scale_resource_version
        attempt = 1
        while True:
            try:
                self._patch_scale(ns=ns, name=name, replicas=want, resource_version=resource_version)
                break
            except Conflict as exc:
                self.log.info("scale_conflict", target=target.key, attempt=attempt, kind=exc.kind)
                # The Deployment's resourceVersion is its scale's. Re-read the Deployment (not the
                # scale: a separate path, so a fault proxy can fault the scale writes alone).
                fresh = self._json(
                    self.api.call(
                        self.api.apps.read_namespaced_deployment, name, ns, what=f"read deployment {ns}/{name}"
                    )
                )
                now = int((fresh.get("spec") or {}).get("replicas") or 0)
                if now == want:
                    self._written[target.key] = want
                    return False
                if now != current:
                    raise Conflict(
                        f"patch deployments/scale {ns}/{name}: replicas changed concurrently "
                        f"({current} -> {now}) while writing {want}; deciding again next loop"
                    ) from exc
                if attempt >= SCALE_WRITE_ATTEMPTS:
                    raise Conflict(
                        f"patch deployments/scale {ns}/{name}: {attempt} writes met HTTP 409; "
                        "giving up until the next loop"
                    ) from exc
                attempt += 1
                resource_version = str(fresh["metadata"]["resourceVersion"])
        self._written[target.key] = want
        self.events.emit(
            obs.ref,
            type_="Normal",
            reason="Scaled",
            message=f"Scaled replicas {current} -> {want} (reason {decision.reason.value})",
        )
        self.log.info("scale_patched", target=target.key, was=current, replicas=want, reason=decision.reason.value)
        return True

    def _patch_scale(self, *, ns: str, name: str, replicas: int, resource_version: str) -> None:
        """PATCH ``deployments/scale`` guarded by ``resourceVersion`` (409 if it moved)."""
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        self.api.call(
            self.api.apps.patch_namespaced_deployment_scale, name, ns, body, what=f"patch deployments/scale {ns}/{name}"
        )

    def _apply_hpa(
        self, target: Target, *, obs: _Observed, hpa: HpaInfo, decision: Decision, notes: list[str]
    ) -> bool:
        """``coexist``: set the HPA's minReplicas to the (clamped) decision."""
        last = self._written_hpa.get(target.key)
        if last is not None and last != hpa.min_replicas:
            message = (
                f"HPA {hpa.name} minReplicas changed outside the autoscaler (was {last}, now {hpa.min_replicas})"
            )
            notes.append(message)
            self.events.emit(obs.ref, type_="Warning", reason="ManualEdit", message=message)
            self._written_hpa[target.key] = hpa.min_replicas
        value, clamp_note = hpa_mod.clamp_min_replicas(decision.replicas, hpa)
        if clamp_note:
            notes.append(clamp_note)
        if value == hpa.min_replicas:
            self._written_hpa[target.key] = value
            return False
        after = hpa_mod.set_min_replicas(self.api, hpa=hpa, value=value)
        self._written_hpa[target.key] = after.min_replicas
        message = (
            f"Set HPA {hpa.name} minReplicas {hpa.min_replicas} -> {after.min_replicas} "
            f"(reason {decision.reason.value}, decision {decision.replicas} replicas)"
        )
        if clamp_note:
            message += f"; {clamp_note}"
        self.events.emit(
            obs.ref, type_="Warning" if clamp_note else "Normal", reason="HPAMinReplicasSet", message=message
        )
        self.log.info("hpa_min_replicas_set", target=target.key, hpa=hpa.name, min_replicas=after.min_replicas)
        return True

    def _apply_keda(
        self, target: Target, *, obs: _Observed, so: keda_mod.ScaledObjectInfo, decision: Decision, notes: list[str]
    ) -> bool:
        """``coexist`` with KEDA: set the ScaledObject's minReplicaCount to the (clamped) decision."""
        value, clamp_note = keda_mod.clamp_min_replica_count(decision.replicas, so)
        if clamp_note:
            notes.append(clamp_note)
        if value == so.min_replica_count:
            return False
        after = keda_mod.set_min_replica_count(self.api, so=so, value=value)
        message = (
            f"Set ScaledObject {so.name} minReplicaCount {so.min_replica_count} -> {after.min_replica_count} "
            f"(reason {decision.reason.value}, decision {decision.replicas} replicas)"
        )
        if clamp_note:
            message += f"; {clamp_note}"
        self.events.emit(
            obs.ref, type_="Warning" if clamp_note else "Normal", reason="ScaledObjectMinReplicaCountSet",
            message=message,
        )  # fmt: skip
        self.log.info("keda_min_replica_count_set", target=target.key, scaledobject=so.name, value=value)
        return True

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
        ns, name = target.namespace, target.deployment
        notes: list[str] = []
        hpa = hpa_mod.find_hpa(hpa_mod.list_hpas(self.api, ns), name)
        so = self._scaled_object(hpa)
        if so is not None and so.original_min_replica_count is not None:
            restored = keda_mod.restore_min_replica_count(self.api, so=so)
            was, now = so.min_replica_count, restored.min_replica_count
            notes.append(f"Restored ScaledObject {so.name} minReplicaCount {was} -> {now}")
        elif hpa is not None and hpa.original_min_replicas is not None:
            after = hpa_mod.restore_min_replicas(self.api, hpa=hpa)
            notes.append(f"Restored HPA {hpa.name} minReplicas {hpa.min_replicas} -> {after.min_replicas}")
        self._written_hpa.pop(target.key, None)
        placeholder = self._read_placeholder(ns, name)
        if placeholder is not None and ph.is_managed(placeholder):
            have = int((placeholder.get("spec") or {}).get("replicas") or 0)
            if have > 0:
                self._scale_placeholder(target, want=0)
                notes.append(f"Scaled placeholders {have} -> 0")
        buffer_note = cb.release(self.api, target)
        if buffer_note is not None:
            notes.append(buffer_note)
        if notes:
            message = "Released: " + "; ".join(notes)
            self.events.emit(self._ref(target), type_="Normal", reason="Released", message=message)
            self.log.info("released", target=target.key, notes=notes)
        return tuple(notes)

    def pin(self, target: Target, replicas: int) -> tuple[str, ...]:
        """Write a paused target's pinned replicas (from the preceding :meth:`read`).

        Args:
            target: The policy's target.
            replicas: The ``paused-replicas`` count.

        Returns:
            A note when written or refused (an HPA owns the replicas); empty when already there.

        Raises:
            Conflict: the Deployment changed since the read (pinned next cycle).
            ActuationError: (other subclasses) the write failed.
        """
        obs = self._observed.pop(target.key, None)
        if obs is None:
            self.read(target)
            obs = self._observed.pop(target.key)
        if obs.hpa is not None:
            message = f"HPA {obs.hpa.name} owns replicas; {st.PAUSED_REPLICAS_ANNOTATION} {replicas} not applied"
            self.events.emit(obs.ref, type_="Warning", reason="Paused", message=message)
            return (message,)
        if obs.spec_replicas == replicas:
            return ()
        ns, name = target.namespace, target.deployment
        self._patch_scale(ns=ns, name=name, replicas=replicas, resource_version=obs.scale_resource_version)
        self._written[target.key] = replicas
        message = f"Paused: pinned replicas {obs.spec_replicas} -> {replicas}"
        self.events.emit(obs.ref, type_="Normal", reason="Paused", message=message)
        self.log.info("paused_replicas_pinned", target=target.key, was=obs.spec_replicas, replicas=replicas)
        return (message,)

    # ----------------------------------------------------------------------- placeholders
    def _apply_placeholders(self, target: Target, *, obs: _Observed, decision: Decision, notes: list[str]) -> bool:
        """Hold ``decision.placeholders`` with the target's backend, and keep the other backend at 0."""
        want = max(0, decision.placeholders)
        why = f"reason {decision.placeholder_reason.value}, decision {decision.replicas} replicas"
        idle = f"placeholders.backend is {target.placeholders.backend}"
        if target.placeholders.backend == cb.BACKEND:
            wrote = self._apply_buffer(target, obs=obs, want=want, why=why, notes=notes)
            return self._apply_placeholder_deployment(target, obs=obs, want=0, why=idle, notes=notes) or wrote
        wrote = self._apply_placeholder_deployment(target, obs=obs, want=want, why=why, notes=notes)
        return self._apply_buffer(target, obs=obs, want=0, why=idle, notes=notes) or wrote

    def _apply_buffer(self, target: Target, *, obs: _Observed, want: int, why: str, notes: list[str]) -> bool:
        """The CapacityBuffer backend's writes (:func:`autoscaler.kube.capacity_buffer.sync`), with Events."""
        buffer = obs.buffer
        if buffer is None and want == 0:
            return False
        if buffer is not None and not ph.is_managed(buffer):
            name = cb.buffer_name(target.deployment)
            refused = f"CapacityBuffer {name} exists and is not managed by the autoscaler; left alone"
            outcome = cb.Outcome(refused=refused)
        else:
            if want > 0:
                notes.extend(self._ensure_priority_class(target, obs.ref))
            try:
                outcome = cb.sync(self.api, target, obs.serving, buffer=buffer, count=want, why=why)
            except ValueError as exc:
                notes.append(f"placeholders: {exc}")
                return False
        if outcome.refused is not None:
            notes.append(outcome.refused)
            self.events.emit(obs.ref, type_="Warning", reason="Refused", message=outcome.refused)
            return False
        if outcome.written:
            self._placeholder_event(obs, "; ".join(outcome.written))
        return bool(outcome.written)

    def _apply_placeholder_deployment(
        self, target: Target, *, obs: _Observed, want: int, why: str, notes: list[str]
    ) -> bool:
        existing = obs.placeholder
        ns, pname = target.namespace, ph.placeholder_name(target.deployment)
        if existing is None and want == 0:
            return False
        if existing is not None and not ph.is_managed(existing):
            message = f"Deployment {pname} exists and is not managed by the autoscaler; placeholders left alone"
            notes.append(message)
            self.events.emit(obs.ref, type_="Warning", reason="Refused", message=message)
            return False
        try:
            desired = ph.desired_deployment(target, obs.serving, replicas=want)
        except ValueError as exc:
            notes.append(f"placeholders: {exc}")
            return False
        if want > 0:
            notes.extend(self._ensure_priority_class(target, obs.ref))
        if existing is None:
            self.api.call(
                self.api.apps.create_namespaced_deployment, ns, desired, what=f"create deployment {ns}/{pname}"
            )
            self._placeholder_event(obs, f"Created {pname} with {want} placeholder pods ({why})")
            return True
        have = int((existing.get("spec") or {}).get("replicas") or 0)
        if ph.current_hash(existing) != ph.current_hash(desired):
            self._replace_placeholder(target, existing=existing, desired=desired)
            self._placeholder_event(obs, f"Updated {pname} pod template; placeholders {have} -> {want} ({why})")
            return True
        if have != want:
            self._scale_placeholder(target, want=want)
            self._placeholder_event(obs, f"Scaled placeholders {have} -> {want} ({why})")
            return True
        return False

    def _placeholder_event(self, obs: _Observed, message: str) -> None:
        self.events.emit(obs.ref, type_="Normal", reason="PlaceholdersScaled", message=message)
        self.log.info("placeholders_written", deployment=obs.ref.name, message=message)

    def _scale_placeholder(self, target: Target, *, want: int) -> None:
        """PATCH the placeholder Deployment's ``spec.replicas`` without a ``resourceVersion`` guard.

        The placeholder Deployment is ours alone (:func:`~autoscaler.kube.placeholders.is_managed`
        was checked on read); the only other writer is the Deployment controller, which updates
        its status several times while the pods start. Guarding on ``resourceVersion`` made
        the write lose that race repeatedly for nothing, since no one else sets its replicas.
        """
        ns, pname = target.namespace, ph.placeholder_name(target.deployment)
        for attempt in range(1, SCALE_WRITE_ATTEMPTS + 1):
            try:
                self.api.call(
                    self.api.apps.patch_namespaced_deployment_scale,
                    pname,
                    ns,
                    {"spec": {"replicas": want}},
                    what=f"patch deployments/scale {ns}/{pname}",
                )
                return
            except Conflict:  # unguarded, so only a storage-level conflict; retrying is safe
                if attempt >= SCALE_WRITE_ATTEMPTS:
                    raise

    def _replace_placeholder(
        self, target: Target, *, existing: Mapping[str, Any], desired: Mapping[str, Any]
    ) -> None:
        """PUT the new template/labels/annotations/replicas (keeping the immutable selector).

        A PUT must carry the ``resourceVersion`` it was built from, and the Deployment
        controller's status updates move it: a 409 is re-read and retried, at most
        :data:`SCALE_WRITE_ATTEMPTS` writes in all.
        """
        current: Mapping[str, Any] = existing
        for attempt in range(1, SCALE_WRITE_ATTEMPTS + 1):
            try:
                self._put_placeholder(target, current=current, desired=desired)
                return
            except Conflict:
                if attempt >= SCALE_WRITE_ATTEMPTS:
                    raise
                current = self._reread_placeholder(target)

    def _reread_placeholder(self, target: Target) -> dict[str, Any]:
        fresh = self._read_placeholder(target.namespace, target.deployment)
        if fresh is None:
            raise NotFound(f"deployment {target.namespace}/{ph.placeholder_name(target.deployment)} disappeared")
        return fresh

    def _put_placeholder(self, target: Target, *, current: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
        ns, pname = target.namespace, ph.placeholder_name(target.deployment)
        meta = dict(current.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **desired["metadata"]["labels"]}
        meta["annotations"] = {**(meta.get("annotations") or {}), **desired["metadata"]["annotations"]}
        meta["ownerReferences"] = desired["metadata"]["ownerReferences"] or meta.get("ownerReferences")
        meta.pop("managedFields", None)
        spec = dict(current.get("spec") or {})
        for key in ("template", "replicas", "strategy", "revisionHistoryLimit"):
            spec[key] = desired["spec"][key]
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
        self.api.call(
            self.api.apps.replace_namespaced_deployment, pname, ns, body, what=f"replace deployment {ns}/{pname}"
        )

    def _ensure_priority_class(self, target: Target, ref: ObjectRef) -> list[str]:
        """Create the placeholders' PriorityClass if missing; report (never raise) when we cannot."""
        name = target.placeholders.priority_class
        if name in self._priority_classes_ok:
            return []
        notes: list[str] = []
        try:
            pc = self._json(
                self.api.call(self.api.scheduling.read_priority_class, name, what=f"read priorityclass {name}")
            )
        except (NotFound, Forbidden):
            pc = None  # Forbidden: RBAC may allow create but not get of this name; try create.
        if pc is not None:
            self._priority_classes_ok.add(name)
            if pc.get("value") != target.placeholders.priority or pc.get("preemptionPolicy") != "Never":
                message = (
                    f"PriorityClass {name} has value {pc.get('value')} and preemptionPolicy "
                    f"{pc.get('preemptionPolicy')}; the policy expects {target.placeholders.priority} and Never"
                )
                notes.append(message)
                self.events.emit(ref, type_="Warning", reason="PriorityClassMismatch", message=message)
            return notes
        body = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name, "labels": {ph.MANAGED_BY_LABEL: ph.MANAGED_BY}},
            "value": target.placeholders.priority,
            "preemptionPolicy": "Never",
            "globalDefault": False,
            "description": (
                "GPU placeholder pods of the predictive autoscaler: pre-request GPU nodes, "
                "preempted by any serving pod; never preempt anything."
            ),
        }
        try:
            self.api.call(self.api.scheduling.create_priority_class, body, what=f"create priorityclass {name}")
        except Conflict:
            pass  # created meanwhile (AlreadyExists)
        except Forbidden as exc:
            message = (
                f"cannot create PriorityClass {name} ({exc}); placeholder pods cannot be created until it exists"
            )
            notes.append(message)
            self.events.emit(ref, type_="Warning", reason="PriorityClassMissing", message=message)
            self.log.warning("priority_class_forbidden", name=name, error=str(exc))
            return notes
        self._priority_classes_ok.add(name)
        self.log.info("priority_class_created", name=name, value=target.placeholders.priority)
        return notes
