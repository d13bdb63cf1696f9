"""The placeholder Deployment: low-priority pods that make cluster-autoscaler add GPU nodes early.

Why: a GPU node takes ~15 minutes from "pod pending" to "model serving". The controller keeps
``decision.placeholders`` pods of a dedicated negative PriorityClass (``preemptionPolicy:
Never``) that request the same GPUs, on the same kind of node, as one serving replica. A
pending placeholder makes cluster-autoscaler add a node (the overprovisioning pattern of the
cluster-autoscaler FAQ); a serving pod scaled up later preempts the placeholder and starts on
that node at once, and because the placeholder ran the *serving image*, the image is already
on the node (only the model load remains).

This module is pure: it builds the desired Deployment JSON from the target Deployment (as the
API server returned it, camelCase JSON) and the policy, and classifies placeholder pods.
:mod:`autoscaler.kube.cluster` does the IO.

Choices, documented here because they are visible to operators:

* **Name** ``<deployment>-capacity``, labels ``app.kubernetes.io/managed-by:
  gpu-predictive-autoscaler`` and ``autoscaler.gpu/target: <deployment>``. The pod labels
  never include the serving pods' labels, so placeholders never match the serving
  Deployment's selector or its Service.
* **Owner**: the target Deployment (``controller: false``, ``blockOwnerDeletion: false``).
  Deleting the serving Deployment then garbage-collects its placeholders, so no orphaned pod
  keeps a GPU node (and its bill) alive. Not a controller reference: the Deployment
  controller must not adopt it, and ``blockOwnerDeletion`` would need extra RBAC
  (``deployments/finalizers``) where the OwnerReferencesPermissionEnforcement plugin runs.
* **Scheduling**: the target pod template's ``nodeSelector``, ``tolerations``, ``affinity``,
  ``runtimeClassName`` and ``imagePullSecrets`` (to pull a private serving image), so a
  placeholder fits exactly where a serving replica would. Accelerators: every accelerator
  resource the serving pod's containers request (:func:`accelerators`: any ``nvidia.com/*``,
  e.g. ``nvidia.com/gpu`` or a MIG slice ``nvidia.com/mig-1g.10gb`` of the GPU operator's
  "mixed" strategy, and ``amd.com/gpu``; ``nvidia.com/gpu: 1`` if it requests none), summed
  over the containers, times ``placeholders.gpusPerPod`` (1 = one placeholder holds one
  serving replica's accelerators), as request and limit.
* **Image and command**: by default the target's first container image with ``command:
  ["sleep", "infinity"]`` — this pre-pulls the serving image. The image must contain a
  ``sleep`` that accepts ``infinity`` (GNU coreutils, as in the Debian/Ubuntu-based vLLM
  images); for an image without one set ``placeholders.image`` to an image whose own
  entrypoint idles (e.g. ``registry.k8s.io/pause:3.9``): with ``placeholders.image`` the
  image's entrypoint runs unchanged (and the serving image is then not pre-pulled).
* **Hardening**: ``terminationGracePeriodSeconds: 0`` (preemption frees the GPU at once),
  ``automountServiceAccountToken: false``, ``enableServiceLinks: false``, cpu 10m / memory
  16Mi requests (64Mi memory limit), uid/gid 65534 (non-root, set explicitly so it works
  for images whose default user is root), no privilege escalation, all capabilities
  dropped, read-only root filesystem, RuntimeDefault seccomp. ``sleep`` needs nothing more.
* **Strategy** ``Recreate``: a template change (new serving image) never surges extra GPU pods.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.policy.schema import Target

GPU_RESOURCE = "nvidia.com/gpu"
#: Extended resources that are accelerators: any resource of these vendors' device plugins ...
ACCELERATOR_PREFIXES = ("nvidia.com/",)
#: ... and these exact names.
ACCELERATOR_NAMES = ("amd.com/gpu",)
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "gpu-predictive-autoscaler"
TARGET_LABEL = "autoscaler.gpu/target"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "gpu-placeholder"
TEMPLATE_HASH_ANNOTATION = "autoscaler.gpu/template-hash"
SUFFIX = "-capacity"
#: The user the placeholder container runs as (``nobody``).
NOBODY = 65534


def placeholder_name(deployment: str) -> str:
    """Name of the placeholder Deployment of a serving Deployment. Pure."""
    return f"{deployment}{SUFFIX}"


def selector_labels(deployment: str) -> dict[str, str]:
    """Labels selecting the placeholder pods of one target (also the Deployment's selector). Pure."""
    return {TARGET_LABEL: deployment, COMPONENT_LABEL: COMPONENT}


def selector_string(deployment: str) -> str:
    """:func:`selector_labels` as a label selector string. Pure."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(deployment).items())


def managed_labels(deployment: str) -> dict[str, str]:
    """Labels of every object the autoscaler writes for a target (Deployment, CapacityBuffer, PodTemplate). Pure."""
    return {MANAGED_BY_LABEL: MANAGED_BY, TARGET_LABEL: deployment}


def owner_references(serving: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The target Deployment as the (non-controller) owner of our objects; empty without a uid. Pure.

    See the module docstring: deleting the serving Deployment garbage-collects them.
    """
    meta = serving.get("metadata") or {}
    if not meta.get("uid"):
        return []
    return [{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": False,
        "blockOwnerDeletion": False,
    }]  # fmt: skip


def is_managed(obj: Mapping[str, Any]) -> bool:
    """True if an object (Deployment, CapacityBuffer, PodTemplate) carries our managed-by label. Pure.

    We never touch anyone else's.
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


def is_accelerator(resource: str) -> bool:
    """Whether an extended resource name is a GPU (or a slice of one). Pure."""
    return resource.startswith(ACCELERATOR_PREFIXES) or resource in ACCELERATOR_NAMES


def accelerators(pod_spec: Mapping[str, Any]) -> dict[str, int]:
    """The accelerators one pod of this spec requests, by resource name (summed over its containers).

    Pure. An extended resource's request defaults to its limit, so the limit counts where no
    request is given. Unreadable quantities (not whole numbers) are left out.

    Args:
        pod_spec: A pod template's ``spec`` as API JSON.

    Returns:
        e.g. ``{"nvidia.com/gpu": 2}``, ``{"nvidia.com/mig-1g.10gb": 1}``, ``{"amd.com/gpu": 1}``;
        empty when it requests none.
    """
    out: dict[str, int] = {}
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for name in sorted({*requests, *limits}):
            if not is_accelerator(name):
                continue
            try:
                count = int(str(requests.get(name, limits.get(name))))
            except ValueError:
                continue
            if count > 0:
                out[name] = out.get(name, 0) + count
    return out


def pod_template(target: Target, serving: Mapping[str, Any]) -> dict[str, Any]:
    """The placeholder pod template for a target.

    Pure. Args:
        target: The policy's target (``placeholders`` settings).
        serving: The target Deployment as API JSON (camelCase, e.g. from
            ``ApiClient.sanitize_for_serialization``).

    Returns:
        The ``spec.template`` of the placeholder Deployment.

    Raises:
        ValueError: when the target's pod template has no container.
    """
    spec = ((serving.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        raise ValueError("the target Deployment's pod template has no container")
    first = containers[0]
    wanted = {
        name: str(count * target.placeholders.gpus_per_pod)
        for name, count in (accelerators(spec) or {GPU_RESOURCE: 1}).items()
    }
    container: dict[str, Any] = {
        "name": "placeholder",
        "image": target.placeholders.image or first.get("image"),
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi", **wanted},
            "limits": {"memory": "64Mi", **wanted},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NOBODY,
            "runAsGroup": NOBODY,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if target.placeholders.image is None:
        container["command"] = ["sleep", "infinity"]
    if first.get("imagePullPolicy"):
        container["imagePullPolicy"] = first["imagePullPolicy"]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "priorityClassName": target.placeholders.priority_class,
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    for key in ("nodeSelector", "tolerations", "affinity", "runtimeClassName", "imagePullSecrets"):
        if spec.get(key):
            pod_spec[key] = copy.deepcopy(spec[key])
    deployment = str((serving.get("metadata") or {}).get("name", target.deployment))
    return {
        "metadata": {
            "labels": {**selector_labels(deployment), MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        },
        "spec": pod_spec,
    }


def template_hash(template: Mapping[str, Any]) -> str:
    """Stable short hash of a pod template (detects target changes without server defaults). Pure."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def desired_deployment(target: Target, serving: Mapping[str, Any], *, replicas: int) -> dict[str, Any]:
    """The whole placeholder Deployment for a target.

    Pure. Args:
        target: The policy's target.
        serving: The target Deployment as API JSON (its ``metadata.uid`` becomes the owner).
        replicas: Placeholder pods wanted.

    Returns:
        The Deployment JSON to create (or whose template and replicas to put).

    Raises:
        ValueError: when the target's pod template has no container.
    """
    deployment = str((serving.get("metadata") or {}).get("name", target.deployment))
    template = pod_template(target, serving)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": placeholder_name(deployment),
            "namespace": target.namespace,
            "labels": managed_labels(deployment),
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(template)},
            "ownerReferences": owner_references(serving),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(deployment)},
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 1,
            "template": template,
        },
    }


