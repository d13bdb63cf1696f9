"""The serving replica steps: a recommendation, then its normalisation (HPA-style).

`RECOMMEND` turns the forecast and what is observed now into the replicas the load needs
(steps 1-4 of :mod:`autoscaler.core.decide`); its result is the *serving recommendation*
that later decisions' stabilisation windows read. `NORMALISE` then only holds or limits
it: no scale-down while the capacity is needed again within a node cold start, the
stabilisation window, rate limits, min/max (steps 5-8). Each step is pure and returns the
new value with the :class:`~autoscaler.core.types.Step` that explains it, or ``None``
when it did not act.
"""

from __future__ import annotations

import math

from autoscaler.core.capacity import replicas_for
from autoscaler.core.steps import StepFn
from autoscaler.core.steps.context import Context
from autoscaler.core.types import Reason, Step

#: The most the SLO guard multiplies ready replicas by in one cycle (the HPA formula
#: ``ready * latency / target`` explodes once a queue forms).
SLO_GUARD_MAX_FACTOR = 1.5
#: A queue of waiting requests should drain within this many seconds: a minute, the rule
#: the naive-seasonal baseline is held to too. At two minutes the replicas a surge's queue
#: asks for came later, for 0.02 SLO points on ServeGen m-mid at the same node-hours.
QUEUE_DRAIN_SECONDS = 60.0
#: While the SLO is breached, the observed load and queue are sized at this multiple. The
#: breach says the capacity figure is optimistic right now, and what is asked for serves
#: only after a start-up, by when a surge's queue has grown: naive seasonal's 80 % margin
#: asked a surge's nodes sooner than the learned capacity did. On ServeGen m-mid (batching
#: curve, 15-min cold start), its surge of 2.8x in 20 minutes had 108 steps over the SLO
#: instead of 124, for +0.5 % node-hours (1.25 / 1.43 / 1.67 / 2 / 2.5: 99.634 / 99.645 /
#: 99.650 / 99.658 / 99.663 % against 99.616 %); on the other decision rows, +0.00-0.07
#: SLO points at -0.6 to +1.9 % node-hours.
BREACH_LOAD_FACTOR = 2.0


def forecast(ctx: Context, value: int) -> tuple[int, Step | None]:
    """1. Replicas for the forecast peak over the serving lead time, or the reactive value."""
    del value  # the first step: nothing came before it
    if ctx.predicted_pod is not None:
        sized = ctx.size(ctx.predicted_pod)
        waking = ctx.current == 0 and sized > 0
        detail = f"q{ctx.q:g} peak {ctx.predicted_pod:.3g}/s over {ctx.pod_h:.0f}s"
        reason = Reason.FORECAST_WAKE_UP if waking else Reason.PREDICTED_LOAD
        return sized, Step("forecast", sized, reason, detail + (" (load returns)" if waking else ""))
    if ctx.load is not None:
        reactive = replicas_for(ctx.load, ctx.cap)
        return reactive, Step("forecast", reactive, Reason.FORECAST_UNAVAILABLE, "no forecast; reactive value")
    return ctx.current, Step("forecast", ctx.current, Reason.FORECAST_UNAVAILABLE, "no forecast, no load")


def observed(ctx: Context, value: int) -> tuple[int, Step | None]:
    """2. Never below what the observed load needs now, including draining a queue; while
    the SLO is breached, `BREACH_LOAD_FACTOR` times that."""
    if ctx.load is None:
        return value, None
    backlog = (ctx.waiting or 0.0) / QUEUE_DRAIN_SECONDS
    factor = BREACH_LOAD_FACTOR if ctx.breached else 1.0
    need = replicas_for(ctx.load + backlog, ctx.cap / factor)
    if need <= value:
        return value, None
    detail = f"load {ctx.load:.3g}/s now" + (f" + queue {ctx.waiting:.0f}" if backlog else "")
    if ctx.breached:
        detail += f", x{factor:g} while the SLO is breached"
    return need, Step("observed", need, Reason.OBSERVED_LOAD, detail)


def slo_guard(ctx: Context, value: int) -> tuple[int, Step | None]:
    """3. While the SLO is breached: no scale-down, and replicas added at once if all are ready.

    Every replica ready means the capacity figure is optimistic. While replicas are still
    starting, their arrival is awaited instead (the HPA's unready-pod rule): a
    queue-driven latency spike must not scale to the max.
    """
    if not ctx.breached or ctx.latency is None:
        return value, None
    slo = ctx.target.slo.latency_seconds
    ready = ctx.cluster.ready_replicas
    in_flight = ctx.current - ready
    detail = f"latency {ctx.latency * 1000:.0f}ms > {slo * 1000:.0f}ms"
    guard = ctx.current  # never scale down while the SLO is breached
    if ready > 0 and in_flight <= 0:
        factor = min(ctx.latency / slo, SLO_GUARD_MAX_FACTOR)
        guard = max(ready + 1, math.ceil(ready * factor))
    else:
        detail += f"; waiting for {in_flight} starting replica(s)"
    if guard <= value:
        return value, None
    return guard, Step("slo_guard", guard, Reason.SLO_BREACHED, detail)


def wake_up(ctx: Context, value: int) -> tuple[int, Step | None]:
    """3a. Requests arriving (or queued) with no replica wake the target at once."""
    if ctx.current == 0 and value == 0 and ((ctx.waiting or 0) > 0 or (ctx.load or 0) > 0):
        return 1, Step("wake_up", 1, Reason.QUEUE_WAKE_UP, "requests arrive with no replica")
    return value, None


