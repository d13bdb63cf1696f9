"""What one read of a target saw, kept for the writes that follow it in the same cycle.

The writers (:mod:`autoscaler.kube.scale_writer`, :mod:`autoscaler.kube.coexistence`,
:mod:`autoscaler.kube.placeholder_writer`) decide what to write by comparing the decision
with what was read, and guard the serving write with the ``resourceVersion`` read. So they
take this record rather than reading again: one read per cycle, and a write never acts on
a state newer than the one the decision was made from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoscaler.kube import keda as keda_mod
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import ObjectRef, deployment_ref
from autoscaler.kube.hpa import HpaInfo


@dataclass
class Observed:
    """The objects of one target as read (API JSON), and the scale's ``resourceVersion``."""

    scale_resource_version: str
    spec_replicas: int
    serving: dict[str, Any]
    placeholder: dict[str, Any] | None
    hpa: HpaInfo | None
    keda: keda_mod.ScaledObjectInfo | None = None
    buffer: dict[str, Any] | None = None

    @property
    def ref(self) -> ObjectRef:
        """The serving Deployment, for Events."""
        meta = self.serving.get("metadata") or {}
        return deployment_ref(str(meta.get("namespace")), str(meta.get("name")), uid=meta.get("uid"))


def to_json(api: KubeApi, obj: Any) -> Any:
    """A client model object as the API's JSON (dicts and lists)."""
    return api.api_client.sanitize_for_serialization(obj)
