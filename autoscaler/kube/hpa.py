"""A HorizontalPodAutoscaler on the same Deployment: the competing writer.

Why: if an HPA targets the serving Deployment, both would write ``spec.replicas`` and fight
every cycle. The policy chooses (``target.hpa``): ``coexist`` — the autoscaler never writes
the replicas itself but sets the HPA's ``minReplicas`` to its decision, so the HPA keeps
reacting to load above the predicted floor; ``refuse`` — write nothing and say so. This
module finds the HPA (``autoscaling/v1``: ``scaleTargetRef`` is the same in every version)
and computes and writes ``minReplicas``.

``minReplicas`` is clamped to ``[1, maxReplicas]``: ``maxReplicas`` is the HPA owner's cost
ceiling, which the autoscaler must not raise, and 0 needs the HPAScaleToZero feature gate.
A clamp is reported (note + Warning Event), never silent.

The first write also records the HPA's own ``minReplicas`` in an annotation
(:data:`~autoscaler.kube.status.ORIGINAL_MIN_REPLICAS_ANNOTATION`), in the same guarded
patch, so leaving ``enforce`` (dry-run, pause, removal, ``autoscaler release``) can restore it
(:func:`restore_min_replicas`) even after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.kube.client import KubeApi, retry_once_on_conflict
from autoscaler.kube.keda import owner_name as keda_owner
from autoscaler.kube.status import ORIGINAL_MIN_REPLICAS_ANNOTATION, original_min_replicas

#: ``scaleTargetRef.apiVersion`` values that name an apps Deployment.
_DEPLOYMENT_GROUPS = ("apps", "extensions")


@dataclass(frozen=True)
class HpaInfo:
    """The parts of an HPA the autoscaler reads."""

    name: str
    namespace: str
    min_replicas: int
    max_replicas: int
    resource_version: str
    #: Its own ``minReplicas`` before ``coexist`` first changed it (``None``: never changed).
    original_min_replicas: int | None = None
    #: The KEDA ScaledObject that owns it (then its floor is written there, see :mod:`autoscaler.kube.keda`).
    scaled_object: str | None = None


def _targets(hpa: Mapping[str, Any], deployment: str) -> bool:
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    group = str(ref.get("apiVersion") or "apps/v1").split("/")[0]
    return ref.get("kind") == "Deployment" and ref.get("name") == deployment and group in _DEPLOYMENT_GROUPS


def _info(hpa: Mapping[str, Any]) -> HpaInfo:
    meta, spec = hpa.get("metadata") or {}, hpa.get("spec") or {}
    return HpaInfo(
        name=str(meta.get("name")),
        namespace=str(meta.get("namespace")),
        min_replicas=int(spec.get("minReplicas") or 1),
        max_replicas=int(spec.get("maxReplicas") or 1),
        resource_version=str(meta.get("resourceVersion") or ""),
        original_min_replicas=original_min_replicas(hpa),
        scaled_object=keda_owner(hpa),
    )


def find_hpa(hpas: Iterable[Mapping[str, Any]], deployment: str) -> HpaInfo | None:
    """The HPA whose ``scaleTargetRef`` is the Deployment (the oldest name if several).

    Pure. Args:
        hpas: HPAs of the namespace as API JSON.
        deployment: The serving Deployment's name.

    Returns:
        Its summary, or ``None`` if no HPA targets the Deployment.
    """
    matching = sorted((h for h in hpas if _targets(h, deployment)), key=lambda h: str(h["metadata"]["name"]))
    return _info(matching[0]) if matching else None


def clamp_min_replicas(replicas: int, hpa: HpaInfo) -> tuple[int, str | None]:
    """The ``minReplicas`` to set for a decided replica count, and why it differs (if it does).

    Pure. Args:
        replicas: The decided serving replicas.
        hpa: The HPA.

    Returns:
        ``(value, note)``; ``note`` is ``None`` when ``value == replicas``.
    """
    if replicas > hpa.max_replicas:
        return hpa.max_replicas, (
            f"decision {replicas} replicas exceeds HPA {hpa.name} maxReplicas {hpa.max_replicas}; "
            f"minReplicas clamped to {hpa.max_replicas}"
        )
    if replicas < 1:
        return 1, f"decision {replicas} replicas is below the HPA minimum of 1; minReplicas set to 1"
    return replicas, None


def list_hpas(api: KubeApi, namespace: str) -> list[dict[str, Any]]:
    """All ``autoscaling/v1`` HPAs of a namespace as API JSON.

    Args:
        api: The API client.
        namespace: The target's namespace.

    Returns:
        The HPAs (camelCase JSON).

    Raises:
        ActuationError: (subclass) when the list fails.
    """
    answer = api.call(
        api.autoscaling.list_namespaced_horizontal_pod_autoscaler,
        namespace,
        what=f"list horizontalpodautoscalers in {namespace}",
    )
    out: list[dict[str, Any]] = api.api_client.sanitize_for_serialization(answer).get("items") or []
    return out


def set_min_replicas(api: KubeApi, *, hpa: HpaInfo, value: int) -> HpaInfo:
    """Patch ``spec.minReplicas`` with optimistic concurrency; on a 409 re-read and retry once.

    The HPA's own value is recorded with the first change (see the module docstring).

    Args:
        api: The API client.
        hpa: The HPA as read (its ``resourceVersion`` guards the patch).
        value: The new ``minReplicas`` (already clamped).

    Returns:
        The HPA after the write (or as re-read, when someone set the value meanwhile).

    Raises:
        Conflict: the HPA changed concurrently twice.
        ActuationError: (other subclasses) when the patch or the re-read fails.
    """
    if hpa.min_replicas == value:
        return hpa

    def write(h: HpaInfo) -> HpaInfo:
        return _patch_min_replicas(api, hpa=h, value=min(value, h.max_replicas))

    return retry_once_on_conflict(
        write, hpa, reread=lambda: _read(api, hpa), still_needed=lambda h: h.min_replicas != min(value, h.max_replicas)
    )


def restore_min_replicas(api: KubeApi, *, hpa: HpaInfo) -> HpaInfo:
    """Put the recorded ``minReplicas`` back and drop the record (one guarded patch, one retry on 409).

    Args:
        api: The API client.
        hpa: The HPA as read, with ``original_min_replicas`` set.

    Returns:
        The HPA after the write (unchanged when nothing was recorded).

    Raises:
        Conflict: the HPA changed concurrently twice.
        ActuationError: (other subclasses) when the patch or the re-read fails.
    """
    if hpa.original_min_replicas is None:
        return hpa

    def write(h: HpaInfo) -> HpaInfo:
        assert h.original_min_replicas is not None  # noqa: S101 - still_needed checked it
        return _patch_min_replicas(api, hpa=h, value=h.original_min_replicas, restore=True)

    return retry_once_on_conflict(
        write, hpa, reread=lambda: _read(api, hpa), still_needed=lambda h: h.original_min_replicas is not None
    )


def _read(api: KubeApi, hpa: HpaInfo) -> HpaInfo:
    """The HPA as it is now (after a 409)."""
    fresh = api.call(
        api.autoscaling.read_namespaced_horizontal_pod_autoscaler,
        hpa.name,
        hpa.namespace,
        what=f"read horizontalpodautoscaler {hpa.namespace}/{hpa.name}",
    )
    return _info(api.api_client.sanitize_for_serialization(fresh))


def _patch_min_replicas(api: KubeApi, *, hpa: HpaInfo, value: int, restore: bool = False) -> HpaInfo:
    """One merge patch guarded by ``resourceVersion``: the value, and the record of the original.

    Setting records the HPA's own value when none is recorded yet; restoring deletes the
    record (``null`` in a merge patch).
    """
    meta: dict[str, object] = {"resourceVersion": hpa.resource_version}
    if restore:
        meta["annotations"] = {ORIGINAL_MIN_REPLICAS_ANNOTATION: None}
    elif hpa.original_min_replicas is None:
        meta["annotations"] = {ORIGINAL_MIN_REPLICAS_ANNOTATION: str(hpa.min_replicas)}
    body = {"metadata": meta, "spec": {"minReplicas": value}}
    answer = api.call(
        api.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
        hpa.name,
        hpa.namespace,
        body,
        what=f"patch horizontalpodautoscaler {hpa.namespace}/{hpa.name}",
    )
    return _info(api.api_client.sanitize_for_serialization(answer))
