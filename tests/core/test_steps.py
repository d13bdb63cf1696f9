"""Table tests of each pipeline step of ``decide`` on its own (``autoscaler.core.steps``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from autoscaler.core import steps
from autoscaler.core.steps import placeholders, serving
from autoscaler.core.steps.context import Context
from autoscaler.core.types import ClusterState, DecisionRecord, MetricsSnapshot, Reason
from autoscaler.policy.schema import Placeholders, Scaling, ScalingRule, Target

NOW = 1_000_000.0
TARGET = Target(namespace="llm", deployment="vllm")  # perReplica 200, min 1, max 12


def ctx(**kw: Any) -> Context:
    """A context at NOW: 2 ready replicas, fresh load 400/s, no forecast, unless ``kw`` says otherwise."""
    cluster = kw.pop("cluster", ClusterState(spec_replicas=kw.pop("current", 2), ready_replicas=kw.pop("ready", 2)))
    fields: dict[str, Any] = {
        "target": TARGET,
        "cluster": cluster,
        "metrics": MetricsSnapshot(time=NOW),
        "history": (),
        "now": NOW,
        "cap": 200.0,
        "current": cluster.spec_replicas,
        "q": 0.9,
        "stale": False,
        "load": 400.0,
        "waiting": 0.0,
        "placeholders_on": True,
        "pod_h": 120.0,
        "node_h": 1000.0,
        "predicted_pod": None,
        "predicted_node": None,
        "latency": 0.1,
        "breached": False,
    }
    fields.update(kw)
    return Context(**fields)


def rec(age: float, serving_rec: int, *, replicas: int | None = None, total: int | None = None) -> DecisionRecord:
    """A decision ``age`` seconds before NOW."""
    return DecisionRecord(
        time=NOW - age,
        serving_recommendation=serving_rec,
        total_recommendation=serving_rec if total is None else total,
        replicas=serving_rec if replicas is None else replicas,
        placeholders=0,
    )


def scaled(**kw: Any) -> Target:
    """TARGET with its scaling section changed."""
    return dataclasses.replace(TARGET, scaling=dataclasses.replace(Scaling(), **kw))


ZERO_OK = scaled(min_replicas=0)

# (step, context, value in, value out, reason recorded or None when the step does not act)
ROWS: list[tuple[str, steps.StepFn, Context, int, int, Reason | None]] = [
    ("forecast sizes the pod-horizon peak", serving.forecast, ctx(predicted_pod=500.0), 0, 3, Reason.PREDICTED_LOAD),
    (
        "forecast from zero wakes",
        serving.forecast,
        ctx(current=0, ready=0, predicted_pod=10.0),
        0,
        1,
        Reason.FORECAST_WAKE_UP,
    ),
    ("no forecast: reactive", serving.forecast, ctx(), 7, 2, Reason.FORECAST_UNAVAILABLE),
    ("no forecast, no load: current", serving.forecast, ctx(load=None, current=5), 0, 5, Reason.FORECAST_UNAVAILABLE),
    ("observed load above the forecast", serving.observed, ctx(load=700.0), 2, 4, Reason.OBSERVED_LOAD),
    ("a queue drains within a minute", serving.observed, ctx(load=400.0, waiting=18_000.0), 2, 4, Reason.OBSERVED_LOAD),
    ("observed below the value: no act", serving.observed, ctx(load=100.0), 3, 3, None),
    (
        "while the SLO is breached, twice the observed need",
        serving.observed,
        ctx(load=400.0, waiting=6_000.0, breached=True, latency=1.4),  # 2 x (400 + 6,000 / 60) / 200
        2,
        5,
        Reason.OBSERVED_LOAD,
    ),
    ("unknown load: no act", serving.observed, ctx(load=None), 3, 3, None),
    (
        "breach with all ready adds at once",
        serving.slo_guard,
        ctx(breached=True, latency=1.4),
        2,
        3,
        Reason.SLO_BREACHED,
    ),
    (
        "breach capped at 1.5x",
        serving.slo_guard,
        ctx(current=4, ready=4, breached=True, latency=9.0),
        1,
        6,
        Reason.SLO_BREACHED,
    ),
    (
        "breach while starting: hold",
        serving.slo_guard,
        ctx(current=4, ready=2, breached=True, latency=2.0),
        1,
        4,
        Reason.SLO_BREACHED,
    ),
    ("no breach: no act", serving.slo_guard, ctx(), 1, 1, None),
    ("requests with no replica wake", serving.wake_up, ctx(current=0, ready=0, load=5.0), 0, 1, Reason.QUEUE_WAKE_UP),
    ("no requests at zero: stay", serving.wake_up, ctx(current=0, ready=0, load=0.0), 0, 0, None),
    (
        "idle everywhere: zero",
        serving.idle_gate,
        ctx(target=ZERO_OK, load=0.0, predicted_node=0.0),
        1,
        0,
        Reason.IDLE_FORECAST_SCALE_TO_ZERO,
    ),
    (
        "zero blocked by traffic",
        serving.idle_gate,
        ctx(target=ZERO_OK, load=50.0, predicted_node=0.0),
        0,
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
    ),
    ("not idle and above zero: no act", serving.idle_gate, ctx(target=ZERO_OK, load=50.0), 2, 2, None),
    ("minReplicas 1: gate off", serving.idle_gate, ctx(load=0.0, predicted_node=0.0), 0, 0, None),
    ("stale data holds", serving.data_guard, ctx(stale=True, load=None, current=5), 1, 5, Reason.STALE_DATA_HOLD),
    ("missing load holds", serving.data_guard, ctx(load=None, current=5), 1, 5, Reason.MISSING_DATA_HOLD),
    ("fresh data: no act", serving.data_guard, ctx(current=5), 1, 1, None),
    (
        "capacity needed within a cold start",
        serving.regain_guard,
        ctx(current=5, predicted_node=700.0),
        2,
        4,
        Reason.FORECAST_NEEDS_CAPACITY_SOON,
    ),
    (
        "regain never raises past current",
        serving.regain_guard,
        ctx(current=3, predicted_node=2000.0),
        2,
        3,
        Reason.FORECAST_NEEDS_CAPACITY_SOON,
    ),
    ("no scale-down: regain off", serving.regain_guard, ctx(current=3, predicted_node=2000.0), 4, 4, None),
    (
        "stabilised at the window's highest",
        serving.stabilization,
        ctx(current=5, history=(rec(100.0, 4), rec(700.0, 5))),
        2,
        4,
        Reason.SCALE_DOWN_STABILIZED,
    ),
    ("window empty: no act", serving.stabilization, ctx(current=5, history=(rec(700.0, 5),)), 2, 2, None),
    (
        "scale-up limited",
        serving.rate_limit,
        ctx(target=scaled(scale_up=ScalingRule(max_pods=1, max_percent=10.0)), current=2),
        9,
        3,
        Reason.SCALE_UP_LIMIT,
    ),
    (
        "scale-down limited from the period's highest",
        serving.rate_limit,
        ctx(target=scaled(scale_down=ScalingRule(max_pods=1, max_percent=10.0)), current=6, history=(rec(30.0, 8),)),
        1,
        6,
        Reason.SCALE_DOWN_LIMIT,
    ),
    ("within the limits: no act", serving.rate_limit, ctx(current=2), 4, 4, None),
    ("above max", serving.bounds, ctx(), 40, 12, Reason.TOO_MANY_REPLICAS),
    ("below min", serving.bounds, ctx(), 0, 1, Reason.TOO_FEW_REPLICAS),
    ("within range is recorded", serving.bounds, ctx(), 3, 3, Reason.DESIRED_WITHIN_RANGE),
]


@pytest.mark.parametrize(("name", "step", "context", "value", "out", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_serving_step(
    name: str, step: steps.StepFn, context: Context, value: int, out: int, reason: Reason | None
) -> None:
    """Each serving step returns its value, and a Step with its reason exactly when it acts."""
    result, recorded = step(context, value)
    assert result == out, name
    if reason is None:
        assert recorded is None
    else:
        assert recorded is not None and recorded.reason == reason and recorded.value == out


def test_run_threads_the_value_and_keeps_only_recorded_steps() -> None:
    """`run` feeds each step the previous one's value; steps that did not act leave no trail."""
    value, trail = steps.run(ctx(load=700.0, predicted_pod=300.0), 0, serving.RECOMMEND)
    assert value == 4
    assert [s.name for s in trail] == ["forecast", "observed"]


