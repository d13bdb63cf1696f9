"""PromQL text: literals, durations, and the selectors every query is built from.

Why a module of its own: these strings are the contract with vLLM, the DCGM exporter and
kube-state-metrics (names, labels and renames as listed in ``shared/reference/metrics.md``).
Keeping them pure (values in, strings out) puts the escaping of every value that reaches a
query in one reviewable place and lets tests check it without a server. The expressions
are built from these in :mod:`autoscaler.adapters.prometheus.queries` (the per-loop plan,
the load history), :mod:`~autoscaler.adapters.prometheus.signals` (kube-state-metrics),
:mod:`~autoscaler.adapters.prometheus.leadtimes` and
:mod:`~autoscaler.adapters.prometheus.recorded` (the backtest's series).

Pods are selected by the targets' namespaces and the generic ReplicaSet pod-name pattern
(:data:`POD_SUFFIX_RE`); :func:`with_deployment` derives a ``deployment`` label from the pod
name and :func:`per_target` aggregates ``by (namespace, deployment, model_name)``.

Both metric spellings are matched: ``vllm:`` (vLLM's own exposition) and ``vllm_`` (what
Prometheus stores when a ``prometheus_client`` >= 0.23 exporter escapes the colon).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from autoscaler.policy import formats
from autoscaler.policy.schema import Target

#: The tail a ReplicaSet gives its pods: ``-<pod-template-hash>-<5 random characters>``.
#: The hash is a safe-encoded 32-bit FNV sum (1-10 characters), the suffix is always 5.
POD_SUFFIX_RE = "-[a-z0-9]{1,10}-[a-z0-9]{5}"
#: The Deployment a ReplicaSet pod belongs to is its name without that tail.
_REPLICASET_POD = re.compile(f"(.+){POD_SUFFIX_RE}")
#: Labels per-loop vLLM expressions aggregate by.
GROUP = "namespace, deployment, model_name"


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