def current_hash(placeholder: Mapping[str, Any]) -> str | None:
    """The template hash recorded on an existing placeholder Deployment. Pure."""
    annotations = (placeholder.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TEMPLATE_HASH_ANNOTATION)
    return str(value) if value is not None else None


@dataclass(frozen=True)
class PodCounts:
    """Placeholder pods by readiness: warm (image on the node), cold (pulling), pending (no node)."""

    warm: int = 0
    cold: int = 0
    pending: int = 0


def _is_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )


def is_live(pod: Mapping[str, Any]) -> bool:
    """Not being deleted and not finished. Pure."""
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return meta.get("deletionTimestamp") is None and phase not in ("Succeeded", "Failed")


def is_unbound(pod: Mapping[str, Any]) -> bool:
    """Live and not bound to a node yet (waiting for the scheduler or for a new node). Pure."""
    return is_live(pod) and not (pod.get("spec") or {}).get("nodeName")


def classify(pods: Iterable[Mapping[str, Any]]) -> PodCounts:
    """Count placeholder pods as warm, cold or pending.

    Pure. A placeholder is *warm* when Running and Ready (its ``sleep`` container started, so
    the image is on the node), *cold* when bound to a node but not ready yet (still pulling),
    *pending* when not bound. Pods being deleted (e.g. just preempted) do not count.

    Args:
        pods: Placeholder pods as API JSON.

    Returns:
        The counts.
    """
    warm = cold = pending = 0
    for pod in pods:
        if not is_live(pod):
            continue
        if is_unbound(pod):
            pending += 1
        elif _is_ready(pod):
            warm += 1
        else:
            cold += 1
    return PodCounts(warm=warm, cold=cold, pending=pending)
