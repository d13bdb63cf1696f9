"""Sharding: several controller Deployments split one policy's targets between them.

Why: one controller process scales every target of its policy, and its cycle cost grows
with the number of targets (~6 API calls per target). A large fleet is split into
*shards*: each controller Deployment (two replicas, one leading) gets a :class:`Shard` —
a set of namespaces and/or a Kubernetes label selector on the target Deployments' own
labels — and its own Lease, and acts only on the targets of the policy its shard admits.
The Controller itself never learns about shards: :class:`ShardScope` narrows the Policy
*before* it reaches :meth:`Controller.set_policy <autoscaler.runtime.controller.Controller.set_policy>`,
on start-up and on every cycle (so ConfigMap updates and relabelled Deployments are
followed).

Rules (see ``docs/sharding.md``):

* **Namespaces** filter without any API call; the **selector** needs each candidate target
  Deployment's labels, read with a GET (RBAC already grants ``get deployments`` in target
  namespaces; there is deliberately no ``list``) and cached for ``label_ttl`` seconds.
* A target whose Deployment cannot be read (403, 404, API server down) is **skipped this
  cycle** and logged (``shard_target_unreadable``), never scaled: its membership is
  unknown. It is read again on the next cycle.
* **Overlap** (two shards admitting the same target) is detected, not merely documented:
  the leader of each shard publishes the target keys its shard admits on its Lease
  (annotation :data:`CLAIMS_ANNOTATION`, label :data:`SHARD_LEASE_LABEL`), and every shard
  reads the other shard Leases of its Lease namespace. A target claimed by another *live*
  shard Lease whose name sorts first is yielded to it (never two writers on one
  Deployment) and an error ``shard_overlap`` is logged on both sides until the flags are
  fixed. A Lease is live while its holder is set and its record changed within its
  ``leaseDurationSeconds`` as measured on our own monotonic clock (client-go's rule, no
  cross-node clock comparison), so a crashed shard's claims stop counting.

The selector syntax is Kubernetes' (``kubectl -l``): ``key``, ``!key``, ``key=value``,
``key==value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, comma-separated
and ANDed, with the API server's semantics (``!=`` and ``notin`` also match a Deployment
without the key). The numeric ``gt``/``lt`` forms are not supported.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import structlog

from autoscaler.errors import ActuationError, ClusterUnavailable, ConfigError
from autoscaler.policy.schema import Policy, Target

#: Lease label marking a shard's Lease (other shards list Leases by it).
SHARD_LEASE_LABEL = "gpu-predictive-autoscaler/shard"
#: Lease annotation: the shard's definition (JSON), for people and for shared-Lease detection.
SHARD_ANNOTATION = "gpu-predictive-autoscaler/shard"
#: Lease annotation: the target keys the shard admits (a JSON list), for overlap detection.
CLAIMS_ANNOTATION = "gpu-predictive-autoscaler/claimed-targets"
#: Longest claims annotation published (the API server limits all annotations to 256 KiB).
MAX_CLAIMS_CHARS = 200_000
#: Published instead of the list when it would be longer than :data:`MAX_CLAIMS_CHARS`.
CLAIMS_TRUNCATED = "truncated"

Operator = Literal["exists", "!", "=", "!=", "in", "notin"]

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|!|\(|\)|,)|(?P<word>[A-Za-z0-9._/-]+)|(?P<bad>\S))")


class SelectorError(ValueError):
    """A label selector that cannot be parsed; the message says where and why."""


# ----------------------------------------------------------------------------- selectors
def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise SelectorError(f"label key {key!r}: prefix must be a DNS subdomain (e.g. example.com)")
    if not name or len(name) > 63 or not _NAME.match(name):
        raise SelectorError(
            f"label key {key!r}: name must be 1-63 characters [A-Za-z0-9-_.], starting and ending alphanumeric"
        )


def _check_value(value: str) -> None:
    if len(value) > 63 or not _NAME.match(value):
        raise SelectorError(
            f"label value {value!r}: must be at most 63 characters [A-Za-z0-9-_.], starting and ending alphanumeric"
        )


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector, e.g. ``tier in (a,b)``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term (Kubernetes semantics). Pure."""
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!":
            return self.key not in labels
        if self.operator in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" also match when the key is absent, as on the API server.
        return self.key not in labels or labels[self.key] not in self.values

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("=", "!="):
            return f"{self.key}{self.operator}{self.values[0]}"
        return f"{self.key} {self.operator} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector: every requirement must match (AND)."""

    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the ``kubectl -l`` syntax (see the module docstring). Pure.

        Raises:
            SelectorError: an empty selector (it would admit everything), a syntax error,
                an invalid key or value, or an empty ``in``/``notin`` set.
        """
        tokens = _tokenize(text)
        if not tokens:
            raise SelectorError("empty selector (it would admit every target; omit it instead)")
        requirements: list[Requirement] = []
        i = 0

        def expect_word(what: str) -> str:
            nonlocal i
            if i >= len(tokens) or tokens[i][0] != "word":
                found = repr(tokens[i][1]) if i < len(tokens) else "the end"
                raise SelectorError(f"expected {what}, found {found} in {text!r}")
            i += 1
            return tokens[i - 1][1]

        def peek() -> tuple[str, str] | None:
            return tokens[i] if i < len(tokens) else None

        while True:
            nxt = peek()
            if nxt == ("op", "!"):
                i += 1
                key = expect_word("a label key after '!'")
                _check_key(key)
                requirements.append(Requirement(key, "!"))
            else:
                key = expect_word("a label key")
                _check_key(key)
                nxt = peek()
                if nxt is None or nxt == ("op", ","):
                    requirements.append(Requirement(key, "exists"))
                elif nxt[0] == "op" and nxt[1] in ("=", "==", "!="):
                    i += 1
                    op: Operator = "!=" if nxt[1] == "!=" else "="
                    after = peek()
                    value = "" if after is None or after == ("op", ",") else expect_word(f"a value after {nxt[1]!r}")
                    _check_value(value)
                    requirements.append(Requirement(key, op, (value,)))
                elif nxt[0] == "word" and nxt[1] in ("in", "notin"):
                    i += 1
                    if peek() != ("op", "("):
                        raise SelectorError(f"expected '(' after {key} {nxt[1]} in {text!r}")
                    i += 1
                    values: list[str] = []
                    while True:
                        value = expect_word(f"a value in the set of {key}")
                        _check_value(value)
                        values.append(value)
                        sep = peek()
                        i += 1
                        if sep == ("op", ")"):
                            break
                        if sep != ("op", ","):
                            raise SelectorError(f"expected ',' or ')' in the set of {key} in {text!r}")
                    set_op: Operator = "in" if nxt[1] == "in" else "notin"
                    requirements.append(Requirement(key, set_op, tuple(sorted(set(values)))))
                else:
                    raise SelectorError(
                        f"unexpected {nxt[1]!r} after label key {key!r} in {text!r} "
                        "(supported: key, !key, key=v, key==v, key!=v, key in (a,b), key notin (a,b))"
                    )
            nxt = peek()
            if nxt is None:
                return cls(tuple(requirements))
            if nxt != ("op", ","):
                raise SelectorError(f"expected ',' between requirements, found {nxt[1]!r} in {text!r}")
            i += 1

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy every requirement. Pure."""
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.group("bad") is not None:
            char = m.group("bad") if m is not None else text[pos]
            raise SelectorError(f"unexpected character {char!r} at position {pos} in {text!r}")
        kind = "op" if m.group("op") is not None else "word"
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


