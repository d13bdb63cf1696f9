"""Measured cold start: lead times learned from kube-state-metrics pod timestamps.

Why: the policy's cold-start phases are guesses; the cluster records the truth for every
pod (``kube_pod_created``, ``kube_pod_status_scheduled_time``,
``kube_pod_status_ready_time`` and the node in ``kube_pod_info``). Each start-up in the
look-back gives

* ``wait = scheduled - created``: time waiting for a node (cluster-autoscaler + VM boot +
  node services + GPU driver), near zero when a node with a free GPU existed;
* ``startup = ready - scheduled``: image pull (if the node lacks the image), container
  start, model load and readiness probe.

How measurements map onto :class:`~autoscaler.core.leadtimes.LeadTimes`, honestly:

* ``node_ready`` = P90 of ``wait`` over start-ups that *waited* (wait above a threshold).
  Those that did not wait say nothing about node provisioning.
* ``pod_start_warm`` = P90 of ``startup`` over *warm* start-ups: pods that did not wait and
  landed on a node where a pod of the same Deployment (or of its placeholder Deployment,
  when placeholders run the serving image) was already ready, so the image was cached.
  With too few warm samples, P90 over all start-ups is an upper bound of the warm start,
  so it can only *lower* the policy value: ``min(P90 all, policy)``.
* ``pod_start_fresh`` = P90 of ``startup`` over the other (*fresh*) start-ups: new nodes
  and ready nodes without the image; never below the warm value.

A field whose own samples number fewer than ``coldStart.learnMinSamples`` keeps the policy
value; ``source`` is ``"measured"`` when all three were measured, else
``"measured+policy"``. Nothing is returned until that many start-ups exist at all.
P90 is numpy's linearly interpolated 90th percentile over the look-back (a rolling P90).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from autoscaler.adapters.prometheus.answers import Sample
from autoscaler.adapters.prometheus.promql import batch_selector, deployment_of
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.errors import MetricsError
from autoscaler.policy.schema import Target


class InstantQuerier(Protocol):
    """Runs one instant query (``PrometheusClient`` does)."""

    def instant(self, name: str, expr: str, *, at: float) -> list[Sample]:
        """The query's samples at ``at``; raises :class:`~autoscaler.errors.MetricsError`."""
        ...


def pod_lifecycle_queries(namespaces: Iterable[str], *, lookback: str) -> dict[str, str]:
    """Per pod over the look-back: first creation, scheduling and readiness times, and node. Pure.

    ``min_over_time`` keeps the first value a pod ever reported (a pod that turns unready
    and ready again keeps its first readiness), and also finds pods deleted since.

    Args:
        namespaces: The targets' namespaces.
        lookback: A Prometheus duration, e.g. ``604800s``.

    Returns:
        Expressions named ``created``, ``scheduled``, ``ready`` and ``node``.
    """
    sel = batch_selector(namespaces)
    key = "namespace, pod, uid"
    out = {
        name: f"min by ({key}) (min_over_time({metric}{{{sel}}}[{lookback}]))"
        for name, metric in (
            ("created", "kube_pod_created"),
            ("scheduled", "kube_pod_status_scheduled_time"),
            ("ready", "kube_pod_status_ready_time"),
        )
    }
    out["node"] = f'max by ({key}, node) (max_over_time(kube_pod_info{{{sel}, node!=""}}[{lookback}]))'
    return out


@dataclass(frozen=True)
class PodStart:
    """One pod's path from creation to readiness (unix seconds)."""

    namespace: str
    pod: str
    node: str | None
    created: float
    scheduled: float
    ready: float

    @property
    def wait(self) -> float:
        """Seconds waiting for a node."""
        return self.scheduled - self.created

    @property
    def startup(self) -> float:
        """Seconds from binding to a node until Ready."""
        return self.ready - self.scheduled


