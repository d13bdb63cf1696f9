"""PromQL for the Prometheus metrics source: batched queries and their per-target split.

Why a module of its own: these strings are the contract with vLLM, the DCGM exporter and
kube-state-metrics (names, labels and renames as listed in ``shared/reference/metrics.md``).
Keeping them pure (values in, strings out) puts every query in one reviewable place, lets
tests check them without a server, and lets the benchmark print exactly what runs per loop.

Batching: every per-loop expression covers ALL targets at once. It selects series by the
targets' namespaces and the generic ReplicaSet pod-name pattern, derives a ``deployment``
label from the pod name with ``label_replace`` and aggregates
``by (namespace, deployment, model_name)`` (never by ``engine``); the source splits the
answer per target in Python with the same pattern. The query text therefore grows with the
number of namespaces, not of targets, and stays far below URL limits at 1,000 targets.

Splitting is the inverse of that grouping and lives here too (:func:`pick`,
:func:`snapshot`), so the labels a query groups by and the labels its answer is split by
cannot drift apart.

Both metric spellings are matched: ``vllm:`` (vLLM's own exposition) and ``vllm_`` (what
Prometheus stores when a ``prometheus_client`` >= 0.23 exporter escapes the colon).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from autoscaler.core.freshness import FUTURE_SKEW_SECONDS, Freshness, freshness
from autoscaler.core.types import MetricsSnapshot
from autoscaler.errors import MetricsEmpty, MetricsError, MetricsInvalid
from autoscaler.policy import formats
from autoscaler.policy.schema import Target

#: The tail a ReplicaSet gives its pods: ``-<pod-template-hash>-<5 random characters>``.
#: The hash is a safe-encoded 32-bit FNV sum (1-10 characters), the suffix is always 5.
POD_SUFFIX_RE = "-[a-z0-9]{1,10}-[a-z0-9]{5}"
#: The Deployment a ReplicaSet pod belongs to is its name without that tail.
_REPLICASET_POD = re.compile(f"(.+){POD_SUFFIX_RE}")
#: Labels per-loop vLLM expressions aggregate by.
GROUP = "namespace, deployment, model_name"
#: Newest name first: ``kv_cache_usage_perc`` replaced ``gpu_cache_usage_perc`` (deprecated 0.9).
_KV_CACHE_NAMES = ("kv_cache_usage_perc", "gpu_cache_usage_perc")


@dataclass(frozen=True)
class Sample:
    """One element of an instant-query answer: its labels, sample time and value."""

    labels: Mapping[str, str]
    time: float
    value: float


@dataclass(frozen=True)
class Query:
    """One expression of the per-loop plan.

    ``signal`` names what it measures (a ``MetricsSnapshot`` field, or ``load_requests``);
    ``window`` and ``quantile`` are the parameters it was built for, so answers of
    several variants of one signal can be told apart.
    """

    signal: str
    expr: str
    window: str | None = None
    quantile: float | None = None

    @property
    def key(self) -> tuple[str, str | None, float | None]:
        """Where the answer is filed: ``(signal, window, quantile)``."""
        return (self.signal, self.window, self.quantile)


def string(value: str) -> str:
    """A PromQL double-quoted string literal holding ``value`` exactly. Pure."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def alternation(values: Iterable[str]) -> str:
    """An RE2 alternation matching exactly the given literal values (sorted, deduplicated). Pure."""
    return "|".join(re.escape(v) for v in sorted(set(values)))


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as ``2m``, ``90s`` or ``1m30s``. Pure.

    Raises:
        ValueError: if ``text`` is not a duration (Prometheus' grammar: whole numbers, units
            from ``y`` down to ``ms`` in that order).
    """
    seconds = formats.duration_seconds(text)
    if seconds is None:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return seconds


def window(text: str) -> str:
    """The PromQL range for a ``rateWindow``: rendered from its parsed seconds, never pasted. Pure.

    Raises:
        ValueError: if ``text`` is not a duration.
    """
    return formats.render_duration(duration_seconds(text))


def deployment_of(pod: str) -> str | None:
    """The Deployment owning a ReplicaSet pod name, or ``None`` for other names. Pure."""
    match = _REPLICASET_POD.fullmatch(pod)
    return match.group(1) if match else None


def batch_selector(namespaces: Iterable[str]) -> str:
    """Label matchers for every ReplicaSet pod in the given namespaces. Pure."""
    return f"namespace=~{string(alternation(namespaces))}, pod=~{string('.+' + POD_SUFFIX_RE)}"


def target_selector(target: Target) -> str:
    """Label matchers for exactly one target's pods (and model, when set). Pure."""
    pods = re.escape(target.deployment) + POD_SUFFIX_RE
    selector = f"namespace={string(target.namespace)}, pod=~{string(pods)}"
    if target.model_name is not None:
        selector += f", model_name={string(target.model_name)}"
    return selector