# --------------------------------------------------------------------------------- shard
@dataclass(frozen=True)
class Shard:
    """Which targets of the policy one controller Deployment owns.

    Attributes:
        namespaces: Target namespaces admitted; empty = every namespace.
        selector: Labels the target Deployment must carry; ``None`` = any.
    """

    namespaces: frozenset[str] = frozenset()
    selector: LabelSelector | None = None

    @property
    def needs_labels(self) -> bool:
        """Whether membership depends on the Deployments' labels (an API read per target)."""
        return self.selector is not None

    def in_namespaces(self, target: Target) -> bool:
        """The namespace part of the test (no labels needed). Pure."""
        return not self.namespaces or target.namespace in self.namespaces

    def admits(self, target: Target, labels: Mapping[str, str] | None) -> bool:
        """Whether this shard owns ``target``, its Deployment carrying ``labels``. Pure.

        Raises:
            ValueError: the shard has a selector and ``labels`` is ``None`` (unknown).
        """
        if not self.in_namespaces(target):
            return False
        if self.selector is None:
            return True
        if labels is None:
            raise ValueError(f"labels of {target.key} are unknown")
        return self.selector.matches(labels)

    def describe(self) -> dict[str, Any]:
        """The definition as JSON-able fields (logs, the Lease annotation)."""
        return {
            "namespaces": sorted(self.namespaces) or None,
            "selector": str(self.selector) if self.selector is not None else None,
        }


