"""Leader election over a ``coordination.k8s.io/v1`` Lease: two replicas never both write.

Why: the controller runs with two replicas for availability, but two actors scaling the
same Deployment would fight (and double placeholder writes). Only the holder of a Lease
acts; the other stands by and takes over when the holder stops renewing. The algorithm is
client-go's ``leaderelection`` reduced to what we need:

* **Acquire** when the Lease does not exist (create), has no holder (released), is held by
  us, or has not changed for ``leaseDurationSeconds`` *as measured on our own clock* since we
  first saw its current record — never by comparing the other replica's ``renewTime`` to our
  wall clock, so clock skew between nodes cannot cause two leaders.
* **Write** with the ``resourceVersion`` we read (a PUT): of two replicas racing for an
  expired Lease, one gets 409 and stays standby.
* **Renew** every ``retry_period`` in a background thread. :meth:`LeaseElector.is_leader`
  turns False *immediately* when a renewal shows someone else holds the Lease (409 or
  another holder), and also when no renewal succeeded for ``renew_deadline`` (API server
  unreachable): since ``renew_deadline < lease_duration``, the old leader stops acting
  before anyone else may take over.
* **Release** on :meth:`LeaseElector.stop`: holder emptied and ``leaseDurationSeconds: 1``, so
  the standby takes over on its next retry instead of waiting for expiry.
* **Tied to the loop**: with a ``healthy`` callback (the service passes the control loop's
  liveness, :meth:`autoscaler.runtime.telemetry.Health.alive`), the elector neither renews nor
  acquires while the loop is stuck, and stops leading at once; the Lease then expires and
  the standby takes over within ``leaseDurationSeconds``. A renewal thread of its own would
  otherwise keep a wedged replica the leader forever (client-go ties renewal to the
  elector's deadline for the same reason; controller-runtime adds a leader-election health
  check). Renewal resumes when the loop makes progress again.
* **Metadata**: an optional ``metadata`` callback gives labels and annotations the holder
  writes with every create and renewal (sharding publishes its claimed targets there, see
  :mod:`autoscaler.kube.sharding`); it rides on the writes that happen anyway, costing no call.

Time comes from an injectable monotonic ``clock``; :meth:`LeaseElector.step` runs one
attempt, so tests can drive two electors deterministically without threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from autoscaler.errors import ActuationError, Conflict, NotFound
from autoscaler.kube.client import KubeApi
from autoscaler.logs import get_logger


def micro_time(now: datetime) -> str:
    """``metav1.MicroTime`` text: RFC 3339 with exactly six fractional digits (the server requires them). Pure."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Leader election with a Lease; implements :class:`~autoscaler.ports.LeaderElector`."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: Any = None,
        metadata: Callable[[], tuple[Mapping[str, str], Mapping[str, str]]] | None = None,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        """Configure (not start) an elector.

        Args:
            api: The API client.
            namespace: Namespace of the Lease (the controller's own).
            name: Name of the Lease.
            identity: This replica's unique identity (e.g. the pod name).
            lease_duration: Seconds a standby waits after the last change before taking over.
            renew_deadline: Seconds without a successful renewal after which we stop leading.
            retry_period: Seconds between attempts (acquire or renew).
            clock: Monotonic seconds, for expiry and deadlines.
            wall_clock: Wall time written into ``acquireTime``/``renewTime`` (informational).
            log: structlog-style logger.
            metadata: Returns ``(labels, annotations)`` merged into the Lease's metadata on
                every create and renewal while we hold it (e.g. a shard's claimed targets).
            healthy: Whether the work the Lease guards is alive (the control loop makes
                progress); while it returns False nothing is renewed or acquired.

        Raises:
            ValueError: unless ``lease_duration > renew_deadline > retry_period > 0``.
        """
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        if not identity:
            raise ValueError("identity must not be empty")
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = log if log is not None else get_logger(component="leader", identity=identity)
        self.metadata = metadata
        self.healthy = healthy
        self._stalled = False
        self._lock = threading.Lock()
        self._leader = False
        self._renewed_at = -math.inf
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ public API
    def is_leader(self) -> bool:
        """True while we hold the Lease and renewed it within ``renew_deadline``."""
        with self._lock:
            return self._leader and self.clock() - self._renewed_at < self.renew_deadline

    def start(self) -> LeaseElector:
        """Try to acquire now, then keep acquiring/renewing every ``retry_period`` in a daemon thread.

        Returns:
            ``self``.
        """
        if self._thread is not None:
            raise RuntimeError("elector already started")
        self._stop.clear()
        # Synchronously, so the first cycle already knows whether it leads (otherwise it
        # stands by for a whole loop interval after every start).
        self.step()
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing and, if leading, release the Lease so a standby takes over at once.

        Args:
            release: False simulates a crash (tests): the Lease is left to expire.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            was_leader = self._leader
            self._leader = False
        if release and was_leader:
            self._release()

    def step(self) -> bool:
        """One attempt to acquire or renew. Never raises.

        Returns:
            Whether we lead afterwards.
        """
        if not self._loop_alive():
            return False
        try:
            self._try_acquire_or_renew()
        except ActuationError as exc:
            # Leadership decays by itself after renew_deadline (see is_leader).
            self.log.warning("lease_unavailable", lease=f"{self.namespace}/{self.name}", error=str(exc), kind=exc.kind)
        return self.is_leader()

    # -------------------------------------------------------------------------- internals
    def _loop_alive(self) -> bool:
        """Ask ``healthy``; on a stall stop leading (once, logged), on recovery say so."""
        if self.healthy is None:
            return True
        try:
            alive = bool(self.healthy())
        except Exception as exc:  # a failing check must not keep a stuck replica leading
            self.log.warning("lease_health_check_failed", lease=f"{self.namespace}/{self.name}", error=repr(exc))
            alive = False
        if not alive and not self._stalled:
            self._stalled = True
            self.log.warning("lease_renewal_stopped", lease=f"{self.namespace}/{self.name}",
                             reason="the control loop made no progress")  # fmt: skip
            self._set_leader(False)
        elif alive and self._stalled:
            self._stalled = False
            self.log.info("lease_renewal_resumed", lease=f"{self.namespace}/{self.name}")
        return alive

    def _run(self) -> None:
        while not self._stop.wait(self.retry_period):
            self.step()

    def _set_leader(self, leader: bool, *, renewed_at: float | None = None) -> None:
        with self._lock:
            changed = leader != self._leader
            self._leader = leader
            if renewed_at is not None:
                self._renewed_at = renewed_at
        if changed:
            self.log.info("leader_changed", leader=leader, lease=f"{self.namespace}/{self.name}")

    def _spec(self, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.lease_duration),
            "acquireTime": acquire_time,
            "renewTime": micro_time(self.wall_clock()),
            "leaseTransitions": transitions,
        }

    def _merge_metadata(self, meta: dict[str, Any]) -> dict[str, Any]:
        """``meta`` with the ``metadata`` callback's labels and annotations merged in.

        A failing callback must not cost the Lease (leadership would flap): it is logged
        and the metadata is written unchanged.
        """
        if self.metadata is None:
            return meta
        try:
            labels, annotations = self.metadata()
        except Exception as exc:  # any bug in the callback: keep leading, report it
            self.log.warning("lease_metadata_failed", lease=f"{self.namespace}/{self.name}", error=repr(exc))
            return meta
        return {
            **meta,
            "labels": {**(meta.get("labels") or {}), **labels},
            "annotations": {**(meta.get("annotations") or {}), **annotations},
        }

    def _try_acquire_or_renew(self) -> None:
        now = self.clock()
        what = f"lease {self.namespace}/{self.name}"
        try:
            model = self.api.call(
                self.api.coordination.read_namespaced_lease, self.name, self.namespace, what=f"read {what}"
            )
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": self._merge_metadata({"name": self.name, "namespace": self.namespace}),
                "spec": self._spec(acquire_time=micro_time(self.wall_clock()), transitions=0),
            }
            try:
                self.api.call(
                    self.api.coordination.create_namespaced_lease, self.namespace, body, what=f"create {what}"
                )
            except Conflict:
                self._set_leader(False)  # another replica created it first
                return
            self._set_leader(True, renewed_at=now)
            return
        lease = _body(self.api, model)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        record = (holder, spec.get("renewTime"), spec.get("acquireTime"), duration)
        if record != self._observed:
            self._observed, self._observed_at = record, now
        if holder and holder != self.identity and now < self._observed_at + duration:
            self._set_leader(False)
            return
        transitions = int(spec.get("leaseTransitions") or 0)
        ours = holder == self.identity
        acquired = model.spec.acquire_time if model.spec is not None else None
        acquire_time = acquired if ours and isinstance(acquired, datetime) else self.wall_clock()
        lease["spec"] = self._spec(
            acquire_time=micro_time(acquire_time),
            transitions=transitions if ours else transitions + 1,
        )
        lease["metadata"] = self._merge_metadata(lease.get("metadata") or {})
        try:
            self.api.call(
                self.api.coordination.replace_namespaced_lease, self.name, self.namespace, lease, what=f"update {what}"
            )
        except Conflict:
            self._set_leader(False)  # someone else wrote it since our read
            return
        if not ours:
            self.log.info("lease_acquired", lease=f"{self.namespace}/{self.name}", previous=holder or None)
        self._set_leader(True, renewed_at=now)

    def _release(self) -> None:
        what = f"lease {self.namespace}/{self.name}"
        try:
            lease = _body(
                self.api,
                self.api.call(
                    self.api.coordination.read_namespaced_lease, self.name, self.namespace, what=f"read {what}"
                ),
            )
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time(self.wall_clock())
            lease["spec"] = {
                **spec,
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
            }
            self.api.call(
                self.api.coordination.replace_namespaced_lease, self.name, self.namespace, lease, what=f"release {what}"
            )
            self.log.info("lease_released", lease=f"{self.namespace}/{self.name}")
        except ActuationError as exc:
            self.log.warning("lease_release_failed", lease=f"{self.namespace}/{self.name}", error=str(exc))


def _body(api: KubeApi, model: Any) -> dict[str, Any]:
    """A read Lease as a PUT body (server-managed fields the client cannot round-trip dropped)."""
    body: dict[str, Any] = api.api_client.sanitize_for_serialization(model)
    body.get("metadata", {}).pop("managedFields", None)
    return body