def vllm(name: str, selector: str) -> str:
    """A vLLM series selector accepting both the ``vllm:`` and the ``vllm_`` spelling. Pure."""
    return f"{{__name__=~{string('vllm[:_]' + name)}, {selector}}}"


def with_deployment(expr: str) -> str:
    """``expr`` with a ``deployment`` label derived from its ReplicaSet ``pod`` label. Pure."""
    return f'label_replace({expr}, "deployment", "$1", "pod", {string("(.+)" + POD_SUFFIX_RE)})'


def per_target(aggregation: str, expr: str) -> str:
    """``expr`` aggregated per (namespace, deployment, model_name). Pure."""
    return f"{aggregation} by ({GROUP}) ({with_deployment(expr)})"


def _rate(name: str, *, sel: str, window: str) -> str:
    return per_target("sum", f"rate({vllm(name, sel)}[{window}])")


def _mean(histogram: str, *, sel: str, window: str) -> str:
    total, count = (_rate(f"{histogram}_{part}", sel=sel, window=window) for part in ("sum", "count"))
    return f"{total} / {count}"


def _quantile(histogram: str, *, sel: str, window: str, q: float) -> str:
    buckets = with_deployment(f"rate({vllm(histogram + '_bucket', sel)}[{window}])")
    return f"histogram_quantile({q:g}, sum by ({GROUP}, le) ({buckets}))"


def arrivals(selector: str, window: str, *, aggregate: str) -> str:
    """Arrival rate by flow conservation: completions plus the change of requests in the system.

    vLLM has no arrival counter (``request_success_total`` counts at completion), so
    arrivals = rate(completed, every finish reason) + deriv(running) + deriv(waiting),
    clamped at zero against noise while a queue drains. Each gauge gets its own ``deriv``
    (it drops the metric name, so one call over both would give two series with the same
    labels). Pure.

    Args:
        selector: Label matchers (:func:`batch_selector` or :func:`target_selector`).
        window: The rate/deriv range, e.g. ``2m``.
        aggregate: ``batch`` (per target, for all targets) or ``sum`` (one target).

    Returns:
        The expression.
    """
    terms = [
        f"rate({vllm('request_success_total', selector)}[{window}])",
        f"deriv({vllm('num_requests_running', selector)}[{window}])",
        f"deriv({vllm('num_requests_waiting', selector)}[{window}])",
    ]
    if aggregate == "batch":
        return f"clamp_min({' + '.join(per_target('sum', t) for t in terms)}, 0)"
    return f"clamp_min({' + '.join(f'sum({t})' for t in terms)}, 0)"


def _gpu(metric: str, *, selector_ns: str, selector_pod: str, scale: str) -> str:
    # honor_labels: true keeps the vLLM pod in pod/namespace; false renames it to exported_*.
    honored = f"{metric}{{namespace=~{selector_ns}, pod=~{selector_pod}}}"
    renamed = (
        f"label_replace(label_replace({metric}{{exported_namespace=~{selector_ns}, exported_pod=~{selector_pod}}}, "
        f'"pod", "$1", "exported_pod", "(.+)"), "namespace", "$1", "exported_namespace", "(.+)")'
    )
    return f"avg by (namespace, deployment) ({with_deployment(f'({honored} or {renamed})')}){scale}"


