"""Serving replicas through the scale subresource, guarded by the ``resourceVersion`` read.

Why a guard: people with ``kubectl scale``, an HPA or a second controller replica during a
hand-over may write the same field. A 409 means the Deployment changed since the read; it
is re-read, and the write retried only while ``spec.replicas`` is still the value the
decision was made from (status or metadata moved), at most :data:`SCALE_WRITE_ATTEMPTS`
writes. The writer also remembers what it wrote, per target, to report manual edits once.
"""

from __future__ import annotations

from typing import Any

from autoscaler.core.types import Decision
from autoscaler.errors import Conflict
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import EventRecorder
from autoscaler.kube.observed import Observed, to_json
from autoscaler.kube.status import PAUSED_REPLICAS_ANNOTATION
from autoscaler.policy.schema import Target

#: Most PATCHes of ``deployments/scale`` per apply while 409s only report status/metadata writes.
SCALE_WRITE_ATTEMPTS = 4


class ScaleWriter:
    """Writes a target's serving replicas; detects and reports edits made by others."""

    def __init__(self, api: KubeApi, *, events: EventRecorder, log: Any) -> None:
        """Create the writer over the API client, emitting Events and logs."""
        self.api = api
        self.events = events
        self.log = log
        #: Replicas we last wrote (or saw already set), per target key.
        self.written: dict[str, int] = {}

    def check_manual_edit(self, target: Target, *, obs: Observed, notes: list[str]) -> None:
        """Report once (Event and note) that ``spec.replicas`` moved since we last wrote it."""
        last = self.written.get(target.key)
        if last is None or last == obs.spec_replicas:
            return
        message = f"replicas changed outside the autoscaler (was {last}, now {obs.spec_replicas})"
        notes.append(message)
        self.events.emit(obs.ref, type_="Warning", reason="ManualEdit", message=message)
        self.log.warning("manual_edit", target=target.key, was=last, now=obs.spec_replicas)
        self.written[target.key] = obs.spec_replicas  # report each edit once

    def write(self, target: Target, *, obs: Observed, decision: Decision) -> bool:
        """Write serving replicas through the scale subresource, retrying 409s while the decision holds.

        A 409 means the Deployment changed since our read. It is re-read: if ``spec.replicas``
        already is the decided value, nothing is left to do; if it is still the value the
        decision was made from, only status or metadata moved and the write is retried with
        the fresh ``resourceVersion`` (at most :data:`SCALE_WRITE_ATTEMPTS` writes); if someone
        else set another value, the decision was made from a state that no longer exists and
        is dropped (the next loop decides from the new value).

        Returns:
            Whether anything was written.

        Raises:
            Conflict: the replicas changed concurrently, or every attempt met a 409.
            ActuationError: (other subclasses) a read or write failed.
        """
        ns, name, want = target.namespace, target.deployment, decision.replicas
        current = obs.spec_replicas
        if current == want:
            self.written[target.key] = want
            return False
        resource_version = obs.scale_resource_version
        attempt = 1
        while True:
            try:
                self.patch(ns=ns, name=name, replicas=want, resource_version=resource_version)
                break
            except Conflict as exc:
                self.log.info("scale_conflict", target=target.key, attempt=attempt, kind=exc.kind)
                # The Deployment's resourceVersion is its scale's. Re-read the Deployment (not the
                # scale: a separate path, so a fault proxy can fault the scale writes alone).
                fresh = to_json(
                    self.api,
                    self.api.call(
                        self.api.apps.read_namespaced_deployment, name, ns, what=f"read deployment {ns}/{name}"
                    ),
                )
                now = int((fresh.get("spec") or {}).get("replicas") or 0)
                if now == want:
                    self.written[target.key] = want
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
        self.written[target.key] = want
        self.events.emit(
            obs.ref,
            type_="Normal",
            reason="Scaled",
            message=f"Scaled replicas {current} -> {want} (reason {decision.reason.value})",
        )
        self.log.info("scale_patched", target=target.key, was=current, replicas=want, reason=decision.reason.value)
        return True

    def pin(self, target: Target, *, obs: Observed, replicas: int) -> tuple[str, ...]:
        """Write a paused target's pinned replicas; refused (a note) while an HPA owns them."""
        if obs.hpa is not None:
            message = f"HPA {obs.hpa.name} owns replicas; {PAUSED_REPLICAS_ANNOTATION} {replicas} not applied"
            self.events.emit(obs.ref, type_="Warning", reason="Paused", message=message)
            return (message,)
        if obs.spec_replicas == replicas:
            return ()
        ns, name = target.namespace, target.deployment
        self.patch(ns=ns, name=name, replicas=replicas, resource_version=obs.scale_resource_version)
        self.written[target.key] = replicas
        message = f"Paused: pinned replicas {obs.spec_replicas} -> {replicas}"
        self.events.emit(obs.ref, type_="Normal", reason="Paused", message=message)
        self.log.info("paused_replicas_pinned", target=target.key, was=obs.spec_replicas, replicas=replicas)
        return (message,)

    def patch(self, *, ns: str, name: str, replicas: int, resource_version: str) -> None:
        """PATCH ``deployments/scale`` guarded by ``resourceVersion`` (409 if it moved)."""
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        self.api.call(
            self.api.apps.patch_namespaced_deployment_scale, name, ns, body, what=f"patch deployments/scale {ns}/{name}"
        )
