"""A KEDA ScaledObject owning the target's HPA: write its ``minReplicaCount``, not the HPA's.

Why: KEDA creates and owns an HPA (``keda-hpa-<name>``, owner reference kind ``ScaledObject``)
and rewrites that HPA from the ScaledObject on every reconcile, so a ``minReplicas`` patch on
it is reverted within seconds. The ScaledObject's ``spec.minReplicaCount`` is the floor KEDA
gives its HPA: under ``hpa: coexist`` the autoscaler writes that field instead, with the
same rule as for an HPA (the decision, clamped to ``[1, maxReplicaCount]``), and records the
ScaledObject's own value in the same guarded patch so a release can put it back. Under
``hpa: refuse`` nothing is written (the refusal names the ScaledObject).

KEDA's defaults apply to absent fields: ``minReplicaCount`` 0, ``maxReplicaCount`` 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.kube.client import KubeApi, retry_once_on_conflict
from autoscaler.kube.status import ORIGINAL_MIN_REPLICAS_ANNOTATION, original_min_replicas

GROUP, VERSION, PLURAL, KIND = "keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"
#: KEDA's defaults for absent fields.
DEFAULT_MIN, DEFAULT_MAX = 0, 100


@dataclass(frozen=True)
class ScaledObjectInfo:
    """The parts of a ScaledObject the autoscaler reads."""

    name: str
    namespace: str
    min_replica_count: int
    max_replica_count: int
    resource_version: str
    #: Its own ``minReplicaCount`` before ``coexist`` first changed it (``None``: never changed).
    original_min_replica_count: int | None = None


def owner_name(hpa: Mapping[str, Any]) -> str | None:
    """The ScaledObject that owns an HPA (API JSON), or ``None``. Pure."""
    for ref in (hpa.get("metadata") or {}).get("ownerReferences") or []:
        group = str(ref.get("apiVersion") or "").split("/")[0]
        if ref.get("kind") == KIND and group == GROUP:
            return str(ref.get("name"))
    return None


def info(obj: Mapping[str, Any]) -> ScaledObjectInfo:
    """The summary of a ScaledObject (API JSON). Pure."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return ScaledObjectInfo(
        name=str(meta.get("name")),
        namespace=str(meta.get("namespace")),
        min_replica_count=int(spec.get("minReplicaCount", DEFAULT_MIN)),
        max_replica_count=int(spec.get("maxReplicaCount", DEFAULT_MAX)),
        resource_version=str(meta.get("resourceVersion") or ""),
        original_min_replica_count=original_min_replicas(obj, minimum=0),
    )


def clamp_min_replica_count(replicas: int, so: ScaledObjectInfo) -> tuple[int, str | None]:
    """The ``minReplicaCount`` to set for a decision and why it differs (``coexist``'s rule). Pure."""
    if replicas > so.max_replica_count:
        return so.max_replica_count, (
            f"decision {replicas} replicas exceeds ScaledObject {so.name} maxReplicaCount "
            f"{so.max_replica_count}; minReplicaCount clamped to {so.max_replica_count}"
        )
    if replicas < 1:
        return 1, f"decision {replicas} replicas is below 1; ScaledObject {so.name} minReplicaCount set to 1"
    return replicas, None


def read(api: KubeApi, namespace: str, name: str) -> ScaledObjectInfo:
    """GET a ScaledObject.

    Raises:
        NotFound: it does not exist (or KEDA's CRD is not installed).
        ActuationError: (other subclasses) when the read fails.
    """
    answer = api.call(
        api.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
        what=f"read scaledobject {namespace}/{name}",
    )  # fmt: skip
    return info(answer)


def set_min_replica_count(api: KubeApi, *, so: ScaledObjectInfo, value: int) -> ScaledObjectInfo:
    """Patch ``spec.minReplicaCount`` guarded by ``resourceVersion``, recording the original; one retry on 409.

    Raises:
        Conflict: the ScaledObject changed concurrently twice.
        ActuationError: (other subclasses) when the patch or the re-read fails.
    """
    if so.min_replica_count == value:
        return so

    def write(o: ScaledObjectInfo) -> ScaledObjectInfo:
        return _patch(api, so=o, value=min(value, o.max_replica_count), restore=False)

    return retry_once_on_conflict(
        write,
        so,
        reread=lambda: read(api, so.namespace, so.name),
        still_needed=lambda o: o.min_replica_count != min(value, o.max_replica_count),
    )


def restore_min_replica_count(api: KubeApi, *, so: ScaledObjectInfo) -> ScaledObjectInfo:
    """Put the recorded ``minReplicaCount`` back and drop the record; one retry on 409.

    Raises:
        Conflict: the ScaledObject changed concurrently twice.
        ActuationError: (other subclasses) when the patch or the re-read fails.
    """
    if so.original_min_replica_count is None:
        return so

    def write(o: ScaledObjectInfo) -> ScaledObjectInfo:
        assert o.original_min_replica_count is not None  # noqa: S101 - still_needed checked it
        return _patch(api, so=o, value=o.original_min_replica_count, restore=True)

    return retry_once_on_conflict(
        write,
        so,
        reread=lambda: read(api, so.namespace, so.name),
        still_needed=lambda o: o.original_min_replica_count is not None,
    )


def _patch(api: KubeApi, *, so: ScaledObjectInfo, value: int, restore: bool) -> ScaledObjectInfo:
    """One JSON merge patch: the value, and the record of the original (set once, dropped on restore)."""
    meta: dict[str, object] = {"resourceVersion": so.resource_version}
    if restore:
        meta["annotations"] = {ORIGINAL_MIN_REPLICAS_ANNOTATION: None}
    elif so.original_min_replica_count is None:
        meta["annotations"] = {ORIGINAL_MIN_REPLICAS_ANNOTATION: str(so.min_replica_count)}
    body = {"metadata": meta, "spec": {"minReplicaCount": value}}
    answer = api.call(
        api.custom.patch_namespaced_custom_object, GROUP, VERSION, so.namespace, PLURAL, so.name, body,
        what=f"patch scaledobject {so.namespace}/{so.name}",
    )  # fmt: skip
    return info(answer)