def plan(replicas: int = 2, rec_: int = 2) -> placeholders.Plan:
    """A placeholder plan for ``replicas`` serving replicas."""
    return placeholders.Plan(replicas=replicas, serving_recommendation=rec_)


def test_placeholders_cover_the_node_horizon_peak() -> None:
    """Total = node-horizon forecast; placeholders = total - serving replicas."""
    c = ctx(predicted_node=1000.0)
    value, total, recorded = placeholders.placeholders(c, replicas=2, serving_recommendation=2)
    assert (value, total, recorded.reason) == (3, 5, Reason.PLACEHOLDERS_FOR_FORECAST)


@pytest.mark.parametrize(
    ("name", "context", "total", "reason"),
    [
        (
            "no forecast keeps the current capacity",
            ctx(cluster=ClusterState(spec_replicas=2, placeholder_replicas=3)),
            5,
            Reason.PLACEHOLDERS_HOLD,
        ),
        (
            "from zero: wake up",
            ctx(cluster=ClusterState(spec_replicas=0), predicted_node=600.0),
            3,
            Reason.FORECAST_WAKE_UP,
        ),
        ("never below the serving recommendation", ctx(predicted_node=100.0), 2, Reason.PLACEHOLDERS_FOR_FORECAST),
    ],
)
def test_for_forecast(name: str, context: Context, total: int, reason: Reason) -> None:
    """The total the forecast asks for, or what is held without one."""
    out = placeholders.for_forecast(context, plan(replicas=0 if context.current == 0 else 2))
    assert (out.total, out.reason) == (total, reason), name


def test_data_hold_and_stabilise() -> None:
    """Unknown load never releases capacity; a scale-down waits out the placeholder window."""
    cluster = ClusterState(spec_replicas=2, placeholder_replicas=4)
    held = placeholders.data_hold(ctx(cluster=cluster, load=None), dataclasses.replace(plan(), total=2))
    assert (held.total, held.reason) == (6, Reason.PLACEHOLDERS_HOLD)
    window = ctx(cluster=cluster, history=(rec(60.0, 2, total=5),))
    stable = placeholders.stabilize(window, dataclasses.replace(plan(), total=3))
    assert (stable.total, stable.reason) == (5, Reason.PLACEHOLDERS_STABILIZED)
    assert placeholders.stabilize(ctx(cluster=cluster), dataclasses.replace(plan(), total=3)).total == 3


def test_split_limits_and_disabled() -> None:
    """The split respects placeholders.max; disabled placeholders are none."""
    limited = dataclasses.replace(TARGET, placeholders=Placeholders(max=2))
    value, recorded = placeholders.split(ctx(target=limited), dataclasses.replace(plan(), total=9))
    assert (value, recorded.reason) == (2, Reason.PLACEHOLDER_LIMIT)
    off = placeholders.placeholders(ctx(placeholders_on=False), replicas=3, serving_recommendation=4)
    assert off[:2] == (0, 4) and off[2].reason == Reason.PLACEHOLDERS_DISABLED
