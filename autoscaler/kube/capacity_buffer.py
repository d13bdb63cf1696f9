"""cluster-autoscaler's CapacityBuffer: GPU nodes held ahead of demand without running pods.

Why a second backend (``placeholders.backend: capacityBuffer``): placeholder pods
(:mod:`autoscaler.kube.placeholders`) hold a node by running on it, so a serving pod gets
that node only by *preempting* one, and the scheduler picks the newest victim, possibly a
placeholder still pulling the image. A CapacityBuffer (``autoscaling.x-k8s.io/v1beta1``,
served by cluster-autoscaler's CRD with its ``--capacity-buffer-*`` flags, and adopted by
Karpenter) asks the node autoscaler to keep room for ``spec.replicas`` copies of a pod
template; nothing runs there, so a serving pod is scheduled onto the room without evicting
anything. The price: nothing pulls the serving image onto a held node beforehand.

What is written, per target, in the target's namespace (labels and owner as for the
placeholder Deployment, so deleting the serving Deployment garbage-collects both):

* a **PodTemplate** ``<deployment>-capacity`` holding :func:`~autoscaler.kube.placeholders.pod_template`,
  the very template a placeholder pod would run (the serving pod's accelerators, node
  selector, tolerations...), with its hash in an annotation;
* a **CapacityBuffer** ``<deployment>-capacity`` with ``podTemplateRef`` naming it and the
  placeholder count in ``spec.replicas``, recording the template hash it was last synced
  with: a steady cycle reads only the buffer (one GET, like the placeholder Deployment),
  and the PodTemplate is read and replaced only when the serving template changed.

The buffer is ours alone (cluster-autoscaler writes its status only), so its replicas are
merge-patched without a ``resourceVersion`` guard; the PodTemplate is replaced guarded by the
``resourceVersion`` read, once more on a 409. Objects with our names that we do not manage
are never touched. All calls go through :meth:`~autoscaler.kube.client.KubeApi.call`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.errors import ApiNotServed, Forbidden, NotFound
from autoscaler.kube import placeholders as ph
from autoscaler.kube.client import KubeApi, retry_once_on_conflict
from autoscaler.policy.schema import Target

GROUP, VERSION, PLURAL, KIND = "autoscaling.x-k8s.io", "v1beta1", "capacitybuffers", "CapacityBuffer"
#: The ``placeholders.backend`` value that selects this module.
BACKEND = "capacityBuffer"


@dataclass(frozen=True)
class Outcome:
    """What :func:`sync` did: one message per write, or why it wrote nothing."""

    written: tuple[str, ...] = ()
    refused: str | None = None


def is_active(target: Target) -> bool:
    """Whether this target holds its placeholders in a CapacityBuffer. Pure."""
    return target.placeholders.enabled and target.placeholders.backend == BACKEND


def buffer_name(deployment: str) -> str:
    """Name of a target's CapacityBuffer and of its PodTemplate (the placeholder Deployment's name). Pure."""
    return ph.placeholder_name(deployment)


def replicas(buffer: Mapping[str, Any] | None) -> int:
    """The replicas a CapacityBuffer we manage holds; 0 for none or someone else's. Pure."""
    if buffer is None or not ph.is_managed(buffer):
        return 0
    return int((buffer.get("spec") or {}).get("replicas") or 0)


def desired_pod_template(target: Target, serving: Mapping[str, Any]) -> dict[str, Any]:
    """The PodTemplate a target's buffer references (API JSON).

    Pure. Raises:
        ValueError: when the target's pod template has no container.
    """
    deployment = str((serving.get("metadata") or {}).get("name", target.deployment))
    template = ph.pod_template(target, serving)
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {
            "name": buffer_name(deployment),
            "namespace": target.namespace,
            "labels": ph.managed_labels(deployment),
            "annotations": {ph.TEMPLATE_HASH_ANNOTATION: ph.template_hash(template)},
            "ownerReferences": ph.owner_references(serving),
        },
        "template": template,
    }


