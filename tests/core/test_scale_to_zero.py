"""Predictive scale-to-zero and scale-from-zero in ``decide`` (``scaling.minReplicas: 0``).

Table rows for the idle gate (every condition, and what blocks it), rows for a target at
zero, lead-time checks that capacity is back one cold start before forecast load, and
hypothesis properties: unknown data never empties a running target.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.decide import decide
from autoscaler.core.forecast_view import ConstantForecast, ForecastView, PredictionView
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.core.types import Decision, DecisionRecord, Reason
from autoscaler.policy.schema import Placeholders, Scaling, Target
from models.base import Prediction
from tests.core.builders import observation, record

NOW = 2_000_000.0
LOOP = 30.0
ZERO = Target(namespace="llm", deployment="vllm", scaling=Scaling(min_replicas=0))
#: perReplica 200: a forecast up to 50/s (idleForecastFraction 0.25) is idle ...
IDLE_FC = ZERO.scaling.idle_forecast_fraction * ZERO.capacity.per_replica
#: ... and observed load up to 2/s (idleObservedFraction 0.01) is no traffic.
IDLE_OBS = ZERO.scaling.idle_observed_fraction * ZERO.capacity.per_replica
LT = LeadTimes.from_policy(ZERO.cold_start)
NODE_H = LT.total + LOOP  # 1000 s with the policy defaults
POD_H = LT.pod_start_warm + LOOP  # 90 s


class Rise:
    """``before`` until ``NOW + at`` seconds, ``after`` from then on (a step in the forecast)."""

    model = "rise"

    def __init__(self, before: float, after: float, at: float) -> None:
        self.before, self.after, self.at = before, after, NOW + at

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """The step function's highest value over ``[start, end]``."""
        return self.after if end >= self.at else self.before


class Unknown:
    """A forecast that covers nothing (``peak`` is None)."""

    model = "unknown"

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """Never covered."""
        return None


def zero_target(**scaling: object) -> Target:
    """ZERO with some scaling fields replaced."""
    return dataclasses.replace(ZERO, scaling=dataclasses.replace(ZERO.scaling, **scaling))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    """One row: inputs, and the expected replicas/placeholders and reasons."""

    name: str
    replicas: int
    reason: Reason
    forecast: ForecastView | None = field(default_factory=lambda: ConstantForecast(0.0))
    load: float | None = 0.0
    waiting: float | None = 0.0
    latency: float | None = None
    current: int = 1
    current_placeholders: int = 0
    sample_age: float = 0.0
    history: tuple[DecisionRecord, ...] = ()
    target: Target = ZERO
    placeholders: int | None = 0
    placeholder_reason: Reason | None = None
    extra_reasons: tuple[Reason, ...] = ()


def rec(age: float, serving: int, total: int | None = None) -> DecisionRecord:
    """A history record ``age`` seconds old."""
    return record(age, serving, total, now=NOW)


