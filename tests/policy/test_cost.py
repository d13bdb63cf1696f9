"""The cost knob: newsvendor quantile formula, clamp, loader rules and round trip."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.errors import PolicyRejected
from autoscaler.policy import Cost, Forecast, Placeholders, Target, load_policy
from autoscaler.policy.cost import QUANTILE_MAX, QUANTILE_MIN, cost_ratio_for_quantile, newsvendor_quantile
from autoscaler.policy.fields import walk_fields
from autoscaler.policy.schema import Policy

T = "targets:\n  - namespace: llm\n    deployment: vllm\n"


@pytest.mark.parametrize(
    ("u", "c", "g", "expected"),
    [
        (0.15, 1.0, 1, 0.9),  # the section defaults reproduce forecast.quantile's default
        (0.05, 1.0, 1, 0.75),  # 60*0.05 = 3 vs 1: 3/4
        (0.5, 1.0, 1, 30 / 31),
        (2.0, 1.0, 1, 120 / 121),
        (0.15, 0.5, 2, 0.9),  # two GPUs at half the price: same overage cost per replica
        (0.3, 1.0, 2, 0.9),  # two GPUs per replica double the overage
        (0.15, 1.0, 3, 9 / 12),
        (1 / 60, 1.0, 1, 0.5),  # a missed minute-hour costs exactly one idle GPU-hour: the median
    ],
)
def test_newsvendor_quantile_is_the_critical_fractile(u: float, c: float, g: int, expected: float) -> None:
    """q* = 60u / (60u + g c): the overage and underage costs per replica-hour."""
    assert newsvendor_quantile(u, c, g) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("u", "c", "expected"),
    [
        (1e-6, 1.0, QUANTILE_MIN),  # idle GPUs dear, misses cheap: not below the median
        (0.0, 1.0, QUANTILE_MIN),
        (1000.0, 0.001, QUANTILE_MAX),  # misses dear: not beyond what the intervals support
        (1.0, 0.0, QUANTILE_MAX),
    ],
)
def test_quantile_is_clamped_to_the_policy_bounds(u: float, c: float, expected: float) -> None:
    """The result stays within forecast.quantile's bounds, [0.5, 0.999]."""
    assert newsvendor_quantile(u, c) == expected


def test_clamp_bounds_are_the_schema_bounds() -> None:
    """The clamp and forecast.quantile's declared bounds are one pair of numbers."""
    meta = {f.name: f.metadata for f in dataclasses.fields(Forecast)}["quantile"]
    assert (meta["minimum"], meta["maximum"]) == (QUANTILE_MIN, QUANTILE_MAX) == (0.5, 0.999)


@pytest.mark.parametrize(
    ("u", "c", "g"),
    [(-1.0, 1.0, 1), (1.0, -0.1, 1), (math.nan, 1.0, 1), (1.0, math.inf, 1), (0.0, 0.0, 1), (1.0, 1.0, 0)],
)
def test_invalid_costs_raise(u: float, c: float, g: int) -> None:
    """Negative, non-finite or all-zero costs and fewer than one GPU are errors, not quantiles."""
    with pytest.raises(ValueError):
        newsvendor_quantile(u, c, g)


def test_cost_ratio_for_quantile_values() -> None:
    """The default quantile 0.9 says a missed minute costs 0.15 idle GPU-hours."""
    assert cost_ratio_for_quantile(0.9) == pytest.approx(0.15)
    assert cost_ratio_for_quantile(0.75) == pytest.approx(0.05)
    assert cost_ratio_for_quantile(0.9, gpus_per_replica=2) == pytest.approx(0.3)
    for bad in (0.0, 1.0, -0.5, 1.5, math.nan):
        with pytest.raises(ValueError):
            cost_ratio_for_quantile(bad)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(q=st.floats(QUANTILE_MIN, QUANTILE_MAX), g=st.integers(1, 64), c=st.floats(1e-3, 1e3))
def test_ratio_and_quantile_are_inverse_within_the_clamp(q: float, g: int, c: float) -> None:
    """Turning a quantile into costs and back gives the quantile again."""
    u = cost_ratio_for_quantile(q, g) * c
    assert newsvendor_quantile(u, c, g) == pytest.approx(q, abs=1e-9)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(u=st.floats(0, 1e6), extra=st.floats(0, 1e6), c=st.floats(1e-6, 1e6), g=st.integers(1, 64))
def test_dearer_misses_never_lower_the_quantile(u: float, extra: float, c: float, g: int) -> None:
    """Raising the cost of an under-provisioned minute never asks for less capacity."""
    assert newsvendor_quantile(u + extra, c, g) >= newsvendor_quantile(u, c, g)


# ---------------------------------------------------------------------------------------
# Policy section and loader
# ---------------------------------------------------------------------------------------


def test_cost_sets_the_forecast_quantile() -> None:
    """With a cost section the loader writes q* into forecast.quantile; the costs stay on the target."""
    target = load_policy(T + "    cost: {underProvisionedMinute: 0.5, idleGpuHour: 1}\n").targets[0]
    assert target.forecast.quantile == pytest.approx(30 / 31)
    assert target.cost == Cost(under_provisioned_minute=0.5, idle_gpu_hour=1.0)


def test_gpus_per_replica_come_from_placeholders_gpus_per_pod() -> None:
    """Idle cost per replica-hour is gpusPerPod idle GPU-hours."""
    target = load_policy(
        T + "    cost: {underProvisionedMinute: 0.5, idleGpuHour: 1}\n    placeholders: {gpusPerPod: 4}\n"
    ).targets[0]
    assert target.forecast.quantile == pytest.approx(30 / 34)