def desired_buffer(target: Target, serving: Mapping[str, Any], *, count: int, template_hash: str) -> dict[str, Any]:
    """The CapacityBuffer of a target holding ``count`` replicas of its PodTemplate (API JSON). Pure."""
    deployment = str((serving.get("metadata") or {}).get("name", target.deployment))
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": buffer_name(deployment),
            "namespace": target.namespace,
            "labels": ph.managed_labels(deployment),
            "annotations": {ph.TEMPLATE_HASH_ANNOTATION: template_hash},
            "ownerReferences": ph.owner_references(serving),
        },
        "spec": {"podTemplateRef": {"name": buffer_name(deployment)}, "replicas": count},
    }


def not_served(target: Target) -> ApiNotServed:
    """The error of a target whose policy asks for buffers the cluster cannot hold. Pure."""
    return ApiNotServed(
        f"{target.key}: placeholders.backend: {BACKEND} needs the API {GROUP}/{VERSION} {PLURAL}, "
        "which the cluster does not serve (install cluster-autoscaler's CapacityBuffer CRD, or use "
        "placeholders.backend: pods); holding"
    )


def served(api: KubeApi) -> bool:
    """Whether the API server serves ``capacitybuffers`` in ``autoscaling.x-k8s.io/v1beta1``.

    The resource list is checked, not just the group version: ProvisioningRequest is served in
    the same group and version by its own CRD.

    Raises:
        ActuationError: (subclasses other than NotFound) when discovery fails.
    """
    try:
        answer = api.call(api.custom.get_api_resources, GROUP, VERSION, what=f"discover {GROUP}/{VERSION}")
    except NotFound:
        return False
    return any(r.name == PLURAL for r in answer.resources or [])


def read(api: KubeApi, target: Target) -> dict[str, Any] | None:
    """GET a target's CapacityBuffer; ``None`` when there is none.

    For a target whose backend is not ``capacityBuffer`` (a leftover check after a switch),
    an API that is not served or not granted means no buffer of ours can exist: ``None``.

    Raises:
        ApiNotServed: the target's backend is ``capacityBuffer`` and the API is not served.
        Forbidden: the target's backend is ``capacityBuffer`` and RBAC denies the read.
        ActuationError: (other subclasses) when the read fails.
    """
    ns, name = target.namespace, buffer_name(target.deployment)
    active = is_active(target)
    try:
        answer = api.call(
            api.custom.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, name,
            what=f"read capacitybuffer {ns}/{name}",
        )  # fmt: skip
    except NotFound:
        if active and not served(api):
            raise not_served(target) from None
        return None
    except Forbidden:
        if active:
            raise
        return None
    out: dict[str, Any] = answer
    return out


def sync(api: KubeApi, target: Target, serving: Mapping[str, Any], *, buffer: Mapping[str, Any] | None,
         count: int, why: str) -> Outcome:  # fmt: skip
    """Make the target's buffer hold ``count`` replicas of its current pod template.

    Writes only what differs: the PodTemplate when the serving template changed (or there is
    none yet), then the buffer (created, or its replicas and template hash patched). A buffer
    at 0 is left as it is when the template changed; it is synced when replicas are wanted.

    Args:
        api: The API client.
        target: The policy's target.
        serving: The target Deployment as API JSON.
        buffer: The buffer as read this cycle (``None``: none exists); must be ours.
        count: Replicas wanted.
        why: The reason, for the messages.

    Returns:
        One message per write, or the refusal (a PodTemplate of that name that is not ours).

    Raises:
        ValueError: when the target's pod template has no container.
        Conflict: the PodTemplate changed concurrently twice.
        ActuationError: (other subclasses) when a call fails.
    """
    ns, name = target.namespace, buffer_name(target.deployment)
    if buffer is None and count == 0:
        return Outcome()
    template = desired_pod_template(target, serving)
    wanted_hash = str(template["metadata"]["annotations"][ph.TEMPLATE_HASH_ANNOTATION])
    written: list[str] = []
    stale = buffer is None or ph.current_hash(buffer) != wanted_hash
    if count > 0 and stale:
        outcome = _sync_pod_template(api, template)
        if outcome.refused is not None:
            return outcome
        written.extend(outcome.written)
    if buffer is None:
        body = desired_buffer(target, serving, count=count, template_hash=wanted_hash)
        api.call(
            api.custom.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body,
            what=f"create capacitybuffer {ns}/{name}",
        )  # fmt: skip
        written.append(f"Created CapacityBuffer {name} with {count} replicas ({why})")
        return Outcome(written=tuple(written))
    have = replicas(buffer)
    patch: dict[str, Any] = {}
    if have != count:
        patch["spec"] = {"replicas": count}
    if count > 0 and stale:
        patch["metadata"] = {"annotations": {ph.TEMPLATE_HASH_ANNOTATION: wanted_hash}}
    if patch:
        _patch(api, ns, name, patch)
    if have != count:
        written.append(f"Scaled CapacityBuffer {name} {have} -> {count} ({why})")
    return Outcome(written=tuple(written))


