"""Policy loading: defaults, every rejection names its field path, untrusted input is safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.errors import PolicyRejected
from autoscaler.policy import load_policy, load_policy_file
from autoscaler.policy.loader import MAX_POLICY_BYTES

EXAMPLE = Path(__file__).resolve().parents[2] / "autoscaler" / "policy" / "example-gpt2.yaml"

MINIMAL = "targets: [{namespace: llm, deployment: vllm}]"


def test_minimal_policy_gets_documented_defaults() -> None:
    """A target with only its identity gets the seed deployment's defaults."""
    policy = load_policy(MINIMAL)
    target = policy.targets[0]
    assert target.key == "llm/vllm"
    assert target.mode == "dry-run"
    assert target.slo.latency_seconds == 0.2
    assert target.forecast.model == "auto" and target.forecast.quantile == 0.9
    assert target.cold_start.total_seconds == pytest.approx(970.0)
    assert policy.loop_interval_seconds == 30.0


def test_example_policy_is_valid() -> None:
    """The shipped gpt2 example validates and is in dry-run."""
    policy = load_policy_file(EXAMPLE)
    assert policy.targets[0].deployment == "vllm-gpt2"
    assert policy.targets[0].mode == "dry-run"


def test_defaults_block_merges_into_targets() -> None:
    """``defaults`` applies to every target; a target's own fields win."""
    policy = load_policy(
        "defaults: {mode: enforce, scaling: {maxReplicas: 20}}\n"
        "targets:\n"
        " - {namespace: a, deployment: x}\n"
        " - {namespace: b, deployment: y, scaling: {maxReplicas: 5}}\n"
    )
    assert [t.mode for t in policy.targets] == ["enforce", "enforce"]
    assert [t.scaling.max_replicas for t in policy.targets] == [20, 5]


BAD = [
    ("targets: [{namespace: llm}]", "targets[0].deployment", "required"),
    (
        "targets: [{namespace: llm, deployment: v, scaling: {maxReplicas: -1}}]",
        "targets[0].scaling.maxReplicas",
        "at least 1",
    ),
    (
        "targets: [{namespace: llm, deployment: v, scaling: {maxReplicas: 'ten'}}]",
        "targets[0].scaling.maxReplicas",
        "expected a number",
    ),
    (
        "targets: [{namespace: llm, deployment: v, scaling: {minReplicas: 5, maxReplicas: 2}}]",
        "targets[0].scaling.minReplicas",
        "must not exceed",
    ),
    (
        "targets: [{namespace: llm, deployment: v, forecast: {model: prophet}}]",
        "targets[0].forecast.model",
        "unknown value 'prophet'",
    ),
    (
        "targets: [{namespace: llm, deployment: v, forecast: {quantile: 1.5}}]",
        "targets[0].forecast.quantile",
        "at most",
    ),
    (
        "targets: [{namespace: llm, deployment: v, forecast: {resolutionSeconds: 420}}]",
        "targets[0].forecast.seasons[0]",
        "not a whole number",
    ),
    ("targets: [{namespace: llm, deployment: v, mode: yolo}]", "targets[0].mode", "one of"),
    (
        "targets: [{namespace: llm, deployment: v, placeholders: {enabled: 'yes'}}]",
        "targets[0].placeholders.enabled",
        "true or false",
    ),
    (
        "targets: [{namespace: llm, deployment: v, slo: {latencySeconds: .nan}}]",
        "targets[0].slo.latencySeconds",
        "finite",
    ),
    ("targets: [{namespace: llm, deployment: v, typo: 1}]", "targets[0].typo", "unknown field"),
    ("targets: [{namespace: LLM!, deployment: v}]", "targets[0].namespace", "not a valid Kubernetes name"),
    ("targets: [{namespace: a, deployment: v}, {namespace: a, deployment: v}]", "targets[1]", "already listed"),
    ("targets: []", "targets", "at least one"),
    ("targets: {namespace: a}", "targets", "expected a list"),
    ("- just a list", "", "must be a YAML mapping"),
    ("targets: [", "", "not valid YAML"),
    ("a: &x [1]\nb: *x\ntargets: []", "", "anchors are not allowed"),
]


@pytest.mark.parametrize(("text", "path", "reason"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_rejections_name_the_field_path(text: str, path: str, reason: str) -> None:
    """Every invalid document is rejected with the offending field's path and a reason."""
    with pytest.raises(PolicyRejected) as info:
        load_policy(text)
    paths = {e.path: e.reason for e in info.value.errors}
    assert path in paths, paths
    assert reason in paths[path]


def test_all_problems_are_reported_at_once() -> None:
    """Two independent mistakes give two errors, not one."""
    with pytest.raises(PolicyRejected) as info:
        load_policy("targets: [{namespace: a, deployment: v, mode: x, scaling: {maxReplicas: 0}}]")
    assert {e.path for e in info.value.errors} == {"targets[0].mode", "targets[0].scaling.maxReplicas"}


def test_oversized_document_is_rejected_before_parsing() -> None:
    """Documents above the size limit are refused without being parsed."""
    with pytest.raises(PolicyRejected, match="limit"):
        load_policy("#" * (MAX_POLICY_BYTES + 1))


def test_deep_nesting_is_rejected() -> None:
    """Pathologically nested YAML is refused with a clear error."""
    with pytest.raises(PolicyRejected, match=r"nesting|not valid"):
        load_policy("targets: " + "[" * 200 + "]" * 200)
