"""Pure tests of the PromQL builders and of splitting batched answers per target.

Why: the grouping a query uses and the splitting of its answer must agree, names must be
escaped, and the number of queries per loop must not depend on the number of targets.
These need no server; the live behaviour is tested against a real one elsewhere.
"""

from __future__ import annotations

import math

import pytest

from autoscaler.adapters.prometheus import promql, queries, split
from autoscaler.adapters.prometheus.answers import Sample
from autoscaler.errors import MetricsEmpty, MetricsInvalid, MetricsUnavailable
from autoscaler.policy.schema import SLO, Metrics, Target


def _sample(value: float, **labels: str) -> Sample:
    return Sample(labels=labels, time=0.0, value=value)


@pytest.mark.parametrize(
    ("pod", "deployment"),
    [
        ("vllm-gpt2-7d9f8c6b5-x2k4q", "vllm-gpt2"),
        ("a.b-c-5d8f7c9b4-q7x2p", "a.b-c"),
        ("vllm-gpt2-0", None),  # a StatefulSet pod is not a Deployment's
        ("vllm-x2k4q", None),
    ],
)
def test_deployment_of_replicaset_pod_names(pod: str, deployment: str | None) -> None:
    """The owning Deployment is the pod name without the ReplicaSet hash and random suffix."""
    assert promql.deployment_of(pod) == deployment


def test_string_literals_and_durations() -> None:
    """Label values are escaped for PromQL, and rate windows parse as Prometheus durations."""
    assert promql.string('a"b\\c') == '"a\\"b\\\\c"'
    assert promql.alternation(["b.c", "a", "a"]) == "a|b\\.c"
    assert promql.duration_seconds("1m30s") == 90.0
    with pytest.raises(ValueError, match="duration"):
        promql.duration_seconds("2 minutes")


def test_queries_per_loop_do_not_grow_with_targets() -> None:
    """One target and 1,000 targets (same window and quantile) need the same 14 queries."""
    one = queries.loop_queries([Target(namespace="llm", deployment="d0")])
    many = queries.loop_queries([Target(namespace=f"ns{i % 7}", deployment=f"d{i}") for i in range(1000)])
    assert len(one) == len(many) == 14
    assert max(len(q.expr) for q in many) < 2000  # grows with namespaces, not targets


def test_extra_windows_and_quantiles_add_queries() -> None:
    """A second rate window or latency quantile adds only that variant's queries."""
    targets = [
        Target(namespace="llm", deployment="a"),
        Target(namespace="llm", deployment="b", slo=SLO(latency_quantile=0.99)),
        Target(namespace="llm", deployment="c", metrics=Metrics(rate_window="5m")),
    ]
    plan = queries.loop_queries(targets)
    assert len(plan) == 14 + 2 + 8  # +2 quantile queries (0.99), +8 windowed queries (5m)
    assert len({q.key for q in plan}) == len(plan)


def test_pick_sums_filters_and_refuses_bad_answers() -> None:
    """pick sums a target's series, ignores others, and turns bad answers into our errors."""
    target = Target(namespace="llm", deployment="vllm", model_name="m")
    answer = [
        _sample(2.0, namespace="llm", deployment="vllm", model_name="m"),
        _sample(3.0, namespace="llm", deployment="vllm", model_name="m"),
        _sample(7.0, namespace="llm", deployment="vllm", model_name="other"),
        _sample(9.0, namespace="prod", deployment="vllm", model_name="m"),
    ]
    assert split.pick(target, answer, signal="running", how="sum") == 5.0
    assert split.pick(target, answer, signal="kv_cache_usage", how="avg") == 2.5
    with pytest.raises(MetricsInvalid, match="where one was expected"):
        split.pick(target, answer, signal="latency_mean", how="one")
    with pytest.raises(MetricsEmpty):
        split.pick(Target(namespace="llm", deployment="nope"), answer, signal="running", how="sum")
    nan = [_sample(math.nan, namespace="llm", deployment="vllm", model_name="m")]
    with pytest.raises(MetricsInvalid, match="NaN"):
        split.pick(target, nan, signal="running", how="sum")
    with pytest.raises(MetricsEmpty, match="no requests completed"):
        split.pick(target, nan, signal="latency_mean", how="one")
    inf = [_sample(math.inf, namespace="llm", deployment="vllm", model_name="m")]
    with pytest.raises(MetricsInvalid):
        split.pick(target, inf, signal="latency_quantile", how="one")
    failed = MetricsUnavailable("down")
    with pytest.raises(MetricsUnavailable):
        split.pick(target, failed, signal="running", how="sum")


def test_history_expression_selects_exactly_the_target() -> None:
    """History queries select the target's own pods (escaped) and model, in its load unit."""
    expr = queries.history_load(Target(namespace="llm", deployment="v.1", model_name="m"), step=300)
    assert 'pod=~"v\\\\.1-[a-z0-9]{1,10}-[a-z0-9]{5}"' in expr and 'model_name="m"' in expr
    assert "[300s]" in expr and "deriv(" in expr
    assert "[75000ms] offset 225000ms" in expr  # data near both ends of the bucket
    override = Target(namespace="llm", deployment="v", metrics=Metrics(arrival_rate_query="sum(rate(gw[1m]))"))
    assert queries.history_load(override, step=300) == "avg_over_time((sum(rate(gw[1m])))[300s:30s])"


