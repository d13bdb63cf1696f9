"""Table-driven tests of ``decide``: each pipeline step and the reason it records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from autoscaler.core.decide import decide
from autoscaler.core.forecast_view import ConstantForecast
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import (
    DecisionRecord,
    Reason,
)
from autoscaler.policy.schema import Placeholders, Scaling, ScalingRule, Target
from tests.core.builders import observation, record

NOW = 1_000_000.0
BASE = Target(namespace="llm", deployment="vllm")  # perReplica 200, min 1, max 12


class TimedForecast(ConstantForecast):
    """Constant ``near`` load before ``switch`` seconds from NOW, ``far`` after."""

    def __init__(self, near: float, far: float, switch: float) -> None:
        super().__init__(near)
        self.far = far
        self.switch = switch

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """Peak over the window of the step function."""
        return self.far if end >= NOW + self.switch else self.load


@dataclass(frozen=True)
class Case:
    """One row: inputs, and the expected replicas/placeholders and reasons."""

    name: str
    replicas: int
    placeholders: int
    reason: Reason
    forecast: float | ConstantForecast | None = None
    """The forecast the row decides with: a number is a flat forecast of that load."""
    load: float | None = 400.0
    latency: float | None = 0.1
    current: int = 2
    current_placeholders: int = 0
    ready: int | None = None
    sample_age: float = 0.0
    history: tuple[DecisionRecord, ...] = ()
    target: Target = BASE
    placeholder_reason: Reason | None = None
    placeholders_cold: int = 0
    waiting: float | None = None
    extra_reasons: tuple[Reason, ...] = field(default_factory=tuple)

    def forecast_view(self) -> ConstantForecast | None:
        """The row's forecast as ``decide`` takes it."""
        if self.forecast is None or isinstance(self.forecast, ConstantForecast):
            return self.forecast
        return ConstantForecast(self.forecast)


def rec(age: float, serving: int, total: int | None = None, replicas: int | None = None) -> DecisionRecord:
    """A history record ``age`` seconds old."""
    return record(age, serving, total, replicas, now=NOW)


def with_scaling(**kw: object) -> Target:
    """BASE with some scaling fields replaced."""
    return dataclasses.replace(BASE, scaling=dataclasses.replace(Scaling(), **kw))  # type: ignore[arg-type]


NO_PH = dataclasses.replace(BASE, placeholders=Placeholders(enabled=False))

