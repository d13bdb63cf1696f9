"""Connecting to the Kubernetes API and translating its failures into our error types.

Why: every module of :mod:`autoscaler.kube` talks to the API server through the official
``kubernetes`` client, which raises ``ApiException`` (any HTTP status) and raw urllib3/socket
errors, and by default retries a read three times (a hung API server would then cost four
timeouts per call). The control loop must instead see *kinds* of failure
(:mod:`autoscaler.errors`): 409 :class:`Conflict` (retry once, then next loop), 403/401
:class:`Forbidden` (RBAC: a person must act), 404 :class:`NotFound`, and 5xx/429/timeouts/
refused connections :class:`ClusterUnavailable` (temporary). This module is the only place
that knows the client's exception types; every call goes through :meth:`KubeApi.call`, which
adds a connect/read timeout and does the translation, chaining the original exception.

It never logs or returns credentials: error messages carry the API server's ``Status.message``
and the operation's description only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException, ApiTypeError, ApiValueError
from kubernetes.config.config_exception import ConfigException

from autoscaler.errors import (
    ActuationError,
    ClusterUnavailable,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
)

#: (connect, read) timeout in seconds of every API call. A cycle makes ~6 calls per target;
#: a hung API server costs one read timeout per call, never a retry storm.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 15.0)
#: Longest message taken from an API answer into an error (Status messages can be long).
_MAX_MESSAGE = 300


#: A guarded object's summary (see `retry_once_on_conflict`).
T = TypeVar("T")


def status_message(exc: ApiException) -> str:
    """The human-readable part of an ``ApiException``: ``Status.message`` if the body has one.

    Pure. Args:
        exc: The client's exception.

    Returns:
        ``"HTTP <code>: <message>"``, truncated; never the response headers.
    """
    text = ""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            text = body
        else:
            text = str(parsed.get("message", "")) if isinstance(parsed, dict) else body
    text = text or str(exc.reason or "")
    text = " ".join(text.split())[:_MAX_MESSAGE]
    return f"HTTP {exc.status or 0}: {text}" if text else f"HTTP {exc.status or 0}"


def translate(exc: BaseException, what: str) -> ActuationError:
    """Map a client exception to our error type.

    Pure. Args:
        exc: An ``ApiException``, a urllib3 error or an ``OSError``.
        what: What was being done, e.g. ``"patch deployments/scale ns/name"``.

    Returns:
        The matching :class:`~autoscaler.errors.ActuationError` subclass (not raised).
    """
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"{what}: {status_message(exc)}"
        if status == 409:
            return Conflict(message)
        if status in (401, 403):
            return Forbidden(message)
        if status == 404:
            return NotFound(message)
        if status == 429:
            return ClusterUnavailable(f"{what}: API server is throttling requests ({status_message(exc)})")
        if status == 0 or status >= 500:
            return ClusterUnavailable(message)
        return InvalidRequest(message)
    # urllib3 wraps the transport failure in MaxRetryError once its (single) retry is spent;
    # name the failure itself, so a read timeout is not reported as an unreachable server.
    # (NewConnectionError, e.g. "connection refused", subclasses ConnectTimeoutError.)
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None else exc
    if isinstance(cause, urllib3.exceptions.ResponseError):  # "too many 429 error responses": it answered
        return ClusterUnavailable(f"{what}: API server answered with errors ({cause})"[:_MAX_MESSAGE])
    timed_out = isinstance(cause, urllib3.exceptions.TimeoutError)
    if timed_out and not isinstance(cause, urllib3.exceptions.NewConnectionError):
        return ClusterUnavailable(f"{what}: API server timed out ({type(cause).__name__}: {cause})"[:_MAX_MESSAGE])
    return ClusterUnavailable(f"{what}: API server unreachable ({type(cause).__name__}: {cause})"[:_MAX_MESSAGE])


#: Exceptions a client call can raise for transport reasons (besides ``ApiException``).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)


@dataclass
class KubeApi:
    """The typed API groups the controller uses, over one ``ApiClient``, with translated errors.

    Attributes:
        api_client: The underlying client (owns the connection pool).
        timeout: (connect, read) seconds applied to every call.
    """

    api_client: ApiClient
    timeout: tuple[float, float] = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.autoscaling = kubernetes.client.AutoscalingV1Api(self.api_client)
        self.coordination = kubernetes.client.CoordinationV1Api(self.api_client)
        self.scheduling = kubernetes.client.SchedulingV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)

    def call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        """Call a generated client method with the timeout; translate every failure.

        Args:
            fn: A bound method of one of the API groups, e.g. ``self.apps.read_namespaced_deployment``.
            *args: Its positional arguments.
            what: Description of the operation for error messages.
            **kwargs: Its keyword arguments (``_request_timeout`` defaults to :attr:`timeout`).

        Returns:
            The method's answer (a client model object, or a raw response when streaming).

        Raises:
            Conflict: HTTP 409.
            Forbidden: HTTP 401/403.
            NotFound: HTTP 404.
            ClusterUnavailable: 5xx, 429, timeouts, refused or dropped connections, TLS errors, and
                answers the client cannot read.
            InvalidRequest: other 4xx.
        """
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise translate(exc, what) from exc
        except TRANSPORT_ERRORS as exc:
            raise translate(exc, what) from exc
        except (ApiValueError, ApiTypeError):
            raise  # the client refused our own arguments: a bug, not an answer
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            # The client could not turn the answer into its model (junk, wrong types, JSON
            # nested past the parser's limit): a broken server or proxy, like a 5xx.
            raise ClusterUnavailable(f"{what}: unreadable answer from the API server ({type(exc).__name__})") from exc

    def close(self) -> None:
        """Close the connection pool."""
        self.api_client.close()


def retry_once_on_conflict(
    write: Callable[[T], T], current: T, *, reread: Callable[[], T], still_needed: Callable[[T], bool]
) -> T:
    """``write(current)``; on a 409, re-read and write once more if the re-read still needs it.

    The rule for a write guarded by the ``resourceVersion`` it read (a floor on an HPA or a
    ScaledObject): someone changed the object meanwhile, so decide again on what it is now.
    A second 409 propagates, and the write waits for the next loop.
    """
    try:
        return write(current)
    except Conflict:
        fresh = reread()
        return write(fresh) if still_needed(fresh) else fresh


def _no_read_retries() -> urllib3.util.Retry:
    """Retry a failed *connect* once (a stale pooled connection), never a read or a status.

    ``Retry-After`` is not honoured: with no status retries left, urllib3 would turn a 429
    (or 503) carrying it into a ``MaxRetryError``, reported as an unreachable server; the
    answer itself (HTTP 429, the API server's priority and fairness throttling) is kept.
    """
    return urllib3.util.Retry(
        total=1, connect=1, read=0, redirect=0, status=0, other=0, respect_retry_after_header=False
    )


def connect(
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    in_cluster: bool | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> KubeApi:
    """Build a :class:`KubeApi` from the in-cluster ServiceAccount or a kubeconfig.

    Args:
        kubeconfig: Path of a kubeconfig file; wins over everything else when given.
        context: kubeconfig context (default: its current context).
        in_cluster: Force (True) or forbid (False) the in-cluster config; ``None`` = use it when
            ``KUBERNETES_SERVICE_HOST`` is set and no kubeconfig was given, else the default
            kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).
        timeout: (connect, read) timeout of every call.

    Returns:
        A ready client; nothing is sent to the API server yet.

    Raises:
        ConfigError: the configuration cannot be loaded (path ``kubeconfig``).
    """
    cfg = kubernetes.client.Configuration()
    use_in_cluster = (
        in_cluster
        if in_cluster is not None
        else (kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))
    )
    try:
        if use_in_cluster and kubeconfig is None:
            # Re-reads the projected token file when it rotates.
            kubernetes.config.load_incluster_config(client_configuration=cfg)
        else:
            kubernetes.config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig is not None else None,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        source = "in-cluster ServiceAccount" if use_in_cluster else f"kubeconfig {kubeconfig or '(default)'}"
        raise ConfigError("kubeconfig", f"cannot load the {source}: {exc}") from exc
    cfg.retries = _no_read_retries()
    return KubeApi(ApiClient(configuration=cfg), timeout=timeout)


def from_api_client(api_client: ApiClient, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> KubeApi:
    """Wrap an existing ``ApiClient`` (tests, or callers with their own configuration).

    Disables the client's read retries like :func:`connect` does. Args:
        api_client: The client; its configuration is changed in place (retries only).
        timeout: (connect, read) timeout of every call.

    Returns:
        The wrapper.
    """
    api_client.configuration.retries = _no_read_retries()
    # The REST client built its pool with the old retries; rebuild it with the new ones.
    api_client.rest_client = kubernetes.client.rest.RESTClientObject(api_client.configuration)
    return KubeApi(api_client, timeout=timeout)