def test_empty_cost_section_keeps_the_default_quantile() -> None:
    """Both fields are optional; their defaults give the default quantile 0.9."""
    target = load_policy(T + "    cost: {}\n").targets[0]
    assert target.forecast.quantile == pytest.approx(0.9)
    assert load_policy(T + "    cost: {idleGpuHour: 0.5}\n").targets[0].forecast.quantile == pytest.approx(9 / 9.5)


def test_no_cost_section_leaves_the_quantile_alone() -> None:
    """Without cost (or with cost: null) forecast.quantile is used as written."""
    assert load_policy(T + "    forecast: {quantile: 0.8}\n").targets[0].forecast.quantile == 0.8
    target = load_policy(T + "    cost: null\n    forecast: {quantile: 0.8}\n").targets[0]
    assert target.cost is None and target.forecast.quantile == 0.8


def test_cost_quantile_is_clamped_in_the_policy() -> None:
    """Extreme costs load, at the clamp."""
    cheap = load_policy(T + "    cost: {underProvisionedMinute: 0.000001, idleGpuHour: 1000}\n").targets[0]
    dear = load_policy(T + "    cost: {underProvisionedMinute: 1000, idleGpuHour: 0.001}\n").targets[0]
    assert (cheap.forecast.quantile, dear.forecast.quantile) == (QUANTILE_MIN, QUANTILE_MAX)


def _errors(text: str) -> dict[str, str]:
    with pytest.raises(PolicyRejected) as info:
        load_policy(text)
    return {e.path: e.reason for e in info.value.errors}


def test_cost_and_quantile_together_are_rejected_with_the_path() -> None:
    """Two spellings of one setting in one place: reject, naming the target's cost section."""
    errors = _errors(T + "    cost: {underProvisionedMinute: 0.5}\n    forecast: {quantile: 0.95}\n")
    assert list(errors) == ["targets[0].cost"]
    assert "forecast.quantile" in errors["targets[0].cost"]


def test_cost_and_quantile_together_in_defaults_are_rejected() -> None:
    """The same rule applies to the defaults block, at its own path."""
    errors = _errors("defaults: {cost: {idleGpuHour: 2}, forecast: {quantile: 0.95}}\n" + T)
    assert "defaults.cost" in errors


def test_a_targets_own_setting_wins_over_the_other_from_defaults() -> None:
    """defaults' cost vs a target's quantile (and vice versa): the target's own setting is used."""
    policy = load_policy(
        "defaults: {cost: {underProvisionedMinute: 0.5, idleGpuHour: 1}}\n"
        "targets:\n"
        "  - {namespace: a, deployment: x}\n"
        "  - {namespace: b, deployment: y, forecast: {quantile: 0.8}}\n"
    )
    assert [t.forecast.quantile for t in policy.targets] == [pytest.approx(30 / 31), 0.8]
    assert policy.targets[1].cost is None
    policy = load_policy(
        "defaults: {forecast: {quantile: 0.8, model: naive}}\n"
        "targets:\n"
        "  - {namespace: a, deployment: x}\n"
        "  - {namespace: b, deployment: y, cost: {underProvisionedMinute: 0.05}}\n"
    )
    assert [t.forecast.quantile for t in policy.targets] == [0.8, pytest.approx(0.75)]
    assert policy.targets[1].forecast.model == "naive"  # the rest of defaults.forecast still applies


@pytest.mark.parametrize(
    ("snippet", "path", "reason"),
    [
        ("cost: {idleGpuHour: 0}", "targets[0].cost.idleGpuHour", "greater than 0"),
        ("cost: {underProvisionedMinute: -1}", "targets[0].cost.underProvisionedMinute", "greater than 0"),
        ("cost: {underProvisionedMinute: .nan}", "targets[0].cost.underProvisionedMinute", "finite"),
        ("cost: {idleGpuHours: 1}", "targets[0].cost.idleGpuHours", "unknown field"),
        ("cost: 3", "targets[0].cost", "expected a mapping"),
    ],
)
def test_bad_cost_fields_are_rejected_at_their_path(snippet: str, path: str, reason: str) -> None:
    """Cost fields are ordinary schema fields: typed, bounded, reported with their path."""
    errors = _errors(T + "    " + snippet + "\n")
    assert path in errors and reason in errors[path], errors


def test_cost_round_trips_through_the_schema() -> None:
    """A Target built in code derives the same quantile as the loader, and replace() keeps it."""
    loaded = load_policy(
        T + "    cost: {underProvisionedMinute: 2, idleGpuHour: 1}\n    placeholders: {gpusPerPod: 2}\n"
    ).targets[0]
    built = Target(
        namespace="llm",
        deployment="vllm",
        cost=Cost(under_provisioned_minute=2.0, idle_gpu_hour=1.0),
        placeholders=Placeholders(gpus_per_pod=2),
    )
    assert built == loaded
    assert built.forecast.quantile == pytest.approx(120 / 122)
    again = dataclasses.replace(built, mode="enforce")
    assert again.forecast.quantile == built.forecast.quantile and again.cost == built.cost
    assert dataclasses.replace(built, cost=None).forecast.quantile == built.forecast.quantile


def test_cost_fields_are_in_the_schema_walk() -> None:
    """The generated reference and the fuzzer see the new section (they both use walk_fields)."""
    paths = {path for path, _, _ in walk_fields(Policy)}
    assert {"targets[].cost", "targets[].cost.underProvisionedMinute", "targets[].cost.idleGpuHour"} <= paths
    assert {"targets[].scaling.idleForecastFraction", "targets[].scaling.idleObservedFraction"} <= paths