CASES = [
    Case("steady load, forecast equals need", 2, 0, Reason.NO_CHANGE, forecast=400.0),
    Case("forecast rises within pod start-up: scale up ahead", 3, 0, Reason.PREDICTED_LOAD, forecast=500.0),
    Case("observed load above forecast wins", 4, 0, Reason.OBSERVED_LOAD, forecast=300.0, load=700.0, current=4),
    Case(
        "SLO breached with every replica ready: guard adds 50 % at once",
        3,
        0,
        Reason.SLO_BREACHED,
        forecast=400.0,
        load=150.0,
        latency=0.5,
        current=2,
    ),
    Case(
        "SLO breached while replicas are starting: wait for them, never scale down",
        4,
        0,
        Reason.SLO_BREACHED,
        forecast=400.0,
        load=150.0,
        latency=0.5,
        current=4,
        ready=2,
    ),
    Case(
        "SLO breached: the observed load is sized twice over (2 x 400/s at 200/s)",
        4,
        0,
        Reason.OBSERVED_LOAD,
        forecast=400.0,
        latency=0.5,
        current=2,
        ready=1,
    ),
    Case(
        "a queue is drained within a minute (400/s + 18,000 queued / 60 s = 700/s)",
        4,
        0,
        Reason.OBSERVED_LOAD,
        forecast=400.0,
        waiting=18_000.0,
    ),
    Case(
        "no forecast: reactive value from observed load",
        3,
        0,
        Reason.FORECAST_UNAVAILABLE,
        forecast=None,
        load=600.0,
        current=2,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "missing load never scales down",
        5,
        0,
        Reason.MISSING_DATA_HOLD,
        forecast=100.0,
        load=None,
        current=5,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "NaN load is missing, not zero",
        5,
        0,
        Reason.MISSING_DATA_HOLD,
        forecast=100.0,
        load=float("nan"),
        current=5,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "stale samples never scale down",
        5,
        0,
        Reason.STALE_DATA_HOLD,
        forecast=100.0,
        load=100.0,
        current=5,
        sample_age=600.0,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "future-dated samples reading zero load never scale down",
        5,
        0,
        Reason.STALE_DATA_HOLD,
        forecast=0.0,
        load=0.0,
        current=5,
        sample_age=-3600.0,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "a sample a few seconds ahead (clock drift within the allowance) is fresh",
        4,
        0,
        Reason.SCALE_DOWN_LIMIT,
        forecast=200.0,
        load=200.0,
        current=6,
        sample_age=-30.0,
    ),
    Case(
        "missing data still allows a scale-up from the forecast",
        6,
        0,
        Reason.PREDICTED_LOAD,
        forecast=1200.0,
        load=None,
        current=5,
        extra_reasons=(Reason.MISSING_DATA_HOLD,),
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "scale-down stabilised by a higher recent recommendation",
        5,
        0,
        Reason.SCALE_DOWN_STABILIZED,
        forecast=200.0,
        load=200.0,
        current=6,
        history=(rec(120, 5),),
    ),
    Case(
        "old recommendations fall out of the stabilisation window",
        4,
        0,
        Reason.SCALE_DOWN_LIMIT,
        forecast=200.0,
        load=200.0,
        current=6,
        history=(rec(1000, 6),),
    ),
    Case(
        "scale-down rate limit: at most 2 pods or 20 % per minute",
        8,
        0,
        Reason.SCALE_DOWN_LIMIT,
        forecast=200.0,
        load=200.0,
        current=10,
    ),
    Case(
        "scale-up rate limit: at most 4 pods or 100 % per minute (placeholders cover the rest)",
        6,
        4,
        Reason.SCALE_UP_LIMIT,
        forecast=2000.0,
        load=400.0,
        current=2,
    ),
    Case("max replicas", 12, 0, Reason.TOO_MANY_REPLICAS, forecast=3000.0, load=2400.0, current=12),
    Case("min replicas", 1, 0, Reason.TOO_FEW_REPLICAS, forecast=0.0, load=0.0, current=1),
    Case(
        "no scale-down while the forecast needs capacity back within the cold start",
        4,
        0,
        Reason.FORECAST_NEEDS_CAPACITY_SOON,
        forecast=TimedForecast(200.0, 800.0, switch=600.0),
        load=200.0,
        current=4,
        placeholder_reason=Reason.PLACEHOLDERS_FOR_FORECAST,
    ),
    Case(
        "placeholders cover the forecast over the node cold start",
        2,
        3,
        Reason.NO_CHANGE,
        forecast=TimedForecast(400.0, 1000.0, switch=600.0),
        placeholder_reason=Reason.PLACEHOLDERS_FOR_FORECAST,
    ),
    Case(
        "placeholders capped by their maximum",
        2,
        8,
        Reason.NO_CHANGE,
        forecast=TimedForecast(400.0, 4000.0, switch=600.0),
        placeholder_reason=Reason.PLACEHOLDER_LIMIT,
    ),
    Case(
        "placeholder scale-down is stabilised",
        2,
        2,
        Reason.NO_CHANGE,
        forecast=400.0,
        current_placeholders=3,
        history=(rec(300, 2, total=4),),
        placeholder_reason=Reason.PLACEHOLDERS_STABILIZED,
    ),
    Case(
        "placeholders disabled",
        2,
        0,
        Reason.NO_CHANGE,
        forecast=400.0,
        target=NO_PH,
        placeholder_reason=Reason.PLACEHOLDERS_DISABLED,
    ),
    Case(
        "queued requests wake a target scaled to zero",
        1,
        0,
        Reason.QUEUE_WAKE_UP,
        forecast=0.0,
        load=None,
        current=0,
        waiting=3.0,
        target=with_scaling(min_replicas=0),
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_decide_table(case: Case) -> None:
    """Each row's replicas, placeholders and reasons come out as the safety pipeline says."""
    obs = observation(
        load=case.load,
        current=case.current,
        ready=case.ready,
        placeholders=case.current_placeholders,
        cold=case.placeholders_cold,
        latency=case.latency,
        waiting=case.waiting,
        sample_age=case.sample_age,
        now=NOW,
    )
    d = decide(
        target=case.target,
        observation=obs,
        forecast=case.forecast_view(),
        history=case.history,
        now=NOW,
        loop_interval=30.0,
    )
    assert (d.replicas, d.placeholders) == (case.replicas, case.placeholders), d.steps
    assert d.reason == case.reason, d.steps
    if case.placeholder_reason is not None:
        assert d.placeholder_reason == case.placeholder_reason, d.steps
    assert d.steps, "every decision records its steps"
    for reason in case.extra_reasons:
        assert reason.value in d.reasons, d.steps


def test_cold_placeholder_lengthens_serving_lead_time() -> None:
    """While a placeholder still pulls the image, serving scale-ups look a pull further ahead."""
    forecast = TimedForecast(400.0, 800.0, switch=200.0)  # rise 200 s out
    lt = LeadTimes(node_ready=550.0, pod_start_warm=60.0, pod_start_fresh=420.0)
    obs_warm = observation(load=400.0, current=2, placeholders=2, warm=2, now=NOW)
    warm = decide(
        target=BASE, observation=obs_warm, forecast=forecast, history=(), now=NOW, loop_interval=30.0, lead_times=lt
    )
    cold_cluster = dataclasses.replace(obs_warm.cluster, placeholders_warm=1, placeholders_cold=1)
    cold = decide(
        target=BASE,
        observation=dataclasses.replace(obs_warm, cluster=cold_cluster),
        forecast=forecast,
        history=(),
        now=NOW,
        loop_interval=30.0,
        lead_times=lt,
    )
    assert warm.pod_horizon_seconds == 90.0 and warm.replicas == 2
    assert cold.pod_horizon_seconds == 450.0 and cold.replicas == 4


def test_decision_is_pure_and_serialisable() -> None:
    """The same inputs give the same decision, and to_dict is JSON-ready."""
    import json

    obs = observation(load=300.0, current=2, latency=0.1, now=NOW)
    kwargs = {"target": BASE, "observation": obs, "forecast": ConstantForecast(500.0), "history": ()}
    kwargs |= {"now": NOW, "loop_interval": 30.0}
    a, b = decide(**kwargs), decide(**kwargs)  # type: ignore[arg-type]
    assert a == b
    json.dumps(a.to_dict())
    assert a.record().serving_recommendation == a.serving_recommendation


def test_scale_up_limit_uses_period_base() -> None:
    """Several scale-ups inside one period together stay within the limit."""
    target = with_scaling(scale_up=ScalingRule(max_pods=2, max_percent=0.0, period_seconds=60.0))
    obs = observation(load=2000.0, current=4, now=NOW)
    d = decide(target=target, observation=obs, forecast=None, history=(rec(30, 2),), now=NOW, loop_interval=30.0)
    assert d.replicas == 4 and d.reason == Reason.SCALE_UP_LIMIT
