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
    assert target.placeholders.backend == "pods"
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
        "targets: [{namespace: llm, deployment: v, placeholders: {backend: capacitybuffer}}]",
        "targets[0].placeholders.backend",
        "must be one of pods, capacityBuffer; got 'capacitybuffer'",
    ),
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
    ("targets: [{namespace: LLM!, deployment: v}]", "targets[0].namespace", "is not a valid name: a DNS-1123 label"),
    # Names follow the API server's rules for their kind: a namespace is a label, a Deployment a subdomain.
    ("targets: [{namespace: vllm.prod, deployment: v}]", "targets[0].namespace", "a DNS-1123 label"),
    ("targets: [{namespace: a, deployment: a..b}]", "targets[0].deployment", "a DNS-1123 subdomain"),
    ("targets: [{namespace: a, deployment: .v}]", "targets[0].deployment", "a DNS-1123 subdomain"),
    ("targets: [{namespace: a, deployment: v-}]", "targets[0].deployment", "a DNS-1123 subdomain"),
    ("targets: [{namespace: a, deployment: ''}]", "targets[0].deployment", "a DNS-1123 subdomain"),
    (f"targets: [{{namespace: a, deployment: {'d' * 64}}}]", "targets[0].deployment", "longer than 63"),
    (f"targets: [{{namespace: {'n' * 64}, deployment: v}}]", "targets[0].namespace", "at most 63"),
    # What reaches a query is parsed and bounded, never pasted.
    ("targets: [{namespace: a, deployment: v, metrics: {rateWindow: abc}}]", "targets[0].metrics.rateWindow",
     "not a Prometheus duration"),
    ("targets: [{namespace: a, deployment: v, metrics: {rateWindow: '2m]) * 0 or vector(1) #'}}]",
     "targets[0].metrics.rateWindow", "not a Prometheus duration"),
    ("targets: [{namespace: a, deployment: v, metrics: {rateWindow: 1.5m}}]", "targets[0].metrics.rateWindow",
     "not a Prometheus duration"),
    ("targets: [{namespace: a, deployment: v, metrics: {rateWindow: 30s2m}}]", "targets[0].metrics.rateWindow",
     "not a Prometheus duration"),
    ("targets: [{namespace: a, deployment: v, metrics: {rateWindow: 1s}}]", "targets[0].metrics.rateWindow",
     "shorter than 5s"),
    ("targets: [{namespace: a, deployment: v, metrics: {rateWindow: 2h}}]", "targets[0].metrics.rateWindow",
     "longer than 3600s"),
    ("targets: [{namespace: a, deployment: v, metrics: {arrivalRateQuery: 'sum(rate(gw[1m])) # x'}}]",
     "targets[0].metrics.arrivalRateQuery", "has a comment"),
    ("targets: [{namespace: a, deployment: v, metrics: {arrivalRateQuery: 'sum(rate(gw[1m])))'}}]",
     "targets[0].metrics.arrivalRateQuery", "unbalanced"),
    ("targets: [{namespace: a, deployment: v, metrics: {arrivalRateQuery: 'sum(gw{a=\"x)'}}]",
     "targets[0].metrics.arrivalRateQuery", "never closed"),
    ("targets: [{namespace: a, deployment: v, metrics: {arrivalRateQuery: '  '}}]",
     "targets[0].metrics.arrivalRateQuery", "must not be empty"),
    ("targets: [{namespace: a, deployment: v, modelName: ''}]", "targets[0].modelName", "must not be empty"),
    ("targets: [{namespace: a, deployment: v, modelName: 'gpt2 '}]", "targets[0].modelName", "trailing whitespace"),
    ("targets: [{namespace: a, deployment: v, modelName: \"a\\x01b\"}]", "targets[0].modelName", "control character"),
    ("targets: [{namespace: a, deployment: v, placeholders: {priorityClass: Gpu_Low}}]",
     "targets[0].placeholders.priorityClass", "a DNS-1123 subdomain"),
    ("targets: [{namespace: a, deployment: v, placeholders: {priorityClass: system-low}}]",
     "targets[0].placeholders.priorityClass", "reserved"),
    ("targets: [{namespace: a, deployment: v, placeholders: {image: 'Vllm/Openai'}}]",
     "targets[0].placeholders.image", "not an image reference"),
    ("targets: [{namespace: a, deployment: v, placeholders: {image: 'vllm/openai:'}}]",
     "targets[0].placeholders.image", "not an image reference"),
    ("targets: [{namespace: a, deployment: v, placeholders: {image: 'a b'}}]",
     "targets[0].placeholders.image", "not an image reference"),
    # Model lists that would silently run as another model.
    ("targets: [{namespace: a, deployment: v, forecast: {candidates: []}}]", "targets[0].forecast.candidates",
     "at least one model"),
    ("targets: [{namespace: a, deployment: v, forecast: {candidates: [naive, naive]}}]",
     "targets[0].forecast.candidates[1]", "already listed at candidates[0]"),
    ("targets: [{namespace: a, deployment: v, forecast: {model: seasonal_naive, seasons: []}}]",
     "targets[0].forecast.seasons", "needs at least one season"),
    ("targets: [{namespace: a, deployment: v, forecast: {seasons: []}}]", "targets[0].forecast.seasons",
     "need at least one season"),
    ("targets: [{namespace: a, deployment: v}, {namespace: a, deployment: v}]", "targets[1]", "already listed"),
    ("targets: []", "targets", "at least one"),
    ("targets: {namespace: a}", "targets", "expected a list"),
    ("- just a list", "", "must be a YAML mapping"),
    ("targets: [", "", "not valid YAML"),
    ("a: &x [1]\nb: *x\ntargets: []", "", "anchors are not allowed"),
    # A key given twice would silently keep the last value.
    ("targets: [{namespace: a, deployment: v, mode: enforce, mode: dry-run}]", "", "duplicate key 'mode'"),
    ("loopIntervalSeconds: 30\ntargets: [{namespace: a, deployment: v}]\nloopIntervalSeconds: 5\n", "",
     "duplicate key 'loopIntervalSeconds' (first given on line 1)"),
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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deployment", "vllm.prod"),
        ("deployment", "d" * 63),
        ("namespace", "n" * 63),
        ("modelName", "meta-llama/Llama-3.1-8B-Instruct"),
        ("modelName", "gpt2 (fine-tuned, v2)"),
        ("metrics", {"rateWindow": "1m30s"}),
        ("metrics", {"rateWindow": "5s"}),
        ("metrics", {"rateWindow": "1h"}),
        ("metrics", {"arrivalRateQuery": 'sum(rate(gw_requests_total{route="/v1#chat"}[1m]))'}),
        ("metrics", {"arrivalRateQuery": "sum(rate(gw[1m])) or vector(0)"}),
        ("placeholders", {"image": "vllm/vllm-openai:v0.6.3"}),
        ("placeholders", {"image": "registry.example.com:5000/team/vllm_openai__x:v0.6.3-cu121"}),
        ("placeholders", {"image": "localhost/vllm@sha256:" + "a" * 64}),
        ("placeholders", {"image": "[::1]:5000/vllm:latest"}),
        ("placeholders", {"priorityClass": "gpu.placeholder-low"}),
    ],
)
def test_valid_names_images_and_queries_load(field: str, value: object) -> None:
    """What the API server, the image grammar and Prometheus accept loads unchanged."""
    import json

    target: dict[str, object] = {"namespace": "llm", "deployment": "vllm", field: value}
    policy = load_policy(json.dumps({"targets": [target]}))
    assert policy.targets[0] is not None


