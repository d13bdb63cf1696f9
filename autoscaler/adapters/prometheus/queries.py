"""The per-loop query plan and the load-history expression, for the Prometheus metrics source.

Why a module of its own: it holds every query the control loop sends, in one reviewable
place; tests check them without a server, and the benchmark prints exactly what runs per
loop. Pure (values in, strings out), built from :mod:`autoscaler.adapters.prometheus.promql`.

Batching: every per-loop expression covers ALL targets at once. It selects series by the
targets' namespaces and the generic ReplicaSet pod-name pattern, derives a ``deployment``
label from the pod name with ``label_replace`` and aggregates
``by (namespace, deployment, model_name)`` (never by ``engine``); the source splits the
answer per target in Python with the same pattern
(:mod:`autoscaler.adapters.prometheus.split`). The query text therefore grows with the
number of namespaces, not of targets, and stays far below URL limits at 1,000 targets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autoscaler.adapters.prometheus.promql import (
    GROUP,
    POD_SUFFIX_RE,
    alternation,
    batch_selector,
    duration_seconds,
    per_target,
    string,
    target_selector,
    vllm,
    window,
    with_deployment,
)
from autoscaler.policy import formats
from autoscaler.policy.schema import Target

#: Newest name first: ``kv_cache_usage_perc`` replaced ``gpu_cache_usage_perc`` (deprecated 0.9).
_KV_CACHE_NAMES = ("kv_cache_usage_perc", "gpu_cache_usage_perc")


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