def loop_queries(targets: Iterable[Target], *, need_arrivals: bool = True) -> list[Query]:
    """The per-loop plan: one query per signal for all targets (per rate window and quantile).

    Targets are grouped by ``metrics.rateWindow`` (and the quantile signals also by
    ``slo.latencyQuantile``), so a fleet with one window and one quantile needs 14 queries
    whatever its size. The GPU queries cover the namespaces of the targets whose
    ``metrics.accelerator`` has that DCGM signal (:func:`gpu_signals`), and are left out
    when none has. Pure.

    Args:
        targets: The targets to observe (at least one).
        need_arrivals: Whether any target needs the flow-conservation arrival rate
            (false when every target uses tokens or an ``arrivalRateQuery`` override).

    Returns:
        The queries, most important first (load, then gauges, then latencies, then GPU).
    """
    targets = list(targets)
    sel = batch_selector(t.namespace for t in targets)
    windows = sorted({t.metrics.rate_window for t in targets})
    plan: list[Query] = []
    if need_arrivals:
        plan += [Query("load_requests", arrivals(sel, window(w), aggregate="batch"), window=w) for w in windows]
    plan += [
        Query("newest_sample_time", per_target("max", f"timestamp({vllm('num_requests_running', sel)})")),
        Query("running", per_target("sum", vllm("num_requests_running", sel))),
        Query("waiting", per_target("sum", vllm("num_requests_waiting", sel))),
        Query("kv_cache_usage", " or ".join(per_target("avg", vllm(name, sel)) for name in _KV_CACHE_NAMES)),
    ]
    for w in windows:
        r = window(w)
        plan += [
            Query("prompt_tokens_rate", _rate("prompt_tokens_total", sel=sel, window=r), window=w),
            Query("generation_tokens_rate", _rate("generation_tokens_total", sel=sel, window=r), window=w),
            Query("preemption_rate", _rate("num_preemptions_total", sel=sel, window=r), window=w),
            Query("latency_mean", _mean("e2e_request_latency_seconds", sel=sel, window=r), window=w),
            Query("queue_time_mean", _mean("request_queue_time_seconds", sel=sel, window=r), window=w),
        ]
        for q in sorted({t.slo.latency_quantile for t in targets if t.metrics.rate_window == w}):
            plan += [
                Query(signal, _quantile(histogram, sel=sel, window=r, q=q), window=w, quantile=q)
                for signal, histogram in (
                    ("latency_quantile", "e2e_request_latency_seconds"),
                    ("ttft_quantile", "time_to_first_token_seconds"),
                )
            ]
    pods = string(".+" + POD_SUFFIX_RE)
    for signal, metric, scale in (
        ("gpu_utilization", "DCGM_FI_DEV_GPU_UTIL", " / 100"),
        ("gpu_engine_active", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", ""),
    ):
        namespaces = [t.namespace for t in targets if signal in gpu_signals(t)]
        if namespaces:
            ns = string(alternation(namespaces))
            plan.append(Query(signal, _gpu(metric, selector_ns=ns, selector_pod=pods, scale=scale)))
    return plan


#: The DCGM signals each ``metrics.accelerator`` kind has. DCGM_FI_DEV_GPU_UTIL is a device
#: field, not reported per MIG instance; GR_ENGINE_ACTIVE is (labels GPU_I_PROFILE, GPU_I_ID),
#: and a pod's instances are averaged like a pod's GPUs. AMD GPUs have no DCGM at all.
_GPU_SIGNALS: dict[str, tuple[str, ...]] = {
    "nvidia": ("gpu_utilization", "gpu_engine_active"),
    "nvidia-mig": ("gpu_engine_active",),
    "amd": (),
}


def gpu_signals(target: Target) -> tuple[str, ...]:
    """The GPU signals that apply to a target's accelerator kind (the others are not queried). Pure."""
    return _GPU_SIGNALS[target.metrics.accelerator]


def history_load(target: Target, *, step: float) -> str:
    """The target's load whose value at ``t`` is its mean over ``(t - window, t]``. Pure.

    ``window = max(step, rateWindow)``: at coarse steps it is the bucket itself, so every
    sample counts once; at fine steps windows still hold two scrapes. ``rate()`` divides
    by the whole window, so a bucket whose data stops or starts inside it (a scrape gap,
    the end of retention) would read low. Such a bucket is dropped (NaN): each end quarter
    of the window must hold at least 3/4 of its share of the window's counter samples,
    which tolerates less than one missing scrape interval whatever the interval (a bias
    of at most ~8 % at 15 s scrapes in 5-minute buckets, none at 30 s). Missing data in
    the middle does not matter: counters are cumulative. An
    ``arrivalRateQuery`` override is averaged over the bucket with a subquery (about ten
    points per bucket), which averages whatever part has data.

    Args:
        target: The target (its pods, model, load unit and override).
        step: The range query's step in seconds.

    Returns:
        The expression, in the target's capacity unit.
    """
    window_s = max(step, duration_seconds(target.metrics.rate_window))
    rng = formats.render_duration(window_s)
    if target.metrics.arrival_rate_query:
        resolution = max(1, int(step // 10))
        return f"avg_over_time(({target.metrics.arrival_rate_query})[{formats.render_duration(step)}:{resolution}s])"
    sel = target_selector(target)
    if target.capacity.unit == "tokens":
        counter = vllm("prompt_tokens_total", sel)
        generated = f"sum(rate({vllm('generation_tokens_total', sel)}[{rng}]))"
        load = f"sum(rate({counter}[{rng}])) + {generated}"
    else:
        counter = vllm("request_success_total", sel)
        load = arrivals(sel, rng, aggregate="sum")
    quarter = f"{round(window_s * 250)}ms"
    total = f"sum(count_over_time({counter}[{rng}]))"
    first = f"sum(count_over_time({counter}[{quarter}] offset {round(window_s * 750)}ms))"
    last = f"sum(count_over_time({counter}[{quarter}]))"
    return f"({load}) and on () ({first} >= 0.1875 * {total}) and on () ({last} >= 0.1875 * {total})"


# kube-state-metrics (scraped with honor_labels: true, so namespace/pod are the objects')


def cluster_queries(namespaces: Iterable[str]) -> dict[str, str]:
    """Deployment replicas, pending/unschedulable pods and GPU nodes, for all targets. Pure.

    Args:
        namespaces: The targets' namespaces.

    Returns:
        Expressions named ``spec_replicas``, ``ready_replicas``, ``pending_pods``,
        ``unschedulable_pods``, ``node_gpus`` and ``node_ready``.
    """
    namespaces = list(namespaces)
    ns = f"namespace=~{string(alternation(namespaces))}"
    pods = batch_selector(namespaces)
    # kube-state-metrics spells a resource with "_" for "." "/" "-": nvidia.com/gpu, the MIG
    # slices nvidia.com/mig-<profile> and amd.com/gpu; a node's accelerators of every kind.
    gpu = 'resource=~"nvidia_com_gpu|nvidia_com_mig_.+|amd_com_gpu"'
    return {
        "spec_replicas": f"max by (namespace, deployment) (kube_deployment_spec_replicas{{{ns}}})",
        "ready_replicas": f"max by (namespace, deployment) (kube_deployment_status_replicas_ready{{{ns}}})",
        "pending_pods": f'max by (namespace, pod) (kube_pod_status_phase{{{pods}, phase="Pending"}}) == 1',
        "unschedulable_pods": f"max by (namespace, pod) (kube_pod_status_unschedulable{{{pods}}}) == 1",
        "node_gpus": f"sum by (node) (max by (node, resource) (kube_node_status_allocatable{{{gpu}}}))",
        "node_ready": 'max by (node) (kube_node_status_condition{condition="Ready", status="true"})',
    }


# Splitting batched answers per target (the inverse of the grouping above)

#: A query's samples, or why there are none.
Answer = list[Sample] | MetricsError
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


def count_pods(target: Target, answer: Answer) -> int:
    """How many of the target's pods a per-pod ``== 1`` answer lists. Pure.

    Raises:
        MetricsError: the query's own error.
    """
    if isinstance(answer, MetricsError):
        raise type(answer)(str(answer)) from answer
    return len(
        {
            s.labels.get("pod")
            for s in answer
            if s.labels.get("namespace") == target.namespace
            and deployment_of(s.labels.get("pod", "")) == target.deployment
        }
    )


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
        answers: Answers of the loop's queries by :attr:`Query.key` (the override's
            window is the target's key).
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