Answers = dict[tuple[str, str | None, float | None], list[Sample]]


def _loop_answers(target: Target, *, newest: float, load: float) -> Answers:
    """Every per-loop query answered for ``target`` with one series (``load`` for the load, 1 else)."""
    labels = {"namespace": target.namespace, "deployment": target.deployment, "model_name": "m"}
    answers: dict[tuple[str, str | None, float | None], list[Sample]] = {}
    for query in queries.loop_queries([target]):
        value = newest if query.signal == "newest_sample_time" else load if query.signal == "load_requests" else 1.0
        answers[query.key] = [Sample(labels=labels, time=newest, value=value)]
    return answers


@pytest.mark.parametrize(("ahead", "kind"), [(3600.0, "future_dated"), (30.0, None), (-600.0, "metrics_invalid")])
def test_snapshot_judges_staleness_both_ways(ahead: float, kind: str | None) -> None:
    """Samples dated an hour after the controller's clock are unknown (``future_dated``), like stale ones;
    a 30 s skew is within the allowance and the signals are used."""
    target = Target(namespace="llm", deployment="vllm")
    now = 1_700_000_000.0
    snap, details = split.snapshot(target, _loop_answers(target, newest=now + ahead, load=0.0), now=now, stale_slack=5)
    if kind is None:
        assert snap.load == 0.0 and snap.running == 1.0 and not snap.problems
        return
    assert snap.load is None and snap.running is None and snap.waiting is None and snap.latency_mean is None
    assert snap.problems["load"] == kind
    assert snap.newest_sample_time == now + ahead  # kept: decide holds on it too
    if kind == "future_dated":
        assert snap.problems["newest_sample_time"] == "future_dated"
        assert "after the controller's clock" in details["load"]


def _gpu_plan(*targets: Target) -> dict[str, str]:
    return {q.signal: q.expr for q in queries.loop_queries(targets) if q.signal.startswith("gpu_")}


def test_dcgm_queries_follow_the_accelerator_kind() -> None:
    """MIG slices: only GR_ENGINE_ACTIVE is queried (GPU_UTIL is not per MIG instance); AMD: no DCGM query."""
    gpu = Target(namespace="whole", deployment="vllm")
    mig = Target(namespace="sliced", deployment="vllm-mig", metrics=Metrics(accelerator="nvidia-mig"))
    amd = Target(namespace="rocm", deployment="vllm-amd", metrics=Metrics(accelerator="amd"))

    plan = _gpu_plan(gpu, mig, amd)
    assert set(plan) == {"gpu_utilization", "gpu_engine_active"}
    assert "DCGM_FI_DEV_GPU_UTIL" in plan["gpu_utilization"] and '"whole"' in plan["gpu_utilization"]
    assert "sliced" not in plan["gpu_utilization"] and "rocm" not in plan["gpu_utilization"]
    assert '"sliced|whole"' in plan["gpu_engine_active"] and "rocm" not in plan["gpu_engine_active"]
    assert _gpu_plan(mig) == {"gpu_engine_active": plan["gpu_engine_active"].replace("sliced|whole", "sliced")}
    assert _gpu_plan(amd) == {}
    assert len(queries.loop_queries([amd])) == len(queries.loop_queries([gpu])) - 2


def test_a_mig_target_reads_engine_activity_and_has_no_utilization_problem() -> None:
    """A MIG pod's GR_ENGINE_ACTIVE (per GPU instance: labels GPU_I_PROFILE, GPU_I_ID) gives its engine
    activity; gpu_utilization is not applicable, so unknown without a problem; an AMD target has neither."""
    now = 1_700_000_000.0
    mig = Target(namespace="llm", deployment="vllm", metrics=Metrics(accelerator="nvidia-mig"))
    (engine,) = (q for q in queries.loop_queries([mig]) if q.signal == "gpu_engine_active")
    assert "GPU_I_" not in engine.expr  # the instances' series are kept, averaged by (namespace, deployment)
    answers = _loop_answers(mig, newest=now, load=10.0)
    answers[engine.key] = [Sample(labels={"namespace": "llm", "deployment": "vllm"}, time=now, value=0.5)]
    snap, _ = split.snapshot(mig, answers, now=now, stale_slack=5)
    assert snap.gpu_engine_active == 0.5 and snap.gpu_utilization is None and not snap.problems

    amd = Target(namespace="llm", deployment="vllm", metrics=Metrics(accelerator="amd"))
    snap, _ = split.snapshot(amd, _loop_answers(amd, newest=now, load=10.0), now=now, stale_slack=5)
    assert snap.gpu_engine_active is None and snap.gpu_utilization is None and not snap.problems
    gpu = Target(namespace="llm", deployment="vllm")
    snap, _ = split.snapshot(gpu, _loop_answers(amd, newest=now, load=10.0), now=now, stale_slack=5)
    assert set(snap.problems) == {"gpu_utilization", "gpu_engine_active"}  # a whole-GPU target without DCGM data