def test_the_rate_window_reaches_promql_parsed_not_pasted() -> None:
    """``1m30s`` is sent as ``90s``: the query is built from the parsed seconds."""
    from autoscaler.adapters.prometheus import queries

    target = load_policy("targets: [{namespace: a, deployment: v, metrics: {rateWindow: 1m30s}}]").targets[0]
    exprs = [q.expr for q in queries.loop_queries([target])] + [queries.history_load(target, step=60)]
    assert all("1m30s" not in e for e in exprs)
    assert any("[90s]" in e for e in exprs)


def test_policy_files_are_read_no_further_than_the_cap(tmp_path: Path) -> None:
    """A device or a FIFO is refused without reading it; an oversized file is read only up to the cap."""
    import os

    for path, reason in ((Path("/dev/zero"), "is not a regular file"), (Path("/dev/null"), "is not a regular file")):
        with pytest.raises(PolicyRejected, match=reason):
            load_policy_file(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PolicyRejected, match="is not a regular file"):  # no writer: opening it would block
        load_policy_file(fifo)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_POLICY_BYTES * 4))
    with pytest.raises(PolicyRejected, match="larger than the 262144-byte limit"):
        load_policy_file(big)
    with pytest.raises(PolicyRejected, match=r"cannot read .*: Is a directory"):
        load_policy_file(tmp_path)
