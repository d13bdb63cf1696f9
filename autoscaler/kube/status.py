"""The annotations an operator reads and writes on a target: status, pause, the recorded HPA floor.

Why: HPA, KEDA and WVA all put their state on an object, so ``kubectl`` answers "what is the
autoscaler doing with this Deployment?" without reading the leader's logs. This module is
pure (names, parsing, rendering); :mod:`autoscaler.kube.cluster` does the IO.

* :data:`STATUS_ANNOTATION` on the target Deployment: the latest decision as one JSON object
  (mode, desired/current replicas and placeholders, reasons, model, forecast, last update).
  ``kubectl get deploy X -o jsonpath='{.metadata.annotations.autoscaler\\.gpu/status}'``.
  The API server bumps a Deployment's ``metadata.generation`` on any annotation change and
  the Deployment controller copies annotations to the current ReplicaSet; neither touches the
  spec or rolls pods, but it is why the status is written only when it changes (and at least
  every :data:`STATUS_REFRESH_SECONDS`).
* :data:`PAUSED_ANNOTATION` (``"true"``) and/or :data:`PAUSED_REPLICAS_ANNOTATION` (a count,
  as KEDA's ``autoscaling.keda.sh/paused-replicas``) on the target Deployment, set by the
  operator: the target holds (pinned to the count when given) and is released.
* :data:`ORIGINAL_MIN_REPLICAS_ANNOTATION` on an HPA: its own ``minReplicas``, recorded in the
  same write that first raises it under ``coexist``, so a release can put it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from autoscaler.ports import TargetStatus

STATUS_ANNOTATION = "autoscaler.gpu/status"
PAUSED_ANNOTATION = "autoscaler.gpu/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaler.gpu/paused-replicas"
ORIGINAL_MIN_REPLICAS_ANNOTATION = "autoscaler.gpu/original-min-replicas"

#: An unchanged status is rewritten after this long, so a ``lastUpdate`` older than this says
#: the controller is not acting on the target, without one Deployment write per target and
#: cycle (each write also bumps the Deployment's generation and is copied to its ReplicaSet).
STATUS_REFRESH_SECONDS = 900.0


@dataclass(frozen=True)
class Pause:
    """An operator's pause of a target: ``replicas`` is the pin (``None``: hold as is)."""

    replicas: int | None = None
    problem: str | None = None


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def parse_pause(obj: Mapping[str, Any]) -> Pause | None:
    """The pause requested on an object (API JSON), or ``None`` when it is not paused.

    Pure. ``paused: "true"`` pauses; a ``paused-replicas`` count pauses too and pins (KEDA's
    rule). An unreadable count still pauses (the operator asked to stop), without a pin, and
    says why in ``problem``.
    """
    annotations = _annotations(obj)
    paused = str(annotations.get(PAUSED_ANNOTATION, "")).strip().lower() == "true"
    raw = annotations.get(PAUSED_REPLICAS_ANNOTATION)
    if raw is None:
        return Pause() if paused else None
    try:
        replicas = int(str(raw).strip())
    except ValueError:
        replicas = -1
    if replicas < 0:
        return Pause(problem=f"{PAUSED_REPLICAS_ANNOTATION}: {raw!r} is not a replica count; holding as is")
    return Pause(replicas=replicas)


def original_min_replicas(obj: Mapping[str, Any], *, minimum: int = 1) -> int | None:
    """The object's own floor as recorded by ``coexist`` (``None`` if not recorded). Pure.

    ``minimum`` is the lowest floor its owner accepts: 1 for an HPA's ``minReplicas``, 0 for
    a KEDA ScaledObject's ``minReplicaCount``; a value below it is not a record of ours.
    """
    raw = _annotations(obj).get(ORIGINAL_MIN_REPLICAS_ANNOTATION)
    if raw is None:
        return None
    try:
        value = int(str(raw))
    except ValueError:
        return None
    return value if value >= minimum else None


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_fields(status: TargetStatus) -> dict[str, Any]:
    """The status object without its time (what must change for a write to be worth it). Pure."""
    out: dict[str, Any] = {
        "mode": status.mode,
        "desiredReplicas": status.desired_replicas,
        "currentReplicas": status.current_replicas,
        "desiredPlaceholders": status.desired_placeholders,
        "currentPlaceholders": status.current_placeholders,
        "reason": status.reason,
        "placeholderReason": status.placeholder_reason,
        "model": status.model,
        # One decimal: finer changes would rewrite the Deployment every cycle for nothing.
        "forecast": None if status.forecast is None else round(status.forecast, 1),
    }
    return {k: v for k, v in out.items() if v is not None}


def render_status(status: TargetStatus) -> str:
    """The annotation value: compact JSON with ``lastUpdate`` (RFC 3339). Pure."""
    return json.dumps({**status_fields(status), "lastUpdate": _timestamp(status.time)}, separators=(",", ":"))


def would_scale_message(status: TargetStatus) -> str | None:
    """The ``WouldScale`` Event message of a dry-run status, or ``None`` when nothing would change. Pure."""
    if status.mode != "dry-run" or status.desired_replicas is None:
        return None
    want_p = status.desired_placeholders if status.desired_placeholders is not None else status.current_placeholders
    if status.desired_replicas == status.current_replicas and want_p == status.current_placeholders:
        return None
    return (
        f"Dry-run: would scale replicas {status.current_replicas} -> {status.desired_replicas} "
        f"(reason {status.reason}), placeholders {status.current_placeholders} -> {want_p}"
        + (f" (reason {status.placeholder_reason})" if status.placeholder_reason else "")
    )