def pod_starts(answers: Mapping[str, Sequence[Sample]]) -> list[PodStart]:
    """Join the four lifecycle answers per pod into complete, consistent start-ups. Pure.

    Args:
        answers: Samples of the ``created``, ``scheduled``, ``ready`` and ``node`` queries
            of :func:`pod_lifecycle_queries`.

    Returns:
        One entry per pod with all three timestamps finite and in order.
    """
    columns: dict[str, dict[tuple[str, str, str], float]] = {}
    for name in ("created", "scheduled", "ready"):
        columns[name] = {
            (s.labels.get("namespace", ""), s.labels.get("pod", ""), s.labels.get("uid", "")): s.value
            for s in answers.get(name, ())
        }
    nodes = {
        (s.labels.get("namespace", ""), s.labels.get("pod", ""), s.labels.get("uid", "")): s.labels.get("node")
        for s in answers.get("node", ())
    }
    starts = []
    for key, created in columns["created"].items():
        scheduled, ready = columns["scheduled"].get(key), columns["ready"].get(key)
        if scheduled is None or ready is None or not all(map(math.isfinite, (created, scheduled, ready))):
            continue
        if created <= scheduled <= ready:
            starts.append(PodStart(key[0], key[1], nodes.get(key) or None, created, scheduled, ready))
    return starts


def _image_cached(start: PodStart, image_on: Mapping[str, Sequence[PodStart]]) -> bool:
    """Whether another pod that runs the image was ready on the node before ``start`` was bound."""
    if start.node is None:
        return False
    return any(o.ready <= start.scheduled and o.pod != start.pod for o in image_on.get(start.node, ()))


def _p90(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 90))


def learn(
    target: Target,
    starts: Iterable[PodStart],
    *,
    since: float,
    wait_threshold: float,
    placeholder_suffix: str,
) -> dict[str, Any]:
    """What the start-ups in the look-back say about one target's lead times. Pure.

    Args:
        target: The target (its namespace, Deployment and cold-start policy).
        starts: Start-ups of any pods (filtered here to the target's).
        since: Only start-ups created at or after this time count.
        wait_threshold: Seconds of waiting above which a pod is said to have waited for a node.
        placeholder_suffix: Name suffix of the target's placeholder Deployment.

    Returns:
        Sample counts (``samples``, ``waited``, ``warm``, ``fresh``, ``min_samples``), the
        P90 of each kind (``p90_seconds``), ``lead_times`` (a :class:`LeadTimes`, or
        ``None`` below ``learnMinSamples``) and the fields kept from the policy.
    """
    warmers = {target.deployment}
    if target.placeholders.image is None:
        warmers.add(target.deployment + placeholder_suffix)
    mine: list[PodStart] = []
    image_on: dict[str, list[PodStart]] = defaultdict(list)
    for s in starts:
        if s.namespace != target.namespace:
            continue
        owner = deployment_of(s.pod)
        if owner in warmers and s.node is not None:
            image_on[s.node].append(s)
        if owner == target.deployment and s.created >= since:
            mine.append(s)
    waited = [s for s in mine if s.wait > wait_threshold]
    warm = [s for s in mine if s.wait <= wait_threshold and _image_cached(s, image_on)]
    fresh = [s for s in mine if s not in warm]
    cold = target.cold_start
    need = cold.learn_min_samples
    policy = LeadTimes.from_policy(cold)
    p90 = {
        "node_wait": _p90([s.wait for s in waited]) if waited else None,
        "startup_warm": _p90([s.startup for s in warm]) if warm else None,
        "startup_fresh": _p90([s.startup for s in fresh]) if fresh else None,
        "startup_all": _p90([s.startup for s in mine]) if mine else None,
    }
    from_policy = []
    node_ready = p90["node_wait"] if len(waited) >= need else None
    if node_ready is None:
        node_ready = policy.node_ready
        from_policy.append("node_ready")
    warm_s = p90["startup_warm"] if len(warm) >= need else None
    if warm_s is None:
        bound = p90["startup_all"] if len(mine) >= need else None
        warm_s = policy.pod_start_warm if bound is None else min(bound, policy.pod_start_warm)
        from_policy.append("pod_start_warm")
    fresh_s = p90["startup_fresh"] if len(fresh) >= need else None
    if fresh_s is None:
        fresh_s = policy.pod_start_fresh
        from_policy.append("pod_start_fresh")
    lead: LeadTimes | None = None
    if len(mine) >= need:
        lead = LeadTimes(
            node_ready=node_ready,
            pod_start_warm=warm_s,
            pod_start_fresh=max(fresh_s, warm_s),
            source="measured" if not from_policy else "measured+policy",
        )
    return {
        "samples": len(mine),
        "waited": len(waited),
        "warm": len(warm),
        "fresh": len(fresh),
        "min_samples": need,
        "p90_seconds": p90,
        "lead_times": lead,
        "from_policy": from_policy if lead is not None else ["node_ready", "pod_start_warm", "pod_start_fresh"],
    }


