"""The placeholder pipeline: total capacity over a node cold start, minus serving replicas.

Placeholder pods hold GPU nodes for the capacity the forecast needs over a whole node
cold start that the serving replicas do not already fill. A :class:`Plan` of the *total*
(serving plus placeholders) goes through short pure steps: sized for the forecast (or
held without one), held when the load is unknown, stabilised on scale-down; the split
then subtracts the serving replicas and applies the limits. The total after the hold
and before stabilisation is the *total recommendation* later windows read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler.core.steps.context import Context
from autoscaler.core.types import Reason, Step


@dataclass(frozen=True)
class Plan:
    """The total capacity being planned, and why (the reason the placeholder step reports).

    Attributes:
        replicas: Serving replicas decided (the serving pipeline's result).
        serving_recommendation: Serving replicas the load needs (before normalisation).
        total: Serving replicas plus placeholders planned so far.
        reason: Why the total is what it is.
        detail: A human-readable account of ``reason``.
    """

    replicas: int
    serving_recommendation: int
    total: int = 0
    reason: Reason = Reason.PLACEHOLDERS_FOR_FORECAST
    detail: str = ""


#: One placeholder step: ``(context, plan) -> plan``. Pure.
PlanStep = Callable[[Context, Plan], Plan]


def current_total(ctx: Context) -> int:
    """Serving replicas plus placeholder pods in the cluster now."""
    return ctx.cluster.spec_replicas + ctx.cluster.placeholder_replicas


def for_forecast(ctx: Context, plan: Plan) -> Plan:
    """The forecast peak over the node cold start, never below the serving recommendation.

    Without a forecast the current capacity is kept. From zero, nodes are requested a
    whole cold start before the load returns (``ForecastWakeUp``).
    """
    if ctx.predicted_node is None:
        total = max(current_total(ctx), plan.serving_recommendation)
        return dataclasses.replace(
            plan, total=total, reason=Reason.PLACEHOLDERS_HOLD, detail="no forecast: keep current capacity"
        )
    sized = ctx.size(ctx.predicted_node)
    detail = f"q{ctx.target.forecast.quantile:g} peak {ctx.predicted_node:.3g}/s over {ctx.node_h:.0f}s"
    reason = Reason.PLACEHOLDERS_FOR_FORECAST
    if current_total(ctx) == 0 and sized > plan.replicas:
        reason, detail = Reason.FORECAST_WAKE_UP, detail + " (load returns)"
    return dataclasses.replace(plan, total=max(sized, plan.serving_recommendation), reason=reason, detail=detail)


def data_hold(ctx: Context, plan: Plan) -> Plan:
    """Unknown or stale load never releases capacity."""
    if ctx.data_ok:
        return plan
    return dataclasses.replace(
        plan,
        total=max(plan.total, current_total(ctx)),
        reason=Reason.PLACEHOLDERS_HOLD,
        detail="load unknown: never release capacity",
    )


def stabilize(ctx: Context, plan: Plan) -> Plan:
    """On scale-down, the highest total recommendation of the placeholders' window."""
    now_total = current_total(ctx)
    if plan.total >= now_total:
        return plan
    seconds = ctx.target.placeholders.scale_down_stabilization_seconds
    window = [r.total_recommendation for r in ctx.history if ctx.now - r.time < seconds]
    stabilized = min(now_total, max([plan.total, *window]))
    if stabilized <= plan.total:
        return plan
    return dataclasses.replace(
        plan, total=stabilized, reason=Reason.PLACEHOLDERS_STABILIZED, detail=f"window {seconds:.0f}s"
    )


#: The steps on the total before the split; the total after `data_hold` is the total recommendation.
RECOMMEND: tuple[PlanStep, ...] = (for_forecast, data_hold)
NORMALISE: tuple[PlanStep, ...] = (stabilize,)


def split(ctx: Context, plan: Plan) -> tuple[int, Step]:
    """Placeholders = total - serving replicas, within ``placeholders.max`` and the fleet maximum."""
    settings = ctx.target.placeholders
    value = max(0, plan.total - plan.replicas)
    ceiling = max(0, min(settings.max, ctx.target.scaling.max_replicas - plan.replicas))
    reason, detail = plan.reason, plan.detail
    if value > ceiling:
        value = ceiling
        reason, detail = Reason.PLACEHOLDER_LIMIT, f"max {settings.max}, fleet max {ctx.target.scaling.max_replicas}"
    return value, Step("placeholders", value, reason, detail)


def placeholders(ctx: Context, *, replicas: int, serving_recommendation: int) -> tuple[int, int, Step]:
    """Run the pipeline. Returns the placeholder pods, the total recommendation and the step."""
    if not ctx.placeholders_on:
        return 0, max(replicas, serving_recommendation), Step("placeholders", 0, Reason.PLACEHOLDERS_DISABLED)
    plan = Plan(replicas=replicas, serving_recommendation=serving_recommendation)
    for step in RECOMMEND:
        plan = step(ctx, plan)
    total_recommendation = plan.total
    for step in NORMALISE:
        plan = step(ctx, plan)
    value, recorded = split(ctx, plan)
    return value, total_recommendation, recorded