def release(api: KubeApi, target: Target) -> str | None:
    """Scale a target's buffer to 0 (release, pause, dry-run); the note, or ``None`` when nothing held.

    Reads afresh. An API that is not served holds no buffer, so there is nothing to undo.

    Raises:
        Forbidden: the target's backend is ``capacityBuffer`` and RBAC denies the read.
        ActuationError: (other subclasses) when a call fails.
    """
    try:
        buffer = read(api, target)
    except ApiNotServed:
        return None
    have = replicas(buffer)
    if have == 0:
        return None
    name = buffer_name(target.deployment)
    _patch(api, target.namespace, name, {"spec": {"replicas": 0}})
    return f"Scaled CapacityBuffer {name} {have} -> 0"


def _patch(api: KubeApi, ns: str, name: str, body: Mapping[str, Any]) -> None:
    """JSON merge patch of our buffer, unguarded (see the module docstring)."""
    api.call(
        api.custom.patch_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, name, body,
        what=f"patch capacitybuffer {ns}/{name}",
    )  # fmt: skip


def _sync_pod_template(api: KubeApi, desired: Mapping[str, Any]) -> Outcome:
    """Create the PodTemplate, or replace it when its hash differs (guarded, one retry on 409)."""
    meta = desired["metadata"]
    ns, name = str(meta["namespace"]), str(meta["name"])

    def get() -> dict[str, Any] | None:
        try:
            answer = api.call(api.core.read_namespaced_pod_template, name, ns, what=f"read podtemplate {ns}/{name}")
        except NotFound:
            return None
        out: dict[str, Any] = api.api_client.sanitize_for_serialization(answer)
        return out

    current = get()
    if current is None:
        api.call(api.core.create_namespaced_pod_template, ns, dict(desired), what=f"create podtemplate {ns}/{name}")
        return Outcome(written=(f"Created PodTemplate {name}",))
    if not ph.is_managed(current):
        return Outcome(refused=f"PodTemplate {name} exists and is not managed by the autoscaler; buffer left alone")
    if ph.current_hash(current) == ph.current_hash(desired):
        return Outcome()

    def write(existing: dict[str, Any] | None) -> dict[str, Any] | None:
        version = ((existing or {}).get("metadata") or {}).get("resourceVersion")
        body = {**desired, "metadata": {**meta, "resourceVersion": version}}
        api.call(api.core.replace_namespaced_pod_template, name, ns, body, what=f"replace podtemplate {ns}/{name}")
        return body

    def still_needed(fresh: dict[str, Any] | None) -> bool:
        return fresh is not None and ph.current_hash(fresh) != ph.current_hash(desired)

    start: dict[str, Any] | None = current
    if retry_once_on_conflict(write, start, reread=get, still_needed=still_needed) is None:
        raise NotFound(f"podtemplate {ns}/{name} disappeared while it was replaced")
    return Outcome(written=(f"Updated PodTemplate {name}",))
