"""Splitting the per-loop batched answers per target: one :class:`MetricsSnapshot` each.

Why a module of its own: splitting is the inverse of the grouping in
:mod:`autoscaler.adapters.prometheus.queries` (``by (namespace, deployment, model_name)``,
the ``deployment`` label derived from the pod name), and it is where a bad value becomes
unknown rather than 0: no series, NaN/Inf, a negative value, several series where one was
expected, stale or future-dated samples. Pure: answers in, snapshot and reasons out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

from autoscaler.adapters.prometheus.answers import Answer
from autoscaler.adapters.prometheus.queries import gpu_signals
from autoscaler.core.freshness import FUTURE_SKEW_SECONDS, Freshness, freshness
from autoscaler.core.types import MetricsSnapshot
from autoscaler.errors import MetricsEmpty, MetricsError, MetricsInvalid
from autoscaler.policy.schema import Target

#: Signals that are per target regardless of model (DCGM and kube-state-metrics have no ``model_name``).
_MODEL_FREE = frozenset({"gpu_utilization", "gpu_engine_active", "spec_replicas", "ready_replicas"})


def pick(target: Target | None, answer: Answer, *, signal: str, how: str) -> float:
    """One target's value from a batched answer. Pure.

    Args:
        target: The target whose series to take; ``None`` when the whole answer is its own
            (an ``arrivalRateQuery`` override).
        answer: The query's samples, or the error it failed with.
        signal: The signal's name (for messages; GPU signals ignore ``model_name``).
        how: ``sum``, ``avg`` or ``max`` over the target's series, or ``one`` when exactly
            one series must match (ratios, quantiles, overrides).

    Returns:
        The finite, non-negative value.

    Raises:
        MetricsError: the query's own error; ``MetricsEmpty`` when no series matched (or a
            ratio/quantile is NaN because nothing completed); ``MetricsInvalid`` for several
            series where one was expected, NaN/Inf, or a negative value.
    """
    if isinstance(answer, MetricsError):  # shared by every target: raise a fresh copy
        raise type(answer)(str(answer)) from answer
    matched = list(answer) if target is None else [s for s in answer if _owned(target, s.labels, signal)]
    if not matched:
        raise MetricsEmpty(f"{signal}: no series")
    if how == "one" and len(matched) > 1:
        models = sorted({s.labels.get("model_name", "") for s in matched})
        raise MetricsInvalid(f"{signal}: {len(matched)} series where one was expected (model_name {models})")
    values = [s.value for s in matched]
    if how == "one" and math.isnan(values[0]):
        raise MetricsEmpty(f"{signal}: NaN (no requests completed in the window)")
    if not all(math.isfinite(v) for v in values):
        raise MetricsInvalid(f"{signal}: NaN or Inf in the answer")
    if min(values) < 0 and signal != "newest_sample_time":
        raise MetricsInvalid(f"{signal}: negative value {min(values):g}")
    if how == "max":
        return max(values)
    return sum(values) / len(values) if how == "avg" else sum(values)


def _owned(target: Target, labels: Mapping[str, str], signal: str) -> bool:
    if labels.get("namespace") != target.namespace or labels.get("deployment") != target.deployment:
        return False
    return signal in _MODEL_FREE or target.model_name is None or labels.get("model_name") == target.model_name


#: Snapshot field (= query signal) -> how a target's series combine; ``one`` = exactly one.
_FIELDS = {
    "running": "sum",
    "waiting": "sum",
    "kv_cache_usage": "avg",
    "preemption_rate": "sum",
    "prompt_tokens_rate": "sum",
    "generation_tokens_rate": "sum",
    "latency_mean": "one",
    "latency_quantile": "one",
    "ttft_quantile": "one",
    "queue_time_mean": "one",
    "gpu_utilization": "avg",
    "gpu_engine_active": "avg",
    "newest_sample_time": "max",
}
_WINDOWED = {"load_requests", "prompt_tokens_rate", "generation_tokens_rate", "preemption_rate"}
_WINDOWED |= {"latency_mean", "queue_time_mean", "latency_quantile", "ttft_quantile"}
#: Problem kind of signals whose newest sample is dated after the controller's clock.
FUTURE_DATED = "future_dated"
#: Fields that come from the target's vLLM pods (nulled together when those are stale).
_VLLM_FIELDS = ("load", *(f for f in _FIELDS if not f.startswith("gpu_") and f != "newest_sample_time"))


def snapshot(
    target: Target,
    answers: Mapping[tuple[str, str | None, float | None], Answer],
    *,
    now: float,
    stale_slack: float,
) -> tuple[MetricsSnapshot, dict[str, str]]:
    """One target's :class:`MetricsSnapshot` from the loop's batched answers. Pure.

    Every field is the target's share of its query's answer (:func:`pick`); the load is
    the flow-conservation arrival rate, the token rates' sum, or the override's single
    series. If the target's vLLM series are gone (the ``running`` query succeeded without
    them), its newest sample is older than ``staleAfterSeconds + stale_slack`` or dated
    after ``now`` beyond the skew allowance (kind ``future_dated``, see
    :mod:`autoscaler.core.freshness`), every vLLM signal is unknown, so rates still
    computed from the last window are not used.

    Args:
        target: The target.
        answers: Answers of the loop's queries by
            :attr:`~autoscaler.adapters.prometheus.queries.Query.key` (the override's window
            is the target's key).
        now: The evaluation time of the answers.
        stale_slack: Seconds of clock skew tolerated before samples count as stale.

    Returns:
        The snapshot (unknown fields are ``None`` with their error kind in ``problems``;
        GPU signals its ``metrics.accelerator`` does not have are ``None`` without one)
        and a human-readable reason per unknown field.
    """
    values: dict[str, float | None] = {}
    problems: dict[str, str] = {}
    details: dict[str, str] = {}

    def record(name: str, compute: Callable[[], float]) -> None:
        try:
            values[name] = compute()
        except MetricsError as exc:
            values[name], problems[name], details[name] = None, exc.kind, str(exc)

    def answer(signal: str, key: str | None = None) -> Answer:
        window = target.metrics.rate_window if signal in _WINDOWED else key
        quantile = target.slo.latency_quantile if signal.endswith("_quantile") else None
        return answers.get((signal, window, quantile), MetricsEmpty(f"{signal}: not queried"))

    applicable = gpu_signals(target)
    for name, how in _FIELDS.items():
        if name.startswith("gpu_") and name not in applicable:
            continue  # not applicable to its accelerator kind: unknown, and not a problem
        record(name, functools.partial(pick, target, answer(name), signal=name, how=how))
    if target.metrics.arrival_rate_query:
        override = answer("arrival_rate_query", target.key)
        record("load", functools.partial(pick, None, override, signal="arrival_rate_query", how="one"))
    elif target.capacity.unit == "tokens":
        record("load", functools.partial(_tokens, values))
    else:
        record("load", functools.partial(pick, target, answer("load_requests"), signal="load", how="sum"))
    newest = values.get("newest_sample_time")
    fresh = freshness(newest, now, stale_after=target.scaling.stale_after_seconds + stale_slack)
    if not isinstance(answer("running"), MetricsError) and problems.get("running") == "metrics_empty":
        kind, why = "metrics_empty", "no live vLLM series (not scraped, or its series went stale)"
    elif newest is not None and fresh is Freshness.STALE:
        kind, why = "metrics_invalid", f"newest sample is {now - newest:.0f}s old (staleAfterSeconds exceeded)"
    elif newest is not None and fresh is Freshness.FUTURE:
        kind = FUTURE_DATED
        why = (
            f"newest sample is dated {newest - now:.0f}s after the controller's clock (more than "
            f"{FUTURE_SKEW_SECONDS:g}s: clock skew or an exporter's own timestamps)"
        )
        problems["newest_sample_time"], details["newest_sample_time"] = kind, why
    else:
        return MetricsSnapshot(time=now, problems=problems, **values), details
    for name in _VLLM_FIELDS:
        if values.get(name) is not None and not (name == "load" and target.metrics.arrival_rate_query):
            values[name], problems[name], details[name] = None, kind, why
    return MetricsSnapshot(time=now, problems=problems, **values), details


def _tokens(values: Mapping[str, float | None]) -> float:
    """Token load: prompt plus generated tokens per second (both must be known)."""
    prompt, generated = values.get("prompt_tokens_rate"), values.get("generation_tokens_rate")
    if prompt is None or generated is None:
        raise MetricsEmpty("token rates are unknown")
    return prompt + generated
