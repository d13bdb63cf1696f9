"""``decide``: observation + forecast + policy + history -> Decision. Pure.

Two numbers come out. **Serving replicas** are sized for the forecast quantile over the
time a new replica needs to become ready (plus one loop), never below what the observed
load needs now, and raised at once when the SLO is already breached. **Placeholder pods**
fill the gap up to the capacity the forecast needs over a whole *node* cold start, so
cluster-autoscaler adds GPU nodes early; serving pods preempt them when they scale up.

Then the safety pipeline, in a fixed order, each step a pure function in
:mod:`autoscaler.core.steps` recording a :class:`Reason` (after the HPA's
``normalizeDesiredReplicasWithBehaviors``): steps 1-4 make the serving recommendation,
5-8 normalise it, and a second short pipeline sizes the placeholders.

1. predicted load (or the reactive value when no forecast exists);
2. observed load now (doubled while the SLO is breached); 3. SLO-breach guard and wake-up on a queue;
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

from collections.abc import Sequence

from autoscaler.core import steps
from autoscaler.core.forecast_view import ForecastView
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.steps import context, placeholders, serving
from autoscaler.core.types import Decision, DecisionRecord, Observation, Reason, Step
from autoscaler.policy.schema import Target


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
    ctx = context.build(
        target=target,
        observation=observation,
        forecast=forecast,
        history=history,
        now=now,
        loop_interval=loop_interval,
        lead_times=lead_times,
        per_replica_capacity=per_replica_capacity,
    )
    recommendation, recommended = steps.run(ctx, ctx.current, serving.RECOMMEND)
    replicas, normalised = steps.run(ctx, recommendation, serving.NORMALISE)
    trail = recommended + normalised
    ph, total_recommendation, ph_step = placeholders.placeholders(
        ctx, replicas=replicas, serving_recommendation=recommendation
    )
    return Decision(
        target=target.key,
        time=now,
        replicas=replicas,
        placeholders=ph,
        current_replicas=ctx.current,
        current_placeholders=ctx.cluster.placeholder_replicas,
        reason=final_reason(trail, replicas, ctx.current),
        placeholder_reason=ph_step.reason,
        steps=(*trail, ph_step),
        serving_recommendation=recommendation,
        total_recommendation=total_recommendation,
        observed_load=ctx.load,
        predicted_load_pod_horizon=ctx.predicted_pod,
        predicted_load_node_horizon=ctx.predicted_node,
        pod_horizon_seconds=ctx.pod_h,
        node_horizon_seconds=ctx.node_h,
        per_replica_capacity=ctx.cap,
        data_ok=ctx.data_ok,
        forecast_model=forecast.model if forecast is not None else None,
    )


def final_reason(trail: Sequence[Step], replicas: int, current: int) -> Reason:
    """The reason of the last step that changed the value; NoChange if none did. Pure.

    A drop to zero is always the idle gate's decision: only it lets a running target
    reach zero (every later step only holds or raises), even when an earlier step had
    already sized the target at zero and the gate's value changed nothing.
    """
    if replicas == 0 < current:
        return Reason.IDLE_FORECAST_SCALE_TO_ZERO
    previous, binding = current, None
    for step in trail:
        if step.value != previous:
            binding = step
        previous = step.value
    if binding is None:
        return Reason.NO_CHANGE if replicas == current else Reason.DESIRED_WITHIN_RANGE
    return binding.reason
