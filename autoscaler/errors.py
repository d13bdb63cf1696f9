"""Our own error hierarchy.

The controller talks to Prometheus, the Kubernetes API and user-written policy documents;
each of those libraries raises its own exception types. Adapters translate them at the
boundary (``raise OurError(...) from exc``) so the control loop can decide what to do from
the *kind* of failure: a temporary one is retried next cycle, a permanent one skips the
target and is reported. Nothing above the adapters catches a third-party exception.
"""

from __future__ import annotations


class AutoscalerError(Exception):
    """Base class of every error this project raises on purpose."""

    #: Whether retrying on the next loop can succeed without anyone changing anything.
    temporary: bool = False

    @property
    def kind(self) -> str:
        """Stable snake_case name used as a metric label and in structured logs."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class ConfigError(AutoscalerError):
    """A policy or setting is invalid; carries the field path and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class PolicyRejected(ConfigError):
    """A whole policy document was rejected; ``errors`` lists every field problem found."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.path, first.reason + more)


class MetricsError(AutoscalerError):
    """Prometheus could not give a usable answer."""

    temporary = True


class MetricsUnavailable(MetricsError):
    """Prometheus did not answer usefully: connection refused, timeout, 5xx or 429, a malformed body."""


class MetricsMalformed(MetricsUnavailable):
    """Prometheus (or something in front of it) answered, but not with a usable query answer.

    Invalid or too deeply nested JSON, an answer too large, a field of the wrong type, a
    timestamp or value that is not a number (a login page from a proxy, a broken server).
    """


class MetricsEmpty(MetricsError):
    """The query succeeded but returned no series (target absent or not scraped yet)."""


class MetricsInvalid(MetricsError):
    """The answer held NaN/Inf, several series where one was expected, or stale samples."""


class CycleDeadlineExceeded(AutoscalerError):
    """The cycle's deadline passed before this target was reached: it holds (nothing written) until the next."""

    temporary = True


class ActuationError(AutoscalerError):
    """The cluster refused or failed a read or a write."""

    temporary = True


class Conflict(ActuationError):
    """Optimistic concurrency failed (HTTP 409): someone else changed the object."""


class Forbidden(ActuationError):
    """RBAC denied the request (HTTP 403); retrying will not help until RBAC changes."""

    temporary = False


class NotFound(ActuationError):
    """The object does not exist (HTTP 404)."""

    temporary = False


class ApiNotServed(ActuationError):
    """The cluster does not serve an API the policy asks for (its CRD is not installed).

    Not a :class:`NotFound`: the object is not merely absent, nothing of that kind can exist
    until someone installs the API, so the target holds and says what is missing.
    """

    temporary = False


class NotLeader(ActuationError):
    """A write was refused because this replica no longer holds the leader Lease."""


class ClusterUnavailable(ActuationError):
    """The API server did not answer or answered 5xx/timeout."""


class InvalidRequest(ActuationError):
    """The API server rejected a request as invalid (HTTP 400/422 and other 4xx).

    A bug or a schema mismatch with the API server version: retrying the same request will
    not help.
    """

    temporary = False


class HandleMismatch(ActuationError):
    """A write was handed a read that is not this cluster's read of this target.

    A caller's bug, not a cluster failure (the controller always hands back its own read).
    Nothing is written. An :class:`ActuationError`, so the controller fails only that target
    for the cycle, under its own ``kind`` (``handle_mismatch``); not temporary: the same call
    fails the same way next time.
    """

    temporary = False
