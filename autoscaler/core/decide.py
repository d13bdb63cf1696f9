"""``decide``: observation + forecast + policy + history -> Decision. Pure.

Two numbers come out. **Serving replicas** are sized for the forecast quantile over the
time a new replica needs to become ready (plus one loop), never below what the observed
load needs now, and raised at once when the SLO is already breached. **Placeholder pods**
fill the gap up to the capacity the forecast needs over a whole *node* cold start, so
cluster-autoscaler adds GPU nodes early; serving pods preempt them when they scale up.

Then the safety pipeline, in a fixed order, each step recording a :class:`Reason`
(after the HPA's ``normalizeDesiredReplicasWithBehaviors``):

1. predicted load (or the reactive value when no forecast exists);
2. observed load now; 3. SLO-breach guard and wake-up on a queue;
3b. with ``minReplicas: 0`` only, the idle gate (see below);
4. missing, stale or future-dated data: never a scale-down, hold;
5. no scale-down while the forecast needs the capacity again within a node cold start;
6. scale-down stabilisation; 7. scale-up/down rate limits; 8. min/max.

Scale-to-zero (``scaling.minReplicas: 0``) is deliberate, never a side effect of a small
number. A forecast quantile at or below ``idleForecastFraction`` of one replica's capacity
counts as *idle* and sizes to zero replicas and zero nodes (instead of ``ceil`` rounding
it up to one: the forecasters' intervals never quite reach zero, even over an empty
night). The idle gate then lets serving replicas reach zero only when **all** of these
hold: fresh, known observed load at or below ``idleObservedFraction`` of a replica (no
traffic: a trickle that would fail at zero replicas blocks it), no queued request, no SLO
breach, and an idle forecast over a whole node cold start (the time it takes to get the
capacity back). In every other case a running target keeps at least one replica
(``ScaleToZeroBlocked``), and the drop itself is recorded as ``IdleForecastScaleToZero``;
like any scale-down it waits out the stabilisation window.

At zero, capacity comes back *before* the load: placeholders cover the forecast over the
node cold start, so a return of load at ``T`` requests nodes by ``T - node cold start``,
and serving replicas cover it over the pod start-up, so they are asked for by ``T - pod
start`` (both ``ForecastWakeUp``). Requests that arrive anyway (a queue, or any arrival
rate while no replica exists) still wake the target at once (``QueueWakeUp``): the
reactive fallback when the forecast missed.

Placeholder-victim design: among equal-priority victims the kube-scheduler prefers the
most recently started pod, which may still be pulling the image. While any placeholder is
still pulling ("cold"), a serving scale-up may land on it, so the serving lead time is
then image pull + model load rather than model load alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from autoscaler.core.capacity import replicas_for
from autoscaler.core.forecast_view import ForecastView
from autoscaler.core.freshness import usable
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import Decision, DecisionRecord, Observation, Reason, Step
from autoscaler.policy.schema import Target

#: The most the SLO guard multiplies ready replicas by in one cycle (the HPA formula
#: ``ready * latency / target`` explodes once a queue forms).
SLO_GUARD_MAX_FACTOR = 1.5
#: A queue of waiting requests should drain within this many seconds: a minute, the rule
#: the naive-seasonal baseline is held to too. At two minutes the replicas a surge's queue
#: asks for came later, for 0.02 SLO points on ServeGen m-mid at the same node-hours.
QUEUE_DRAIN_SECONDS = 60.0


def decide(
    *,
    target: Target,
    observation: Observation,
    forecast: ForecastView | None,
    history: Sequence[DecisionRecord],
    now: float,
    loop_interval: float,
    lead_times: LeadTimes | None = None,
    per_replica_capacity: float | None = None,
) -> Decision:
    """Decide serving replicas and placeholder pods for one target. Pure: no IO, no clock.

    Args:
        target: The target's policy.
        observation: Metrics (any field may be unknown) and cluster state (authoritative).
        forecast: The load forecast, or ``None`` when no model could produce one.
        history: Earlier decisions for this target (any order; older ones are ignored).
        now: The decision time (unix seconds).
        loop_interval: Seconds until the next decision.
        lead_times: Measured lead times; the policy's cold-start phases when ``None``.
        per_replica_capacity: Learned capacity; the policy's ``perReplica`` when ``None``.

    Returns:
        The decision with the full trail of steps.
    """
    cap = per_replica_capacity or target.capacity.per_replica
    lt = lead_times or LeadTimes.from_policy(target.cold_start)
    cluster, metrics = observation.cluster, observation.metrics
    scaling = target.scaling
    q = target.forecast.quantile
    current = cluster.spec_replicas
    steps: list[Step] = []
    # Scale-to-zero is only ever considered when the policy allows zero replicas.
    zero_ok = scaling.min_replicas == 0
    idle_forecast = scaling.idle_forecast_fraction * cap
    idle_observed = scaling.idle_observed_fraction * cap

    def size(predicted: float) -> int:
        """Replicas for a predicted load; with minReplicas 0, an idle forecast needs none."""
        if zero_ok and predicted <= idle_forecast:
            return 0
        return replicas_for(predicted, cap)

    stale = not usable(metrics.newest_sample_time, now, stale_after=scaling.stale_after_seconds)
    load = None if stale else metrics.load
    data_ok = load is not None

    placeholders_on = target.placeholders.enabled and target.placeholders.max > 0
    if not placeholders_on:
        pod_h = lt.total
    elif cluster.placeholders_cold > 0:
        pod_h = lt.pod_start_fresh
    else:
        pod_h = lt.pod_start_warm
    pod_h += loop_interval
    node_h = lt.total + loop_interval

    # 1. Predicted load over the serving lead time (or the reactive value).
    predicted_pod = _peak(forecast, q, now, now + pod_h)
    predicted_node = _peak(forecast, q, now, now + node_h)
    if predicted_pod is not None:
        value = size(predicted_pod)
        waking = current == 0 and value > 0
        steps.append(
            Step(
                "forecast",
                value,
                Reason.FORECAST_WAKE_UP if waking else Reason.PREDICTED_LOAD,
                f"q{q:g} peak {predicted_pod:.3g}/s over {pod_h:.0f}s" + (" (load returns)" if waking else ""),
            )
        )
    else:
        value = replicas_for(load, cap) if load is not None else current
        steps.append(
            Step(
                "forecast",
                value,
                Reason.FORECAST_UNAVAILABLE,
                "no forecast; reactive value" if load is not None else "no forecast, no load",
            )
        )

    # 2. Never below what the observed load needs now, including draining a queue.
    waiting = None if stale else metrics.waiting
    if load is not None:
        backlog = (waiting or 0.0) / QUEUE_DRAIN_SECONDS
        observed_need = replicas_for(load + backlog, cap)
        if observed_need > value:
            value = observed_need
            steps.append(
                Step(
                    "observed",
                    value,
                    Reason.OBSERVED_LOAD,
                    f"load {load:.3g}/s now" + (f" + queue {waiting:.0f}" if backlog else ""),
                )
            )

    # 3. Reactive guard: while the SLO is breached there is no scale-down, and if every
    #    replica is ready (so the capacity figure is optimistic) replicas are added at
    #    once. While replicas are still starting, their arrival is awaited instead (the
    #    HPA's unready-pod rule): a queue-driven latency spike must not scale to the max.
    latency = metrics.latency_mean if target.slo.latency_signal == "mean" else metrics.latency_quantile
    slo = target.slo.latency_seconds
    in_flight = current - cluster.ready_replicas
    breached = not stale and latency is not None and latency > slo
    if breached and latency is not None:
        detail = f"latency {latency * 1000:.0f}ms > {slo * 1000:.0f}ms"
        guard = current  # never scale down while the SLO is breached
        if cluster.ready_replicas > 0 and in_flight <= 0:
            factor = min(latency / slo, SLO_GUARD_MAX_FACTOR)
            guard = max(cluster.ready_replicas + 1, math.ceil(cluster.ready_replicas * factor))
        else:
            detail += f"; waiting for {in_flight} starting replica(s)"
        if guard > value:
            value = guard
            steps.append(Step("slo_guard", value, Reason.SLO_BREACHED, detail))
    if current == 0 and value == 0 and ((waiting or 0) > 0 or (load or 0) > 0):
        value = 1
        steps.append(Step("wake_up", value, Reason.QUEUE_WAKE_UP, "requests arrive with no replica"))

    # 3b. Idle gate (minReplicas 0 only): zero replicas only when every signal says idle;
    #     otherwise a running target keeps one. Part of the recommendation, so the
    #     stabilisation window also requires the idle state to last before the drop.
    if zero_ok and current > 0:
        blockers = _idle_blockers(
            load=load,
            waiting=waiting,
            breached=breached,
            predicted_node=predicted_node,
            idle_observed=idle_observed,
            idle_forecast=idle_forecast,
            node_h=node_h,
        )
        if not blockers:
            value = 0
            steps.append(
                Step(
                    "idle",
                    value,
                    Reason.IDLE_FORECAST_SCALE_TO_ZERO,
                    f"load <= {idle_observed:.3g}/s, no queue, q{q:g} forecast <= {idle_forecast:.3g}/s "
                    f"over {node_h:.0f}s",
                )
            )
        elif value == 0:
            value = 1
            steps.append(Step("idle", value, Reason.SCALE_TO_ZERO_BLOCKED, "; ".join(blockers)))

    # 4. Missing or stale data never causes a scale-down.
    if not data_ok:
        reason = Reason.STALE_DATA_HOLD if stale else Reason.MISSING_DATA_HOLD
        value = max(value, current)
        steps.append(Step("data_guard", value, reason, metrics.problems.get("load", "load unknown")))
    serving_recommendation = value

    # 5. No scale-down while the forecast needs the capacity again within a node cold
    #    start: a released GPU may be gone by then, and keeping it as a warm serving
    #    replica costs the same node-hours as keeping it as a placeholder.
    if value < current:
        needed = predicted_node
        if needed is not None:
            hold = min(current, size(needed))
            if hold > value:
                value = hold
                steps.append(
                    Step(
                        "regain_guard",
                        value,
                        Reason.FORECAST_NEEDS_CAPACITY_SOON,
                        f"q{q:g} peak {needed:.3g}/s within {node_h:.0f}s",
                    )
                )

    # 6. Scale-down stabilisation: the highest recommendation of the window.
    if value < current:
        window = [r.serving_recommendation for r in history if now - r.time < scaling.scale_down_stabilization_seconds]
        stabilized = min(current, max([value, *window]))
        if stabilized > value:
            value = stabilized
            steps.append(
                Step(
                    "stabilization",
                    value,
                    Reason.SCALE_DOWN_STABILIZED,
                    f"window {scaling.scale_down_stabilization_seconds:.0f}s",
                )
            )

    # 7. Rate limits (most permissive policy wins, as in the HPA's default selectPolicy).
    value = _rate_limit(value, current=current, history=history, now=now, target=target, steps=steps)

    # 8. Bounds.
    if value > scaling.max_replicas:
        value = scaling.max_replicas
        steps.append(Step("bounds", value, Reason.TOO_MANY_REPLICAS, f"max {scaling.max_replicas}"))
    elif value < scaling.min_replicas:
        value = scaling.min_replicas
        steps.append(Step("bounds", value, Reason.TOO_FEW_REPLICAS, f"min {scaling.min_replicas}"))
    else:
        steps.append(Step("bounds", value, Reason.DESIRED_WITHIN_RANGE))
    replicas = value
    reason = _final_reason(steps, replicas, current)
    if replicas == 0 < current:
        # Only the idle gate lets a running target reach zero (every later step only
        # holds or raises), so the drop is always reported as that decision.
        reason = Reason.IDLE_FORECAST_SCALE_TO_ZERO

    placeholders, total_recommendation, ph_reason = _placeholders(
        target=target,
        observation=observation,
        predicted=predicted_node,
        size=size,
        history=history,
        now=now,
        node_h=node_h,
        replicas=replicas,
        data_ok=data_ok,
        steps=steps,
        serving_recommendation=serving_recommendation,
        enabled=placeholders_on,
    )
    return Decision(
        target=target.key,
        time=now,
        replicas=replicas,
        placeholders=placeholders,
        current_replicas=current,
        current_placeholders=cluster.placeholder_replicas,
        reason=reason,
        placeholder_reason=ph_reason,
        steps=tuple(steps),
        serving_recommendation=serving_recommendation,
        total_recommendation=total_recommendation,
        observed_load=load,
        predicted_load_pod_horizon=predicted_pod,
        predicted_load_node_horizon=predicted_node,
        pod_horizon_seconds=pod_h,
        node_horizon_seconds=node_h,
        per_replica_capacity=cap,
        data_ok=data_ok,
        forecast_model=forecast.model if forecast is not None else None,
    )


def _idle_blockers(
    *,
    load: float | None,
    waiting: float | None,
    breached: bool,
    predicted_node: float | None,
    idle_observed: float,
    idle_forecast: float,
    node_h: float,
) -> list[str]:
    """Why the target is not idle (empty = idle). Unknown data is never idle. Pure."""
    blockers = []
    if load is None:
        blockers.append("load unknown or stale")
    elif load > idle_observed:
        blockers.append(f"load {load:.3g}/s > {idle_observed:.3g}/s")
    if waiting is None:
        blockers.append("queue unknown")
    elif waiting >= 1:
        blockers.append(f"{waiting:.0f} request(s) queued")
    if breached:
        blockers.append("SLO breached")
    if predicted_node is None:
        blockers.append("no forecast")
    elif predicted_node > idle_forecast:
        blockers.append(f"forecast {predicted_node:.3g}/s > {idle_forecast:.3g}/s within {node_h:.0f}s")
    return blockers


def _peak(forecast: ForecastView | None, q: float, start: float, end: float) -> float | None:
    if forecast is None:
        return None
    value = forecast.peak(quantile=q, start=start, end=end)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


def _rate_limit(
    value: int,
    *,
    current: int,
    history: Sequence[DecisionRecord],
    now: float,
    target: Target,
    steps: list[Step],
) -> int:
    scaling = target.scaling
    if value > current:
        rule = scaling.scale_up
        recent = [r.replicas for r in history if now - r.time < rule.period_seconds]
        base = min([current, *recent])
        limit = max(base + rule.max_pods, math.ceil(base * (1 + rule.max_percent / 100)))
        limit = max(limit, current)
        if value > limit:
            steps.append(
                Step(
                    "rate_limit",
                    limit,
                    Reason.SCALE_UP_LIMIT,
                    f"+{rule.max_pods} pods or {rule.max_percent:g}% per {rule.period_seconds:g}s",
                )
            )
            return limit
    elif value < current:
        rule = scaling.scale_down
        recent = [r.replicas for r in history if now - r.time < rule.period_seconds]
        base = max([current, *recent])
        lowest = min(base - rule.max_pods, math.floor(base * (1 - rule.max_percent / 100)))
        lowest = min(max(lowest, 0), current)
        if value < lowest:
            steps.append(
                Step(
                    "rate_limit",
                    lowest,
                    Reason.SCALE_DOWN_LIMIT,
                    f"-{rule.max_pods} pods or {rule.max_percent:g}% per {rule.period_seconds:g}s",
                )
            )
            return lowest
    return value


def _final_reason(steps: Sequence[Step], replicas: int, current: int) -> Reason:
    """The reason of the last step that changed the value; NoChange if none did."""
    previous, binding = current, None
    for step in steps:
        if step.value != previous:
            binding = step
        previous = step.value
    if binding is None:
        return Reason.NO_CHANGE if replicas == current else Reason.DESIRED_WITHIN_RANGE
    return binding.reason


def _placeholders(
    *,
    target: Target,
    observation: Observation,
    predicted: float | None,
    size: Callable[[float], int],
    history: Sequence[DecisionRecord],
    now: float,
    node_h: float,
    replicas: int,
    data_ok: bool,
    steps: list[Step],
    serving_recommendation: int,
    enabled: bool,
) -> tuple[int, int, Reason]:
    """Placeholder pods: total capacity over the node cold start minus serving replicas.

    ``predicted`` is the forecast quantile's peak over the node cold start and ``size``
    turns a load into replicas (idle load into none when the target may scale to zero).
    """
    cluster = observation.cluster
    settings = target.placeholders
    if not enabled:
        steps.append(Step("placeholders", 0, Reason.PLACEHOLDERS_DISABLED))
        return 0, max(replicas, serving_recommendation), Reason.PLACEHOLDERS_DISABLED
    current_total = cluster.spec_replicas + cluster.placeholder_replicas
    if predicted is not None:
        total = max(size(predicted), serving_recommendation)
        reason = Reason.PLACEHOLDERS_FOR_FORECAST
        detail = f"q{target.forecast.quantile:g} peak {predicted:.3g}/s over {node_h:.0f}s"
        if current_total == 0 and size(predicted) > replicas:
            # From zero: nodes are requested a whole cold start before the load returns.
            reason, detail = Reason.FORECAST_WAKE_UP, detail + " (load returns)"
    else:
        total = max(current_total, serving_recommendation)
        reason = Reason.PLACEHOLDERS_HOLD
        detail = "no forecast: keep current capacity"
    if not data_ok:
        total = max(total, current_total)
        reason, detail = Reason.PLACEHOLDERS_HOLD, "load unknown: never release capacity"
    total_recommendation = total
    window = [r.total_recommendation for r in history if now - r.time < settings.scale_down_stabilization_seconds]
    if total < current_total:
        stabilized = min(current_total, max([total, *window]))
        if stabilized > total:
            total = stabilized
            reason, detail = (
                Reason.PLACEHOLDERS_STABILIZED,
                (f"window {settings.scale_down_stabilization_seconds:.0f}s"),
            )
    value = max(0, total - replicas)
    ceiling = max(0, min(settings.max, target.scaling.max_replicas - replicas))
    if value > ceiling:
        value = ceiling
        reason, detail = Reason.PLACEHOLDER_LIMIT, f"max {settings.max}, fleet max {target.scaling.max_replicas}"
    steps.append(Step("placeholders", value, reason, detail))
    return value, total_recommendation, reason
