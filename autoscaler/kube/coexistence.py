"""Coexisting with the HPA (or the KEDA ScaledObject) that owns a target's replicas.

An HPA on the Deployment owns ``spec.replicas``; writing them would start a tug of war.
With ``hpa: coexist`` the decision becomes the HPA's ``minReplicas`` instead
(:mod:`autoscaler.kube.hpa`), or, when a KEDA ScaledObject owns that HPA, the
ScaledObject's ``minReplicaCount`` (KEDA would revert the HPA, :mod:`autoscaler.kube.keda`).
A release puts back the value recorded before the first change. Edits of the HPA's
``minReplicas`` by others are reported once, like manual replica edits.
"""

from __future__ import annotations

from typing import Any

from autoscaler.core.types import Decision
from autoscaler.errors import NotFound
from autoscaler.kube import hpa as hpa_mod
from autoscaler.kube import keda as keda_mod
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import EventRecorder
from autoscaler.kube.hpa import HpaInfo
from autoscaler.kube.observed import Observed
from autoscaler.policy.schema import Target


class Coexistence:
    """Writes the decision as an HPA's minReplicas or a ScaledObject's minReplicaCount."""

    def __init__(self, api: KubeApi, *, events: EventRecorder, log: Any) -> None:
        """Create the writer over the API client, emitting Events and logs."""
        self.api = api
        self.events = events
        self.log = log
        #: The HPA minReplicas we last wrote (or saw already set), per target key.
        self.written: dict[str, int] = {}

    def scaled_object(self, hpa: HpaInfo | None) -> keda_mod.ScaledObjectInfo | None:
        """The KEDA ScaledObject owning the HPA, if any (``None`` when it is gone meanwhile)."""
        if hpa is None or hpa.scaled_object is None:
            return None
        try:
            return keda_mod.read(self.api, hpa.namespace, hpa.scaled_object)
        except NotFound:
            return None

    def apply_hpa(self, target: Target, *, obs: Observed, hpa: HpaInfo, decision: Decision, notes: list[str]) -> bool:
        """``coexist``: set the HPA's minReplicas to the (clamped) decision."""
        last = self.written.get(target.key)
        if last is not None and last != hpa.min_replicas:
            message = f"HPA {hpa.name} minReplicas changed outside the autoscaler (was {last}, now {hpa.min_replicas})"
            notes.append(message)
            self.events.emit(obs.ref, type_="Warning", reason="ManualEdit", message=message)
            self.written[target.key] = hpa.min_replicas
        value, clamp_note = hpa_mod.clamp_min_replicas(decision.replicas, hpa)
        if clamp_note:
            notes.append(clamp_note)
        if value == hpa.min_replicas:
            self.written[target.key] = value
            return False
        after = hpa_mod.set_min_replicas(self.api, hpa=hpa, value=value)
        self.written[target.key] = after.min_replicas
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

    def apply_keda(
        self, target: Target, *, obs: Observed, so: keda_mod.ScaledObjectInfo, decision: Decision, notes: list[str]
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

    def release(self, target: Target) -> list[str]:
        """Put back the recorded minReplicas (or minReplicaCount); one note per write. Reads afresh."""
        notes: list[str] = []
        hpa = hpa_mod.find_hpa(hpa_mod.list_hpas(self.api, target.namespace), target.deployment)
        so = self.scaled_object(hpa)
        if so is not None and so.original_min_replica_count is not None:
            restored = keda_mod.restore_min_replica_count(self.api, so=so)
            was, now = so.min_replica_count, restored.min_replica_count
            notes.append(f"Restored ScaledObject {so.name} minReplicaCount {was} -> {now}")
        elif hpa is not None and hpa.original_min_replicas is not None:
            after = hpa_mod.restore_min_replicas(self.api, hpa=hpa)
            notes.append(f"Restored HPA {hpa.name} minReplicas {hpa.min_replicas} -> {after.min_replicas}")
        self.written.pop(target.key, None)
        return notes
