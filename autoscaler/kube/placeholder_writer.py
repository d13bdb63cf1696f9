"""Placeholder capacity: a placeholder Deployment per target, or a CapacityBuffer.

Placeholder pods hold GPU nodes ahead of demand at a priority below every serving pod,
so cluster-autoscaler adds nodes early and serving pods preempt them
(:mod:`autoscaler.kube.placeholders`). The Deployment is ours alone, so its replicas are
patched without a ``resourceVersion`` guard (the Deployment controller's status writes
would otherwise race every write); its PriorityClass is created when missing and allowed
(a 403 is reported, not fatal). With ``placeholders.backend: capacityBuffer`` a
CapacityBuffer holds them instead (:mod:`autoscaler.kube.capacity_buffer`), and the
backend not chosen is kept at 0, so a switch empties the other one. Objects of these
names that we do not manage are left alone with a Warning ``Refused``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoscaler.core.types import Decision
from autoscaler.errors import Conflict, Forbidden, NotFound
from autoscaler.kube import capacity_buffer as cb
from autoscaler.kube import placeholders as ph
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import EventRecorder, ObjectRef
from autoscaler.kube.observed import Observed, to_json
from autoscaler.kube.scale_writer import SCALE_WRITE_ATTEMPTS
from autoscaler.policy.schema import Target


class PlaceholderWriter:
    """Holds a decision's placeholders with the target's backend; releases both."""

    def __init__(self, api: KubeApi, *, events: EventRecorder, log: Any) -> None:
        """Create the writer over the API client, emitting Events and logs."""
        self.api = api
        self.events = events
        self.log = log
        self._priority_classes_ok: set[str] = set()

    def read(self, ns: str, name: str) -> dict[str, Any] | None:
        """The placeholder Deployment of serving Deployment ``name`` (API JSON), or ``None``."""
        pname = ph.placeholder_name(name)
        try:
            answer = self.api.call(
                self.api.apps.read_namespaced_deployment, pname, ns, what=f"read deployment {ns}/{pname}"
            )
        except NotFound:
            return None
        out: dict[str, Any] = to_json(self.api, answer)
        return out

    def release(self, target: Target) -> list[str]:
        """Scale our placeholder Deployment and CapacityBuffer to 0; one note per write. Reads afresh."""
        notes: list[str] = []
        placeholder = self.read(target.namespace, target.deployment)
        if placeholder is not None and ph.is_managed(placeholder):
            have = int((placeholder.get("spec") or {}).get("replicas") or 0)
            if have > 0:
                self._scale(target, want=0)
                notes.append(f"Scaled placeholders {have} -> 0")
        buffer_note = cb.release(self.api, target)
        if buffer_note is not None:
            notes.append(buffer_note)
        return notes

    def apply(self, target: Target, *, obs: Observed, decision: Decision, notes: list[str]) -> bool:
        """Hold ``decision.placeholders`` with the target's backend, and keep the other backend at 0."""
        want = max(0, decision.placeholders)
        why = f"reason {decision.placeholder_reason.value}, decision {decision.replicas} replicas"
        idle = f"placeholders.backend is {target.placeholders.backend}"
        if target.placeholders.backend == cb.BACKEND:
            wrote = self._apply_buffer(target, obs=obs, want=want, why=why, notes=notes)
            return self._apply_placeholder_deployment(target, obs=obs, want=0, why=idle, notes=notes) or wrote
        wrote = self._apply_placeholder_deployment(target, obs=obs, want=want, why=why, notes=notes)
        return self._apply_buffer(target, obs=obs, want=0, why=idle, notes=notes) or wrote

    def _apply_buffer(self, target: Target, *, obs: Observed, want: int, why: str, notes: list[str]) -> bool:
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
            self._event(obs, "; ".join(outcome.written))
        return bool(outcome.written)

    def _apply_placeholder_deployment(
        self, target: Target, *, obs: Observed, want: int, why: str, notes: list[str]
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
            self._event(obs, f"Created {pname} with {want} placeholder pods ({why})")
            return True
        have = int((existing.get("spec") or {}).get("replicas") or 0)
        if ph.current_hash(existing) != ph.current_hash(desired):
            self._replace(target, existing=existing, desired=desired)
            self._event(obs, f"Updated {pname} pod template; placeholders {have} -> {want} ({why})")
            return True
        if have != want:
            self._scale(target, want=want)
            self._event(obs, f"Scaled placeholders {have} -> {want} ({why})")
            return True
        return False

    def _event(self, obs: Observed, message: str) -> None:
        self.events.emit(obs.ref, type_="Normal", reason="PlaceholdersScaled", message=message)
        self.log.info("placeholders_written", deployment=obs.ref.name, message=message)

    def _scale(self, target: Target, *, want: int) -> None:
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

    def _replace(self, target: Target, *, existing: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
        """PUT the new template/labels/annotations/replicas (keeping the immutable selector).

        A PUT must carry the ``resourceVersion`` it was built from, and the Deployment
        controller's status updates move it: a 409 is re-read and retried, at most
        :data:`SCALE_WRITE_ATTEMPTS` writes in all.
        """
        current: Mapping[str, Any] = existing
        for attempt in range(1, SCALE_WRITE_ATTEMPTS + 1):
            try:
                self._put(target, current=current, desired=desired)
                return
            except Conflict:
                if attempt >= SCALE_WRITE_ATTEMPTS:
                    raise
                current = self._reread(target)

    def _reread(self, target: Target) -> dict[str, Any]:
        fresh = self.read(target.namespace, target.deployment)
        if fresh is None:
            raise NotFound(f"deployment {target.namespace}/{ph.placeholder_name(target.deployment)} disappeared")
        return fresh

    def _put(self, target: Target, *, current: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
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
            pc = to_json(
                self.api,
                self.api.call(self.api.scheduling.read_priority_class, name, what=f"read priorityclass {name}"),
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
            message = f"cannot create PriorityClass {name} ({exc}); placeholder pods cannot be created until it exists"
            notes.append(message)
            self.events.emit(ref, type_="Warning", reason="PriorityClassMissing", message=message)
            self.log.warning("priority_class_forbidden", name=name, error=str(exc))
            return notes
        self._priority_classes_ok.add(name)
        self.log.info("priority_class_created", name=name, value=target.placeholders.priority)
        return notes
