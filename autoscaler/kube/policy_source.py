"""Where the policy comes from: a watched ConfigMap in the cluster, or a file.

Why: operators change the policy with ``kubectl apply`` while the controller runs. A change
must take effect without a restart, and a *bad* change must never take the controller down
or leave it without a policy: the last good policy keeps running, and the rejection is
reported where the operator looks — a Warning Event on the ConfigMap (reason
``PolicyRejected``, every field path and reason), a structured log line
(``config_rejected``) and a metric (through ``on_rejected``). This improves on
cluster-autoscaler's priority expander, which reports a bad ConfigMap but then has no
configuration at all.

:class:`ConfigMapPolicySource` watches the one ConfigMap (a field-selected watch from the
listed ``resourceVersion``) and relists periodically and after any watch error (410 Gone,
dropped connection, API server down), so a missed event is picked up within
``relist_seconds``. Validation is :func:`autoscaler.policy.loader.load_policy`; the
generation increments on every accepted change. :class:`FilePolicySource` gives ``--policy
FILE`` runs the same semantics by re-reading the file when its stat changes.

A policy that cannot be loaded at start-up is a :class:`~autoscaler.errors.ConfigError`
(the CLI exits non-zero): there is no last good policy to keep.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from autoscaler.errors import ActuationError, ConfigError, PolicyRejected
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import EventRecorder, configmap_ref
from autoscaler.logs import get_logger
from autoscaler.policy.advice import advise
from autoscaler.policy.loader import load_policy, read_policy_bytes
from autoscaler.policy.schema import Policy

#: Delays (s) between consecutive failed list/watch attempts; the last one repeats.
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

OnRejected = Callable[[PolicyRejected], None]
#: Stands for "the key is missing" among the texts judged (a ConfigMap value never holds NUL).
_MISSING = "\x00missing"


def _log_accepted(log: Any, policy: Policy, generation: int) -> None:
    """``config_accepted``, then one ``config_advice`` warning per piece of advice on the policy."""
    log.info("config_accepted", generation=generation, targets=[t.key for t in policy.targets])
    for advice in advise(policy):
        log.warning("config_advice", generation=generation, path=advice.path, code=advice.code, message=advice.message)


def _describe(exc: PolicyRejected) -> str:
    return "; ".join(f"{e.path or '(document)'}: {e.reason}" for e in exc.errors)


def _paths(exc: PolicyRejected) -> list[str]:
    return [e.path or "(document)" for e in exc.errors]


class _KeepLastGood:
    """The policy in force, its generation, and the text that was last judged (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.policy: Policy | None = None
        self.generation = 0
        self.last_text: str | bytes | None = None

    def mark(self, text: str | bytes | None) -> bool:
        """Remember ``text`` as judged; False if it was the one judged last time (nothing to do)."""
        with self.lock:
            if text is not None and text == self.last_text:
                return False
            self.last_text = text
            return True

    def offer(self, text: str | bytes) -> bool:
        """Judge a new document; a valid one different from the policy in force starts a generation.

        Returns:
            False when the text is the one judged last time (nothing done).

        Raises:
            PolicyRejected: the document is invalid (the policy in force is kept).
        """
        if not self.mark(text):
            return False
        policy = load_policy(text)
        with self.lock:
            if policy != self.policy:
                self.policy = policy
                self.generation += 1
        return True

    def current(self) -> tuple[Policy, int]:
        with self.lock:
            if self.policy is None:
                raise ConfigError("", "no policy loaded")
            return self.policy, self.generation


class ConfigMapPolicySource:
    """:class:`~autoscaler.ports.PolicySource` over a watched ConfigMap (see the module docstring)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        key: str = "policy.yaml",
        on_rejected: OnRejected | None = None,
        events: EventRecorder | None = None,
        log: Any = None,
        relist_seconds: float = 300.0,
    ) -> None:
        """Configure (not start) the source.

        Args:
            api: The API client.
            namespace: Namespace of the ConfigMap (the controller's own).
            name: Name of the ConfigMap.
            key: Data key holding the policy YAML.
            on_rejected: Called with every rejection (e.g. to count it in a metric).
            events: Event recorder for the ``PolicyRejected`` Warning (default: one on ``api``).
            log: structlog-style logger.
            relist_seconds: Length of one watch; the ConfigMap is listed again after each.
        """
        self.api = api
        self.namespace = namespace
        self.name = name
        self.key = key
        self.on_rejected = on_rejected
        self.log = log if log is not None else get_logger(component="policy", configmap=f"{namespace}/{name}")
        self.events = events if events is not None else EventRecorder(api, log=self.log)
        self.relist_seconds = relist_seconds
        self.rejections = 0
        self._last_rejection: PolicyRejected | None = None
        self._state = _KeepLastGood()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._response_lock = threading.Lock()
        self._failures = 0

    # ------------------------------------------------------------------------ public API
    def start(self) -> ConfigMapPolicySource:
        """Load the policy now, then follow the ConfigMap in a daemon thread.

        Returns:
            ``self``.

        Raises:
            ConfigError: the ConfigMap cannot be read, does not exist, lacks the key, or its
                policy is invalid (:class:`~autoscaler.errors.PolicyRejected`, every problem).
        """
        where = f"configmap {self.namespace}/{self.name}"
        try:
            items, rv = self._list()
        except ActuationError as exc:
            raise ConfigError(where, f"cannot read the policy ConfigMap: {exc}") from exc
        if not items:
            raise ConfigError(where, "the policy ConfigMap does not exist")
        self._handle(items[0])
        if self._state.policy is None:
            rejected = self._last_rejection
            if rejected is not None:
                raise rejected
            raise ConfigError(where, "no valid policy")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(rv,), name=f"policy-{self.name}", daemon=True)
        self._thread.start()
        return self

    def current(self) -> tuple[Policy, int]:
        """The last good policy and its generation.

        Raises:
            ConfigError: before a successful :meth:`start`.
        """
        return self._state.current()

    def stop(self) -> None:
        """Stop following the ConfigMap (interrupts an open watch)."""
        self._stop.set()
        with self._response_lock:
            response = self._response
        if response is not None:
            _interrupt(response)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    # -------------------------------------------------------------------------- internals
    def _list(self) -> tuple[list[dict[str, Any]], str]:
        answer = self.api.call(
            self.api.core.list_namespaced_config_map,
            self.namespace,
            field_selector=f"metadata.name={self.name}",
            what=f"list configmap {self.namespace}/{self.name}",
        )
        body = self.api.api_client.sanitize_for_serialization(answer)
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _handle(self, configmap: dict[str, Any]) -> None:
        """Judge the ConfigMap's policy text; keep the last good policy on rejection."""
        text = (configmap.get("data") or {}).get(self.key)
        try:
            if text is None:
                if not self._state.mark(_MISSING):
                    return
                raise PolicyRejected([ConfigError(f"data.{self.key}", "key missing from the ConfigMap")])
            judged = self._state.offer(text)
        except PolicyRejected as exc:
            self._reject(configmap, exc)
            return
        if judged:
            _log_accepted(self.log, *self._state.current())

    def _reject(self, configmap: dict[str, Any], exc: PolicyRejected) -> None:
        self.rejections += 1
        self._last_rejection = exc
        generation = self._state.generation
        self.log.warning(
            "config_rejected",
            paths=_paths(exc),
            errors=[{"path": e.path, "reason": e.reason} for e in exc.errors],
            keeping_generation=generation or None,
        )
        meta = configmap.get("metadata") or {}
        keeping = f"keeping policy generation {generation}" if generation else "no policy loaded"
        self.events.emit(
            configmap_ref(self.namespace, self.name, uid=meta.get("uid")),
            type_="Warning",
            reason="PolicyRejected",
            message=f"policy rejected ({keeping}): {_describe(exc)}",
        )
        if self.on_rejected is not None:
            try:
                self.on_rejected(exc)
            except Exception as err:  # a metric callback must not stop the watch
                self.log.warning("on_rejected_failed", error=repr(err))

    def _deleted(self) -> None:
        self._state.mark(None)
        self.log.warning("config_deleted", keeping_generation=self._state.generation)

    def _run(self, resource_version: str) -> None:
        rv: str | None = resource_version
        self._failures = 0
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = self._list()
                    if items:
                        self._handle(items[0])
                    else:
                        self.log.warning("config_missing", keeping_generation=self._state.generation)
                self._watch(rv)
                rv = None  # the watch window ended: relist (catches anything a watch missed)
            except _Gone:
                self.log.info("config_watch_expired")
                rv = None
            except Exception as exc:  # keep following whatever happens
                if self._stop.is_set():
                    return
                delay = BACKOFF_SECONDS[min(self._failures, len(BACKOFF_SECONDS) - 1)]
                self._failures += 1
                self.log.warning("config_watch_failed", error=str(exc)[:300], retry_in_seconds=delay)
                rv = None
                if self._stop.wait(delay):
                    return

    def _watch(self, resource_version: str) -> None:
        try:
            response = self.api.call(
                self.api.core.list_namespaced_config_map,
                self.namespace,
                field_selector=f"metadata.name={self.name}",
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=max(1, int(self.relist_seconds)),
                _preload_content=False,
                _request_timeout=(self.api.timeout[0], self.relist_seconds + 30.0),
                what=f"watch configmap {self.namespace}/{self.name}",
            )
        except ActuationError as exc:
            if getattr(exc.__cause__, "status", None) == 410:
                raise _Gone from exc
            raise
        self._failures = 0  # the watch is established: the API server is healthy again
        with self._response_lock:
            self._response = response
        try:
            if self._stop.is_set():
                return
            for line in _lines(response):
                if self._stop.is_set():
                    return
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise ActuationError(f"watch error: {obj.get('code')} {obj.get('message')}")
                if kind == "DELETED":
                    self._deleted()
                elif kind in ("ADDED", "MODIFIED"):
                    self._handle(obj)
        finally:
            with self._response_lock:
                self._response = None
            _interrupt(response)


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited JSON events of a streaming watch response."""
    buffer = b""
    for chunk in response.stream(None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _interrupt(response: Any) -> None:
    """Unblock a thread reading the response and free its connection."""
    for method in ("shutdown", "close"):
        fn = getattr(response, method, None)
        if fn is not None:
            with contextlib.suppress(Exception):  # best effort on a connection being torn down
                fn()


class FilePolicySource:
    """:class:`~autoscaler.ports.PolicySource` over a file, re-read when it changes (``--policy FILE``)."""

    def __init__(self, path: str | Path, *, on_rejected: OnRejected | None = None, log: Any = None) -> None:
        """Load the file now.

        Args:
            path: The policy file.
            on_rejected: Called with every rejected change.
            log: structlog-style logger.

        Raises:
            ConfigError: the file cannot be read or its policy is invalid
                (:class:`~autoscaler.errors.PolicyRejected`).
        """
        self.path = Path(path)
        self.on_rejected = on_rejected
        self.log = log if log is not None else get_logger(component="policy", file=str(self.path))
        self.rejections = 0
        self._state = _KeepLastGood()
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._poll(first=True)

    def current(self) -> tuple[Policy, int]:
        """The last good policy and its generation, after re-reading the file if it changed."""
        self._poll(first=False)
        return self._state.current()

    def _poll(self, *, first: bool) -> None:
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp == self._stamp:
                    return
                text = read_policy_bytes(self.path)
            except PolicyRejected as exc:  # not a regular file, or over the size cap
                if first:
                    raise
                self._stamp = stamp
                self._report(exc)
                return
            except OSError as exc:
                error = ConfigError(str(self.path), f"cannot read the policy file: {exc.strerror}")
                if first:
                    raise error from exc
                if self._stamp is not None:
                    self._stamp = None
                    self._report(PolicyRejected([error]))
                return
            self._stamp = stamp
            try:
                judged = self._state.offer(text)
            except PolicyRejected as exc:
                if first:
                    raise
                self._report(exc)
                return
            if judged:
                _log_accepted(self.log, *self._state.current())

    def _report(self, exc: PolicyRejected) -> None:
        self.rejections += 1
        self.log.warning(
            "config_rejected",
            paths=_paths(exc),
            errors=[{"path": e.path, "reason": e.reason} for e in exc.errors],
            keeping_generation=self._state.generation,
        )
        if self.on_rejected is not None:
            try:
                self.on_rejected(exc)
            except Exception as err:  # a metric callback must not stop the loop
                self.log.warning("on_rejected_failed", error=repr(err))
