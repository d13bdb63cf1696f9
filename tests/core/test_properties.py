"""Hypothesis properties of ``decide`` that tables cannot enumerate."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.decide import decide
from autoscaler.core.forecast_view import ConstantForecast
from autoscaler.core.types import DecisionRecord, Observation
from autoscaler.policy.schema import Placeholders, Scaling, Target
from tests.core.builders import observation

NOW = 5_000_000.0

loads = st.one_of(st.none(), st.just(math.nan), st.floats(0, 1e5, allow_nan=False))
forecasts = st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False))


@st.composite
def targets(draw: st.DrawFn) -> Target:
    """Random but valid targets."""
    lo = draw(st.integers(0, 10))
    hi = draw(st.integers(max(lo, 1), 40))
    scaling = Scaling(
        min_replicas=lo, max_replicas=hi, scale_down_stabilization_seconds=draw(st.sampled_from([0.0, 300.0, 600.0]))
    )
    ph = Placeholders(enabled=draw(st.booleans()), max=draw(st.integers(0, 20)))
    return Target(namespace="ns", deployment="d", scaling=scaling, placeholders=ph)


@st.composite
def histories(draw: st.DrawFn) -> tuple[DecisionRecord, ...]:
    """Up to ten earlier decisions within the last 20 minutes."""
    out = []
    for _ in range(draw(st.integers(0, 10))):
        r = draw(st.integers(0, 40))
        out.append(
            DecisionRecord(
                time=NOW - draw(st.floats(1, 1200)),
                serving_recommendation=r,
                total_recommendation=r + draw(st.integers(0, 5)),
                replicas=r,
                placeholders=0,
            )
        )
    return tuple(out)


def observe(
    load: float | None, current: int, placeholders: int, *, stale: bool = False, latency: float | None = 0.1
) -> Observation:
    """An observation with the given load and sizes."""
    return observation(
        load=load, current=current, placeholders=placeholders, latency=latency, sample_age=3600 if stale else 0, now=NOW
    )


@settings(max_examples=300, deadline=None)
@given(
    target=targets(),
    load=loads,
    forecast=forecasts,
    history=histories(),
    current=st.integers(0, 40),
    placeholders=st.integers(0, 20),
    latency=st.floats(0.01, 100),
)
def test_bounds_always_hold(
    target: Target,
    load: float | None,
    forecast: float | None,
    history: tuple[DecisionRecord, ...],
    current: int,
    placeholders: int,
    latency: float,
) -> None:
    """Serving replicas stay within [min, max]; placeholders within their cap and the fleet max."""
    d = decide(
        target=target,
        observation=observe(load, current, placeholders, latency=latency),
        forecast=None if forecast is None else ConstantForecast(forecast),
        history=history,
        now=NOW,
        loop_interval=30.0,
    )
    assert target.scaling.min_replicas <= d.replicas <= target.scaling.max_replicas
    assert 0 <= d.placeholders <= target.placeholders.max
    assert d.placeholders == 0 or d.replicas + d.placeholders <= target.scaling.max_replicas
    if not target.placeholders.enabled:
        assert d.placeholders == 0


@settings(max_examples=300, deadline=None)
@given(
    target=targets(),
    forecast=forecasts,
    history=histories(),
    data=st.data(),
    missing=st.sampled_from(["none", "nan", "stale"]),
)
def test_no_scale_down_on_missing_data(
    target: Target, forecast: float | None, history: tuple[DecisionRecord, ...], data: st.DataObject, missing: str
) -> None:
    """Missing, NaN or stale load never lowers serving replicas nor total GPU capacity."""
    current = data.draw(st.integers(target.scaling.min_replicas, target.scaling.max_replicas))
    ph = data.draw(st.integers(0, max(0, min(target.placeholders.max, target.scaling.max_replicas - current))))
    if not target.placeholders.enabled:
        ph = 0
    load = {"none": None, "nan": math.nan, "stale": 10.0}[missing]
    d = decide(
        target=target,
        observation=observe(load, current, ph, stale=missing == "stale"),
        forecast=None if forecast is None else ConstantForecast(forecast),
        history=history,
        now=NOW,
        loop_interval=30.0,
    )
    assert d.replicas >= current
    assert d.replicas + d.placeholders >= current + ph
    assert not d.data_ok


@settings(max_examples=300, deadline=None)
@given(
    target=targets(),
    load=loads,
    low=st.floats(0, 1e4),
    extra=st.floats(0, 1e4),
    history=histories(),
    current=st.integers(0, 40),
    placeholders=st.integers(0, 20),
)
def test_more_forecast_never_means_fewer_replicas(
    target: Target,
    load: float | None,
    low: float,
    extra: float,
    history: tuple[DecisionRecord, ...],
    current: int,
    placeholders: int,
) -> None:
    """Raising the forecast never lowers serving replicas nor total capacity."""
    obs = observe(load, current, placeholders)
    common = {"target": target, "observation": obs, "history": history, "now": NOW, "loop_interval": 30.0}
    a = decide(forecast=ConstantForecast(low), **common)  # type: ignore[arg-type]
    b = decide(forecast=ConstantForecast(low + extra), **common)  # type: ignore[arg-type]
    assert b.replicas >= a.replicas
    assert b.replicas + b.placeholders >= a.replicas + a.placeholders


@settings(max_examples=100, deadline=None)
@given(target=targets(), forecast=forecasts, current=st.integers(0, 40))
def test_decide_is_deterministic(target: Target, forecast: float | None, current: int) -> None:
    """Same inputs, same decision: there is no hidden state or clock."""
    kwargs = {
        "target": target,
        "observation": observe(100.0, current, 0),
        "history": (),
        "now": NOW,
        "loop_interval": 30.0,
        "forecast": None if forecast is None else ConstantForecast(forecast),
    }
    assert decide(**kwargs) == decide(**kwargs)  # type: ignore[arg-type]
