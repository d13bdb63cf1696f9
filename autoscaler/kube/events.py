"""Kubernetes Events for every action and refusal, so ``kubectl describe`` explains the autoscaler.

Why: operators look at ``kubectl describe deployment`` first; the autoscaler must say there
what it did (``Scaled``, ``PlaceholdersScaled``, ``HPAMinReplicasSet``) and what it refused
(``Refused``, ``ManualEdit``, ``PolicyRejected`` on the policy ConfigMap), with the decision's
reason. Events are best effort: a failure to record one must never fail a control cycle, so
:meth:`EventRecorder.emit` swallows every error and counts it (``errors``).

A refusal repeats every cycle; like client-go's event correlator, a repeated Event (same
object, type, reason and message) bumps ``count``/``lastTimestamp`` of the existing Event
(one PATCH) instead of creating a new object every 30 s. Uses ``core/v1`` Events, which every
supported API server serves.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from autoscaler.errors import NotFound
from autoscaler.kube.client import KubeApi
from autoscaler.logs import get_logger

#: ``source.component`` / ``reportingComponent`` of our Events.
COMPONENT = "gpu-predictive-autoscaler"
#: Longest Event message sent (the API server keeps them short in practice).
MAX_MESSAGE = 1024
#: Repeated Events remembered for aggregation.
_CACHE_SIZE = 1024

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about (``involvedObject``)."""

    kind: str
    namespace: str
    name: str
    api_version: str
    uid: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The ``involvedObject`` JSON. Pure."""
        out = {"kind": self.kind, "namespace": self.namespace, "name": self.name, "apiVersion": self.api_version}
        if self.uid:
            out["uid"] = self.uid
        return out


def deployment_ref(namespace: str, name: str, *, uid: str | None) -> ObjectRef:
    """Reference to an ``apps/v1`` Deployment. Pure."""
    return ObjectRef(kind="Deployment", namespace=namespace, name=name, api_version="apps/v1", uid=uid)


def configmap_ref(namespace: str, name: str, *, uid: str | None) -> ObjectRef:
    """Reference to a ``v1`` ConfigMap. Pure."""
    return ObjectRef(kind="ConfigMap", namespace=namespace, name=name, api_version="v1", uid=uid)


def _timestamp(now: datetime) -> str:
    """``metav1.Time`` (RFC 3339, seconds)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Writes ``core/v1`` Events; never raises.

    Attributes:
        errors: Events that could not be written (for a metric).
        emitted: Events written or aggregated (for tests and a metric).
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        instance: str | None = None,
        log: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Create a recorder.

        Args:
            api: The API client.
            instance: ``reportingInstance`` (default: the host name, i.e. the pod name).
            log: structlog-style logger (default: a new one).
            clock: Source of the Event timestamps.
        """
        self.api = api
        self.instance = instance or socket.gethostname()
        self.log = log if log is not None else get_logger(component="events")
        self.clock = clock
        self.errors = 0
        self.emitted = 0
        self._seen: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def emit(self, ref: ObjectRef, *, type_: EventType, reason: str, message: str) -> None:
        """Record an Event about ``ref`` (aggregating repeats). Never raises.

        Args:
            ref: The object the Event is about.
            type_: ``Normal`` or ``Warning``.
            reason: Short UpperCamelCase reason, e.g. ``Scaled``.
            message: Human-readable message (truncated to :data:`MAX_MESSAGE`).
        """
        message = message[:MAX_MESSAGE]
        key = (ref.namespace, ref.kind, ref.name, ref.uid or "", type_, reason, message)
        try:
            with self._lock:
                seen = self._seen.get(key)
            now = self.clock()
            if seen is not None and self._bump(namespace=ref.namespace, name=seen[0], count=seen[1] + 1, now=now):
                with self._lock:
                    self._seen[key] = (seen[0], seen[1] + 1)
                    self._seen.move_to_end(key)
            else:
                name = self._create(ref, type_=type_, reason=reason, message=message, now=now)
                with self._lock:
                    self._seen[key] = (name, 1)
                    while len(self._seen) > _CACHE_SIZE:
                        self._seen.popitem(last=False)
            self.emitted += 1
        except Exception as exc:
            self.errors += 1
            self.log.warning(
                "event_failed", reason=reason, object=f"{ref.kind}/{ref.namespace}/{ref.name}", error=str(exc)
            )

    def _create(self, ref: ObjectRef, *, type_: EventType, reason: str, message: str, now: datetime) -> str:
        name = f"{ref.name}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": ref.as_dict(),
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": _timestamp(now),
            "lastTimestamp": _timestamp(now),
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "action": reason,
        }
        self.api.call(
            self.api.core.create_namespaced_event, ref.namespace, body, what=f"create event {ref.namespace}/{name}"
        )
        return name

    def _bump(self, *, namespace: str, name: str, count: int, now: datetime) -> bool:
        """Increment an existing Event; False if it is gone (then a new one is created)."""
        try:
            self.api.call(
                self.api.core.patch_namespaced_event,
                name,
                namespace,
                {"count": count, "lastTimestamp": _timestamp(now)},
                what=f"patch event {namespace}/{name}",
            )
        except NotFound:
            return False
        return True


__all__ = [
    "COMPONENT",
    "EventRecorder",
    "EventType",
    "ObjectRef",
    "configmap_ref",
    "deployment_ref",
]