def idle_gate(ctx: Context, value: int) -> tuple[int, Step | None]:
    """3b. minReplicas 0 only: zero replicas when every signal says idle, else at least one.

    Part of the recommendation, so the stabilisation window also requires the idle state
    to last before the drop.
    """
    if not (ctx.zero_ok and ctx.current > 0):
        return value, None
    blockers = idle_blockers(ctx)
    if not blockers:
        detail = (
            f"load <= {ctx.idle_observed:.3g}/s, no queue, q{ctx.q:g} forecast <= {ctx.idle_forecast:.3g}/s "
            f"over {ctx.node_h:.0f}s"
        )
        return 0, Step("idle", 0, Reason.IDLE_FORECAST_SCALE_TO_ZERO, detail)
    if value == 0:
        return 1, Step("idle", 1, Reason.SCALE_TO_ZERO_BLOCKED, "; ".join(blockers))
    return value, None


def idle_blockers(ctx: Context) -> list[str]:
    """Why the target is not idle (empty = idle). Unknown data is never idle. Pure."""
    blockers = []
    if ctx.load is None:
        blockers.append("load unknown or stale")
    elif ctx.load > ctx.idle_observed:
        blockers.append(f"load {ctx.load:.3g}/s > {ctx.idle_observed:.3g}/s")
    if ctx.waiting is None:
        blockers.append("queue unknown")
    elif ctx.waiting >= 1:
        blockers.append(f"{ctx.waiting:.0f} request(s) queued")
    if ctx.breached:
        blockers.append("SLO breached")
    if ctx.predicted_node is None:
        blockers.append("no forecast")
    elif ctx.predicted_node > ctx.idle_forecast:
        blockers.append(f"forecast {ctx.predicted_node:.3g}/s > {ctx.idle_forecast:.3g}/s within {ctx.node_h:.0f}s")
    return blockers


def data_guard(ctx: Context, value: int) -> tuple[int, Step | None]:
    """4. Missing, stale or future-dated data never causes a scale-down."""
    if ctx.data_ok:
        return value, None
    reason = Reason.STALE_DATA_HOLD if ctx.stale else Reason.MISSING_DATA_HOLD
    held = max(value, ctx.current)
    return held, Step("data_guard", held, reason, ctx.metrics.problems.get("load", "load unknown"))


def regain_guard(ctx: Context, value: int) -> tuple[int, Step | None]:
    """5. No scale-down while the forecast needs the capacity again within a node cold start.

    A released GPU may be gone by then, and keeping it as a warm serving replica costs the
    same node-hours as keeping it as a placeholder.
    """
    if value >= ctx.current or ctx.predicted_node is None:
        return value, None
    hold = min(ctx.current, ctx.size(ctx.predicted_node))
    if hold <= value:
        return value, None
    detail = f"q{ctx.q:g} peak {ctx.predicted_node:.3g}/s within {ctx.node_h:.0f}s"
    return hold, Step("regain_guard", hold, Reason.FORECAST_NEEDS_CAPACITY_SOON, detail)


def stabilization(ctx: Context, value: int) -> tuple[int, Step | None]:
    """6. Scale-down stabilisation: the highest serving recommendation of the window."""
    if value >= ctx.current:
        return value, None
    seconds = ctx.target.scaling.scale_down_stabilization_seconds
    window = [r.serving_recommendation for r in ctx.history if ctx.now - r.time < seconds]
    stabilized = min(ctx.current, max([value, *window]))
    if stabilized <= value:
        return value, None
    return stabilized, Step("stabilization", stabilized, Reason.SCALE_DOWN_STABILIZED, f"window {seconds:.0f}s")


def rate_limit(ctx: Context, value: int) -> tuple[int, Step | None]:
    """7. Rate limits, against the extreme of the period (the HPA's default selectPolicy: most permissive)."""
    current, history, now = ctx.current, ctx.history, ctx.now
    if value > current:
        up = ctx.target.scaling.scale_up
        base = min([current, *(r.replicas for r in history if now - r.time < up.period_seconds)])
        limit = max(current, base + up.max_pods, math.ceil(base * (1 + up.max_percent / 100)))
        if value > limit:
            detail = f"+{up.max_pods} pods or {up.max_percent:g}% per {up.period_seconds:g}s"
            return limit, Step("rate_limit", limit, Reason.SCALE_UP_LIMIT, detail)
    elif value < current:
        down = ctx.target.scaling.scale_down
        base = max([current, *(r.replicas for r in history if now - r.time < down.period_seconds)])
        lowest = min(base - down.max_pods, math.floor(base * (1 - down.max_percent / 100)))
        lowest = min(max(lowest, 0), current)
        if value < lowest:
            detail = f"-{down.max_pods} pods or {down.max_percent:g}% per {down.period_seconds:g}s"
            return lowest, Step("rate_limit", lowest, Reason.SCALE_DOWN_LIMIT, detail)
    return value, None


def bounds(ctx: Context, value: int) -> tuple[int, Step | None]:
    """8. min/max replicas; always recorded, so the trail ends with the bounds check."""
    scaling = ctx.target.scaling
    if value > scaling.max_replicas:
        return scaling.max_replicas, Step(
            "bounds", scaling.max_replicas, Reason.TOO_MANY_REPLICAS, f"max {scaling.max_replicas}"
        )
    if value < scaling.min_replicas:
        return scaling.min_replicas, Step(
            "bounds", scaling.min_replicas, Reason.TOO_FEW_REPLICAS, f"min {scaling.min_replicas}"
        )
    return value, Step("bounds", value, Reason.DESIRED_WITHIN_RANGE)


#: Steps 1-4: what the load needs; the result is the serving recommendation.
RECOMMEND: tuple[StepFn, ...] = (forecast, observed, slo_guard, wake_up, idle_gate, data_guard)
#: Steps 5-8: holds and limits on the recommendation.
NORMALISE: tuple[StepFn, ...] = (regain_guard, stabilization, rate_limit, bounds)