def parse_shard(namespaces: str | None, selector: str | None) -> Shard | None:
    """The shard given by ``--shard-namespaces`` and ``--shard-selector``; ``None`` when neither is set.

    Pure. Raises:
        ConfigError: with the flag as path, for an invalid namespace list or selector.
    """
    if namespaces is None and selector is None:
        return None
    names: frozenset[str] = frozenset()
    if namespaces is not None:
        items = [n.strip() for n in namespaces.split(",")]
        if not any(items):
            raise ConfigError("--shard-namespaces", "empty list (omit the flag to admit every namespace)")
        for name in items:
            if not name or len(name) > 63 or not _DNS_LABEL.match(name):
                raise ConfigError("--shard-namespaces", f"{name!r} is not a valid namespace name")
        names = frozenset(items)
    parsed: LabelSelector | None = None
    if selector is not None:
        try:
            parsed = LabelSelector.parse(selector)
        except SelectorError as exc:
            raise ConfigError("--shard-selector", str(exc)) from exc
    return Shard(namespaces=names, selector=parsed)


# ----------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select_targets`.

    Attributes:
        policy: The policy narrowed to the targets this shard acts on.
        claimed: Keys the shard admits (published on its Lease), before yielding overlaps.
        unreadable: Keys whose membership is unknown (Deployment not read): skipped.
        overlaps: Key -> other live shard Leases that claim it too.
        yielded: Keys claimed by another shard whose Lease name sorts first: not acted on.
        total: Number of targets in the full policy.
    """

    policy: Policy
    claimed: tuple[str, ...]
    unreadable: tuple[str, ...] = ()
    overlaps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    yielded: tuple[str, ...] = ()
    total: int = 0

    @property
    def owned(self) -> tuple[str, ...]:
        """Keys of the targets acted on."""
        return tuple(t.key for t in self.policy.targets)


def select_targets(
    policy: Policy,
    shard: Shard,
    labels: Mapping[str, Mapping[str, str] | None],
    *,
    claims: Mapping[str, Iterable[str]] | None = None,
    own_lease: str | None = None,
) -> Selection:
    """Narrow ``policy`` to the targets ``shard`` owns. Pure.

    Args:
        policy: The full policy.
        shard: This controller's shard.
        labels: Target key -> its Deployment's labels; missing or ``None`` = could not be
            read (only consulted when the shard has a selector).
        claims: Other live shard Leases -> the target keys they claim.
        own_lease: Our Lease name; a target also claimed by a Lease whose name sorts before
            ours is yielded (deterministic: exactly one of two overlapping shards keeps it).
            ``None`` (no Lease) yields every target another shard claims.

    Returns:
        The narrowed policy (its other settings unchanged) and what was left out and why.
        The policy may have no targets (the Controller then does nothing each cycle).
    """
    claimed: list[Target] = []
    unreadable: list[str] = []
    for target in policy.targets:
        if not shard.in_namespaces(target):
            continue
        if shard.needs_labels:
            found = labels.get(target.key)
            if found is None:
                unreadable.append(target.key)
                continue
            if not shard.admits(target, found):
                continue
        claimed.append(target)
    others: dict[str, set[str]] = {}
    for lease, keys in (claims or {}).items():
        if lease == own_lease:
            continue
        for key in keys:
            others.setdefault(key, set()).add(lease)
    overlaps: dict[str, tuple[str, ...]] = {}
    yielded: list[str] = []
    kept: list[Target] = []
    for target in claimed:
        competing = tuple(sorted(others.get(target.key, ())))
        if competing:
            overlaps[target.key] = competing
            if own_lease is None or competing[0] < own_lease:
                yielded.append(target.key)
                continue
        kept.append(target)
    return Selection(
        policy=replace(policy, targets=tuple(kept)),
        claimed=tuple(t.key for t in claimed),
        unreadable=tuple(unreadable),
        overlaps=overlaps,
        yielded=tuple(yielded),
        total=len(policy.targets),
    )


def encode_claims(keys: Iterable[str]) -> str:
    """The claims annotation value: a sorted JSON list, or :data:`CLAIMS_TRUNCATED` when too long. Pure."""
    text = json.dumps(sorted(keys), separators=(",", ":"))
    return text if len(text) <= MAX_CLAIMS_CHARS else CLAIMS_TRUNCATED


def decode_claims(text: str | None) -> tuple[str, ...] | None:
    """Inverse of :func:`encode_claims`; ``None`` when absent, truncated or malformed. Pure."""
    if not text or text == CLAIMS_TRUNCATED:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        return None
    return tuple(value)


# ----------------------------------------------------------------------------- the scope
@dataclass
class _Seen:
    record: tuple[Any, ...]
    since: float


class ShardScope:
    """Narrows each policy to this shard before the Controller sees it (see the module docstring).

    Used by :class:`autoscaler.runtime.service.Service` every cycle and by the wiring at start-up;
    :meth:`lease_metadata` feeds the Lease this shard's leader renews.
    """

    def __init__(
        self,
        shard: Shard,
        api: Any,
        *,
        lease_namespace: str | None = None,
        lease_name: str | None = None,
        label_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        """Configure the scope (nothing is read yet).

        Args:
            shard: This controller's shard.
            api: A :class:`~autoscaler.kube.client.KubeApi` (Deployment reads, Lease list).
            lease_namespace: Namespace of the shard Leases; ``None`` disables overlap
                detection (``--once``, ``--no-leader-election``).
            lease_name: Our own Lease.
            label_ttl: Seconds a Deployment's labels are reused before being read again
                (how long a relabelled Deployment may take to change shard).
            clock: Monotonic seconds (label cache, Lease liveness).
            log: structlog-style logger.
        """
        self.shard = shard
        self.api = api
        self.lease_namespace = lease_namespace
        self.lease_name = lease_name
        self.label_ttl = label_ttl
        self.clock = clock
        # Lazy by default (bound at each call): follows a logging configuration made later.
        self.log = log if log is not None else structlog.get_logger(component="shard")
        self._labels: dict[str, tuple[dict[str, str], float]] = {}
        self._seen: dict[str, _Seen] = {}
        self._claims_lock = threading.Lock()
        self._claimed: tuple[str, ...] = ()
        self._last_logged: tuple[Any, ...] | None = None
        self._claims_error: str | None = None
        self.last: Selection | None = None

    # ------------------------------------------------------------------------ public API
    def select(self, policy: Policy, generation: int, *, strict: bool = False) -> Policy:
        """The policy narrowed to this shard's targets (reads labels and shard Leases).

        Args:
            policy: The full policy in force.
            generation: Its generation (for the log line).
            strict: Start-up: an unreachable API server raises instead of skipping targets.

        Raises:
            ClusterUnavailable: only with ``strict``, when a Deployment read could not reach
                the API server.
        """
        labels = self._read_labels(policy, strict=strict)
        claims = self._read_claims()
        selection = select_targets(policy, self.shard, labels, claims=claims, own_lease=self.lease_name)
        with self._claims_lock:
            self._claimed = selection.claimed
        for key in selection.yielded:
            self.log.error(
                "shard_overlap", target=key, other_leases=list(selection.overlaps[key]), action="yielded",
                reason="another live shard claims this target and its Lease name sorts first; make the shards disjoint",
            )
        for key, leases in selection.overlaps.items():
            if key not in selection.yielded:
                self.log.error(
                    "shard_overlap", target=key, other_leases=list(leases), action="kept",
                    reason="another shard claims this target too and yields it to this Lease; make the shards disjoint",
                )
        summary = (generation, selection.owned, selection.unreadable, selection.yielded)
        if summary != self._last_logged:
            self._last_logged = summary
            self.log.info(
                "shard_targets", generation=generation, owned=len(selection.owned), total=selection.total,
                claimed=len(selection.claimed), unreadable=len(selection.unreadable),
                yielded=len(selection.yielded), targets=list(selection.owned),
            )
        self.last = selection
        return selection.policy

    def lease_metadata(self) -> tuple[dict[str, str], dict[str, str]]:
        """Labels and annotations this shard's leader writes on its Lease (called by the elector)."""
        with self._claims_lock:
            claimed = self._claimed
        return (
            {SHARD_LEASE_LABEL: "true"},
            {
                SHARD_ANNOTATION: json.dumps(self.shard.describe(), separators=(",", ":"), sort_keys=True),
                CLAIMS_ANNOTATION: encode_claims(claimed),
            },
        )

    # -------------------------------------------------------------------------- internals
    def _read_labels(self, policy: Policy, *, strict: bool) -> dict[str, Mapping[str, str] | None]:
        if not self.shard.needs_labels:
            return {}
        now = self.clock()
        wanted = {t.key for t in policy.targets if self.shard.in_namespaces(t)}
        for key in list(self._labels):
            if key not in wanted:
                del self._labels[key]
        out: dict[str, Mapping[str, str] | None] = {}
        for target in policy.targets:
            if target.key not in wanted:
                continue
            cached = self._labels.get(target.key)
            if cached is not None and now - cached[1] < self.label_ttl:
                out[target.key] = cached[0]
                continue
            try:
                model = self.api.call(
                    self.api.apps.read_namespaced_deployment, target.deployment, target.namespace,
                    what=f"get deployment {target.key} (shard labels)",
                )
            except ActuationError as exc:
                self._labels.pop(target.key, None)
                if strict and isinstance(exc, ClusterUnavailable):
                    raise
                out[target.key] = None
                self.log.warning("shard_target_unreadable", target=target.key, error=str(exc), kind=exc.kind,
                                 action="skipped this cycle")
                continue
            labels = dict((model.metadata.labels if model.metadata is not None else None) or {})
            self._labels[target.key] = (labels, now)
            out[target.key] = labels
        return out

    def _read_claims(self) -> dict[str, tuple[str, ...]]:
        """Live other shard Leases -> their claimed keys; empty (logged) when they cannot be listed."""
        if self.lease_namespace is None:
            return {}
        try:
            answer = self.api.call(
                self.api.coordination.list_namespaced_lease, self.lease_namespace,
                label_selector=f"{SHARD_LEASE_LABEL}=true",
                what=f"list shard leases in {self.lease_namespace}",
            )
        except ActuationError as exc:
            if str(exc) != self._claims_error:
                self._claims_error = str(exc)
                self.log.warning("shard_overlap_check_unavailable", error=str(exc), kind=exc.kind,
                                 consequence="overlapping shards are not detected until the Leases can be listed")
            return {}
        self._claims_error = None
        now = self.clock()
        claims: dict[str, tuple[str, ...]] = {}
        names: set[str] = set()
        for lease in answer.items or []:
            meta, spec = lease.metadata, lease.spec
            name = str(meta.name)
            names.add(name)
            annotations = dict(meta.annotations or {})
            holder = (spec.holder_identity if spec is not None else None) or ""
            duration = float((spec.lease_duration_seconds if spec is not None else None) or 15)
            renew = spec.renew_time if spec is not None else None
            record = (holder, str(renew), annotations.get(CLAIMS_ANNOTATION))
            seen = self._seen.get(name)
            if seen is None or seen.record != record:
                seen = self._seen[name] = _Seen(record, now)
            if name == self.lease_name:
                self._check_own(annotations)
                continue
            live = bool(holder) and now - seen.since < duration
            keys = decode_claims(annotations.get(CLAIMS_ANNOTATION))
            if live and keys is None and annotations.get(CLAIMS_ANNOTATION) == CLAIMS_TRUNCATED:
                self.log.warning("shard_claims_truncated", lease=name,
                                 consequence="overlap with this shard is not detected (too many targets)")
            if live and keys:
                claims[name] = keys
        for gone in set(self._seen) - names:
            del self._seen[gone]
        return claims

    def _check_own(self, annotations: Mapping[str, str]) -> None:
        """Our Lease written by a controller with another shard definition: two shards share one Lease."""
        mine = json.dumps(self.shard.describe(), separators=(",", ":"), sort_keys=True)
        theirs = annotations.get(SHARD_ANNOTATION)
        if theirs is not None and theirs != mine:
            self.log.error(
                "shard_lease_shared", lease=self.lease_name, ours=mine, theirs=theirs,
                consequence="the two shards take turns instead of running side by side; give each its own --lease-name",
            )