class LeadTimeLearner:
    """Caches learned lead times for all known targets; re-queries them together, rarely.

    One refresh runs the four lifecycle queries for every target seen so far (batched by
    namespace), at most once per ``refresh_seconds`` of the caller's clock, or at once for
    a target in a namespace not queried yet. A target whose policy changed in between is
    re-learned from the cached start-ups without a query. A failed refresh keeps the
    previous results and is retried when the next one is due.
    """

    def __init__(
        self,
        client: InstantQuerier,
        *,
        lookback_seconds: float,
        refresh_seconds: float,
        wait_threshold_seconds: float,
        placeholder_suffix: str,
        log: Any,
    ) -> None:
        self._client = client
        self.lookback_seconds = lookback_seconds
        self.refresh_seconds = refresh_seconds
        self.wait_threshold_seconds = wait_threshold_seconds
        self.placeholder_suffix = placeholder_suffix
        self._log = log
        self._targets: dict[str, Target] = {}
        self._learned: dict[str, dict[str, Any]] = {}
        self._learned_for: dict[str, Target] = {}
        self._starts: dict[tuple[str, str | None], list[PodStart]] = {}
        self._namespaces: set[str] = set()
        self._refreshed_at: float | None = None

    def remember(self, targets: Iterable[Target]) -> None:
        """Include these targets in the next refresh."""
        for target in targets:
            self._targets[target.key] = target

    def lead_times(self, target: Target, now: float) -> LeadTimes | None:
        """Measured lead times for ``target``, refreshing all known targets if due.

        Args:
            target: The target.
            now: The caller's clock (unix seconds).

        Returns:
            The lead times, or ``None`` until enough start-ups (or before any answer).
        """
        self.remember([target])
        due = self._refreshed_at is None or now - self._refreshed_at >= self.refresh_seconds
        if due or target.namespace not in self._namespaces:
            self.refresh(now)
        elif self._learned_for.get(target.key) != target and self._refreshed_at is not None:
            self._learn(target, at=self._refreshed_at)
        learned = self._learned.get(target.key)
        return learned["lead_times"] if learned is not None else None

    def refresh(self, now: float) -> None:
        """Re-learn every known target from one batch of queries (never raises)."""
        targets = list(self._targets.values())
        self._refreshed_at = now
        self._namespaces = {t.namespace for t in targets}
        if not targets:
            return
        lookback = f"{int(self.lookback_seconds)}s"
        try:
            answers = {
                name: self._client.instant(f"lead_times_{name}", expr, at=now)
                for name, expr in pod_lifecycle_queries(self._namespaces, lookback=lookback).items()
            }
        except MetricsError as exc:
            self._log.warning("lead_times_unavailable", error=str(exc), kind=exc.kind)
            return
        self._starts = defaultdict(list)
        for start in pod_starts(answers):
            self._starts[(start.namespace, deployment_of(start.pod))].append(start)
        for target in targets:
            self._learn(target, at=now)

    def _learn(self, target: Target, *, at: float) -> None:
        own = (target.namespace, target.deployment)
        placeholders = (target.namespace, target.deployment + self.placeholder_suffix)
        learned = learn(
            target,
            [*self._starts.get(own, ()), *self._starts.get(placeholders, ())],
            since=at - self.lookback_seconds,
            wait_threshold=self.wait_threshold_seconds,
            placeholder_suffix=self.placeholder_suffix,
        )
        learned["refreshed_at"] = at
        self._learned[target.key] = learned
        self._learned_for[target.key] = target

    def learned(self) -> dict[str, dict[str, Any]]:
        """What was learned per target key (``lead_times`` as a plain dict), JSON-ready."""
        out = {}
        for key, learned in self._learned.items():
            lead = learned["lead_times"]
            out[key] = {**learned, "lead_times": None if lead is None else lead.__dict__.copy()}
        return out