CASES = [
    # --- a running target: the idle gate -------------------------------------------------
    Case("idle: no load, no queue, forecast zero over the node cold start", 0, Reason.IDLE_FORECAST_SCALE_TO_ZERO),
    Case(
        "idle: forecast up to idleForecastFraction, load up to idleObservedFraction of a replica",
        0,
        Reason.IDLE_FORECAST_SCALE_TO_ZERO,
        forecast=ConstantForecast(IDLE_FC),
        load=IDLE_OBS,
    ),
    Case(
        "the drop waits out the scale-down stabilisation window",
        1,
        Reason.SCALE_DOWN_STABILIZED,
        history=(rec(300, 1),),
        extra_reasons=(Reason.IDLE_FORECAST_SCALE_TO_ZERO,),
    ),
    Case(
        "idle once the window only holds idle recommendations",
        0,
        Reason.IDLE_FORECAST_SCALE_TO_ZERO,
        history=(rec(300, 0, total=0), rec(900, 1)),
    ),
    Case(
        "several replicas: scale-down rate limit still applies on the way to zero",
        1,
        Reason.SCALE_DOWN_LIMIT,
        current=3,
        extra_reasons=(Reason.IDLE_FORECAST_SCALE_TO_ZERO,),
    ),
    Case(
        "placeholders are released too when idle",
        0,
        Reason.IDLE_FORECAST_SCALE_TO_ZERO,
        current_placeholders=2,
        placeholders=0,
        placeholder_reason=Reason.PLACEHOLDERS_FOR_FORECAST,
    ),
    Case("observed load above idleObservedFraction keeps one", 1, Reason.OBSERVED_LOAD, load=IDLE_OBS * 1.5),
    Case(
        "a trickle blocks the drop even when the forecast is idle",
        1,
        Reason.OBSERVED_LOAD,
        forecast=ConstantForecast(IDLE_FC / 2),
        load=IDLE_OBS * 2,
    ),
    Case(
        "forecast load within the node cold start keeps one (and asks for nodes)",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        forecast=Rise(0.0, 500.0, at=600.0),
        placeholders=2,
        placeholder_reason=Reason.PLACEHOLDERS_FOR_FORECAST,
    ),
    Case(
        "forecast load just beyond the node cold start: idle now",
        0,
        Reason.IDLE_FORECAST_SCALE_TO_ZERO,
        forecast=Rise(0.0, 500.0, at=NODE_H + 60.0),
    ),
    Case(
        "forecast just above the threshold keeps one",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        forecast=Rise(0.0, IDLE_FC * 1.01, at=600.0),
        placeholders=0,
    ),
    Case("a queued request keeps one", 1, Reason.OBSERVED_LOAD, waiting=3.0),
    Case("an unknown queue keeps one", 1, Reason.SCALE_TO_ZERO_BLOCKED, waiting=None),
    Case(
        "missing load keeps one",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        load=None,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
        extra_reasons=(Reason.MISSING_DATA_HOLD,),
    ),
    Case(
        "NaN load keeps one",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        load=math.nan,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
        extra_reasons=(Reason.MISSING_DATA_HOLD,),
    ),
    Case(
        "stale samples keep one",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        sample_age=600.0,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
        extra_reasons=(Reason.STALE_DATA_HOLD,),
    ),
    Case(
        "no forecast keeps one",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        forecast=None,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "an uncovered forecast keeps one",
        1,
        Reason.SCALE_TO_ZERO_BLOCKED,
        forecast=Unknown(),
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case("a breached SLO keeps (and adds) replicas", 2, Reason.SLO_BREACHED, load=5.0, latency=0.5),
    Case(
        "idle fractions 0: only exact zeros are idle",
        1,
        Reason.NO_CHANGE,
        forecast=ConstantForecast(0.5),
        target=zero_target(idle_forecast_fraction=0.0, idle_observed_fraction=0.0),
        placeholders=0,
    ),
    Case(
        "idle fractions 0 with exact zeros: idle",
        0,
        Reason.IDLE_FORECAST_SCALE_TO_ZERO,
        target=zero_target(idle_forecast_fraction=0.0, idle_observed_fraction=0.0),
    ),
    Case(
        "minReplicas 1 never goes to zero, however idle",
        1,
        Reason.TOO_FEW_REPLICAS,
        target=dataclasses.replace(ZERO, scaling=Scaling(min_replicas=1)),
    ),
    # --- a target at zero -----------------------------------------------------------------
    Case("at zero and idle: stay, no nodes", 0, Reason.NO_CHANGE, current=0),
    Case(
        "at zero, idle below the threshold: a tiny forecast holds no GPU node",
        0,
        Reason.NO_CHANGE,
        current=0,
        forecast=ConstantForecast(IDLE_FC / 2),
        placeholders=0,
    ),
    Case(
        "at zero, load returns within the node cold start: placeholders first",
        0,
        Reason.NO_CHANGE,
        current=0,
        forecast=Rise(0.0, 500.0, at=600.0),
        placeholders=3,
        placeholder_reason=Reason.FORECAST_WAKE_UP,
    ),
    Case(
        "at zero, load returns within the pod start-up: serving replicas",
        3,
        Reason.FORECAST_WAKE_UP,
        current=0,
        current_placeholders=3,
        forecast=Rise(0.0, 500.0, at=60.0),
        placeholders=0,
    ),
    Case(
        "at zero, arrivals wake it reactively (forecast missed)",
        1,
        Reason.OBSERVED_LOAD,
        current=0,
        load=2.0,
    ),
    Case(
        "at zero, a queued request wakes it (the reactive fallback)",
        1,
        Reason.QUEUE_WAKE_UP,
        current=0,
        load=None,
        waiting=3.0,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
    ),
    Case(
        "at zero with unknown data: hold at zero, no spurious wake-up",
        0,
        Reason.NO_CHANGE,
        current=0,
        load=None,
        waiting=None,
        placeholder_reason=Reason.PLACEHOLDERS_HOLD,
        extra_reasons=(Reason.MISSING_DATA_HOLD,),
    ),
    Case(
        "at zero with unknown data, the forecast still wakes it",
        3,
        Reason.FORECAST_WAKE_UP,
        current=0,
        load=None,
        waiting=None,
        forecast=Rise(0.0, 500.0, at=60.0),
        placeholders=None,
    ),
]


def run(
    case_target: Target,
    *,
    forecast: ForecastView | None,
    load: float | None,
    waiting: float | None = 0.0,
    current: int,
    placeholders: int = 0,
    warm: int | None = None,
    latency: float | None = None,
    sample_age: float = 0.0,
    history: tuple[DecisionRecord, ...] = (),
    now: float = NOW,
    lead_times: LeadTimes | None = None,
) -> Decision:
    """One decision with the given observation."""
    obs = observation(
        load=load,
        current=current,
        placeholders=placeholders,
        warm=placeholders if warm is None else warm,
        latency=latency,
        waiting=waiting,
        sample_age=sample_age,
        now=now,
    )
    return decide(
        target=case_target,
        observation=obs,
        forecast=forecast,
        history=history,
        now=now,
        loop_interval=LOOP,
        lead_times=lead_times,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_scale_to_zero_table(case: Case) -> None:
    """Each row's replicas, placeholders and reasons."""
    d = run(
        case.target,
        forecast=case.forecast,
        load=case.load,
        waiting=case.waiting,
        current=case.current,
        placeholders=case.current_placeholders,
        latency=case.latency,
        sample_age=case.sample_age,
        history=case.history,
    )
    assert d.replicas == case.replicas, d.steps
    assert d.reason == case.reason, d.steps
    if case.placeholders is not None:
        assert d.placeholders == case.placeholders, d.steps
    if case.placeholder_reason is not None:
        assert d.placeholder_reason == case.placeholder_reason, d.steps
    for reason in case.extra_reasons:
        assert reason.value in d.reasons, d.steps


def test_blocked_step_says_why() -> None:
    """ScaleToZeroBlocked names every failed idle condition, for the decision log."""
    d = run(ZERO, forecast=Unknown(), load=0.0, waiting=None, current=1)
    step = next(s for s in d.steps if s.reason == Reason.SCALE_TO_ZERO_BLOCKED)
    assert "queue unknown" in step.detail and "no forecast" in step.detail
    d = run(ZERO, forecast=ConstantForecast(0.0), load=None, waiting=5.0, current=1, sample_age=600.0)
    step = next(s for s in d.steps if s.reason == Reason.SCALE_TO_ZERO_BLOCKED)
    assert "load unknown or stale" in step.detail


def _first_request_times(
    forecast: ForecastView, *, lead_times: LeadTimes, start: float, end: float, placeholders_enabled: bool = True
) -> tuple[float | None, float | None]:
    """Step a target at zero through time (the cluster follows each decision, placeholders warm).

    Returns when placeholders and when serving replicas were first asked for.
    """
    target = ZERO if placeholders_enabled else dataclasses.replace(ZERO, placeholders=Placeholders(enabled=False))
    current = ph = 0
    history: list[DecisionRecord] = []
    first_ph = first_serving = None
    t = start
    while t <= end:
        d = run(target, forecast=forecast, load=0.0, current=current, placeholders=ph, now=t, lead_times=lead_times)
        if d.placeholders > 0 and first_ph is None:
            first_ph = t
            assert d.placeholder_reason == Reason.FORECAST_WAKE_UP, d.steps
        if d.replicas > 0 and first_serving is None:
            first_serving = t
            assert d.reason == Reason.FORECAST_WAKE_UP, d.steps
        history.append(d.record())
        current, ph = d.replicas, d.placeholders
        t += LOOP
    return first_ph, first_serving


@pytest.mark.parametrize("lead_times", [LT, LeadTimes(node_ready=300.0, pod_start_warm=90.0, pod_start_fresh=400.0)])
@pytest.mark.parametrize("offset", [0.0, 7.0, 29.0])
def test_capacity_returns_one_cold_start_before_forecast_load(lead_times: LeadTimes, offset: float) -> None:
    """Load forecast from T: nodes are asked for by T - node cold start, serving by T - pod start."""
    at = 3 * 3600.0 + offset
    first_ph, first_serving = _first_request_times(
        Rise(0.0, 600.0, at=at), lead_times=lead_times, start=NOW, end=NOW + at
    )
    load_returns = NOW + at
    assert first_ph is not None and first_serving is not None
    assert first_ph <= load_returns - lead_times.total
    assert first_ph > load_returns - lead_times.total - 2 * LOOP  # not needlessly early
    assert first_serving <= load_returns - lead_times.pod_start_warm
    assert first_serving > load_returns - lead_times.pod_start_warm - 2 * LOOP


def test_without_placeholders_serving_returns_a_full_cold_start_ahead() -> None:
    """With placeholders off, serving replicas themselves are asked for a whole cold start ahead."""
    at = 2 * 3600.0
    first_ph, first_serving = _first_request_times(
        Rise(0.0, 600.0, at=at), lead_times=LT, start=NOW, end=NOW + at, placeholders_enabled=False
    )
    assert first_ph is None and first_serving is not None
    assert first_serving <= NOW + at - LT.total


def test_wake_up_from_a_model_prediction() -> None:
    """The same lead with a real PredictionView: zeros for 3 h, then 300/s (5-minute buckets)."""
    step = 300.0
    n = 48
    mean = np.zeros(n)
    rise_at = 36  # bucket index: load from NOW + 3 h
    mean[rise_at:] = 300.0
    prediction = Prediction(start=NOW, step=step, mean=mean, quantiles={0.5: mean, 0.9: mean * 1.2}, model="test")
    first_ph, first_serving = _first_request_times(
        PredictionView(prediction), lead_times=LT, start=NOW, end=NOW + rise_at * step
    )
    load_returns = NOW + rise_at * step
    assert first_ph is not None and first_ph <= load_returns - LT.total
    assert first_serving is not None and first_serving <= load_returns - LT.pod_start_warm


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

forecasts = st.one_of(st.none(), st.floats(0, 50), st.floats(0, 1e4))


@st.composite
def zero_targets(draw: st.DrawFn) -> Target:
    """Targets with minReplicas 0 and random idle thresholds, bounds and placeholders."""
    scaling = Scaling(
        min_replicas=0,
        max_replicas=draw(st.integers(1, 40)),
        idle_forecast_fraction=draw(st.sampled_from([0.0, 0.01, 0.25, 0.5, 1.0])),
        idle_observed_fraction=draw(st.sampled_from([0.0, 0.01, 0.1, 1.0])),
        scale_down_stabilization_seconds=draw(st.sampled_from([0.0, 600.0])),
    )
    ph = Placeholders(enabled=draw(st.booleans()), max=draw(st.integers(0, 20)))
    return Target(namespace="ns", deployment="d", scaling=scaling, placeholders=ph)


@settings(max_examples=400, deadline=None)
@given(
    target=zero_targets(),
    forecast=forecasts,
    missing=st.sampled_from(["none", "nan", "stale"]),
    current=st.integers(1, 40),
    waiting=st.one_of(st.none(), st.just(0.0), st.floats(0, 100)),
    latency=st.one_of(st.none(), st.floats(0.01, 10)),
)
def test_unknown_data_never_empties_a_running_target(
    target: Target, forecast: float | None, missing: str, current: int, waiting: float | None, latency: float | None
) -> None:
    """minReplicas 0 with missing, NaN or stale load: never zero replicas while some run."""
    current = min(current, target.scaling.max_replicas)
    d = run(
        target,
        forecast=None if forecast is None else ConstantForecast(forecast),
        load={"none": None, "nan": math.nan, "stale": 0.0}[missing],
        waiting=waiting,
        latency=latency,
        current=current,
        sample_age=3600.0 if missing == "stale" else 0.0,
    )
    assert d.replicas >= 1
    assert Reason.IDLE_FORECAST_SCALE_TO_ZERO.value not in d.reasons


@settings(max_examples=400, deadline=None)
@given(
    target=zero_targets(),
    forecast=st.one_of(st.none(), st.floats(0, 1e4)),
    load=st.one_of(st.none(), st.just(math.nan), st.floats(0, 1e4)),
    waiting=st.one_of(st.none(), st.floats(0, 100)),
    current=st.integers(1, 40),
    stale=st.booleans(),
)
def test_zero_only_through_the_idle_gate(
    target: Target, forecast: float | None, load: float | None, waiting: float | None, current: int, stale: bool
) -> None:
    """A running target reaches zero only with fresh idle load, no queue and an idle forecast."""
    d = run(
        target,
        forecast=None if forecast is None else ConstantForecast(forecast),
        load=load,
        waiting=waiting,
        current=min(current, target.scaling.max_replicas),
        sample_age=3600.0 if stale else 0.0,
    )
    if d.replicas == 0:
        cap = target.capacity.per_replica
        assert d.reason == Reason.IDLE_FORECAST_SCALE_TO_ZERO
        assert d.data_ok and not stale
        assert d.observed_load is not None and d.observed_load <= target.scaling.idle_observed_fraction * cap
        assert waiting is not None and waiting < 1
        predicted = d.predicted_load_node_horizon
        assert predicted is not None and predicted <= target.scaling.idle_forecast_fraction * cap
        assert d.placeholders == 0


@settings(max_examples=300, deadline=None)
@given(
    target=zero_targets(),
    low=st.floats(0, 1e4),
    extra=st.floats(0, 1e4),
    load=st.one_of(st.none(), st.floats(0, 1e3)),
    current=st.integers(0, 40),
    placeholders=st.integers(0, 20),
)
def test_more_forecast_never_means_less_capacity_with_zero_allowed(
    target: Target, low: float, extra: float, load: float | None, current: int, placeholders: int
) -> None:
    """The idle threshold keeps decide monotone in the forecast."""
    common = {"load": load, "current": current, "placeholders": placeholders}
    a = run(target, forecast=ConstantForecast(low), **common)  # type: ignore[arg-type]
    b = run(target, forecast=ConstantForecast(low + extra), **common)  # type: ignore[arg-type]
    assert b.replicas >= a.replicas
    assert b.replicas + b.placeholders >= a.replicas + a.placeholders
