"""``autoscaler observe``: what Prometheus says about one target right now. Read-only.

Why: before trusting the controller with a Deployment (and when debugging it), an operator
wants to see the exact inputs it would act on: the current signals with the reason for
every unknown one, kube-state-metrics' view of the Deployment, the lead times learned from
pod start-ups, and the forecast the configured model makes from the stored history at the
cold-start horizon. The command reads Prometheus and nothing else, and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscaler.cli import options
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.errors import ConfigError, MetricsError, MetricsUnavailable
from autoscaler.policy.schema import Target

if TYPE_CHECKING:
    from autoscaler.adapters.prometheus import PrometheusSource

#: Display unit per snapshot field (``load`` uses the policy's capacity unit).
_UNITS = {
    "latency_mean": "s",
    "latency_quantile": "s",
    "ttft_quantile": "s",
    "queue_time_mean": "s",
    "running": "requests",
    "waiting": "requests",
    "kv_cache_usage": "(0-1)",
    "preemption_rate": "/s",
    "prompt_tokens_rate": "tokens/s",
    "generation_tokens_rate": "tokens/s",
    "gpu_utilization": "(0-1)",
    "gpu_engine_active": "(0-1)",
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``observe`` options to ``parser`` (used by :mod:`autoscaler.cli.main`)."""
    parser.add_argument(
        "--target", required=True, type=options.target, metavar="NS/NAME", help="namespace/deployment of the target"
    )
    parser.add_argument("--policy", type=Path, default=None, help="policy file (default: the target with defaults)")
    options.add_prometheus_options(parser, timeout=10.0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text (unknown values are null)")


def run(args: argparse.Namespace) -> int:
    """Run ``autoscaler observe`` with parsed arguments; prints to stdout, logs to stderr.

    Returns:
        0 (the exit code).

    Raises:
        ConfigError: ``--target`` is not in the policy.
        PolicyRejected: the policy file is invalid.
        MetricsUnavailable: Prometheus could not be reached at all, or gave nothing usable.
    """
    from autoscaler.adapters.prometheus import PrometheusSource
    from autoscaler.logs import configure

    configure(fmt="console", level="warning")
    target, loop_interval = options.named("--policy", lambda: _target(args.target, args.policy))
    source = PrometheusSource.connect(options.prometheus_connection(args))
    try:
        result = observe_target(source, target, time.time(), loop_interval=loop_interval)
        problem = source.last_loop.problem(args.prometheus_url)
        if problem is not None:
            raise MetricsUnavailable(problem)
    finally:
        source.close()
    print(json.dumps(json_safe(result), indent=2, allow_nan=False) if args.json else render(result))
    return 0


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``: JSON has no NaN. Pure."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _target(spec: str, policy_file: Path | None) -> tuple[Target, float]:
    """The target (``--target``, already NAMESPACE/DEPLOYMENT) and the loop interval it runs at."""
    namespace, name = options.split_ref(spec)
    if policy_file is None:
        return Target(namespace=namespace, deployment=name), 30.0
    from autoscaler.policy.loader import load_policy_file

    policy = load_policy_file(policy_file)
    try:
        return policy.target(spec), policy.loop_interval_seconds
    except KeyError:
        raise ConfigError("--target", f"{spec} is not a target of {policy_file}") from None


def observe_target(
    source: PrometheusSource, target: Target, now: float, *, loop_interval: float = 30.0
) -> dict[str, Any]:
    """Everything the controller would know about ``target`` at ``now``, as a JSON-ready dict.

    Args:
        source: The Prometheus source to read with.
        target: The target.
        now: Unix seconds to observe at (the present, or a past time for a backtest).
        loop_interval: The policy's loop interval (part of the forecast horizon).

    Returns:
        Keys ``target``, ``time``, ``unit``, ``signals`` (field -> value or ``None``),
        ``problems``, ``details``, ``loop`` (queries, seconds, failed), ``cluster``,
        ``lead_times`` (in use, with ``learned``) and ``forecast``.
    """
    snapshot = source.observe([target], now)[target.key]
    loop = source.last_loop
    cluster = source.cluster_signals([target], now)
    measured = source.lead_times(target, now)
    lead = measured or LeadTimes.from_policy(target.cold_start)
    deployment = cluster.deployments[target.key]
    return {
        "target": target.key,
        "time": now,
        "unit": "tokens/s" if target.capacity.unit == "tokens" else "req/s",
        "signals": {k: v for k, v in snapshot.__dict__.items() if k not in ("time", "problems")},
        "problems": dict(snapshot.problems),
        "details": dict(loop.details.get(target.key, {})),
        "loop": {
            "queries": loop.queries,
            "answered": loop.answered,
            "seconds": round(loop.seconds, 4),
            "failed": dict(loop.failed),
        },
        "cluster": {
            **deployment.__dict__,
            "gpu_nodes": {n: node.__dict__.copy() for n, node in sorted(cluster.gpu_nodes.items())},
            "node_problems": dict(cluster.problems),
        },
        "lead_times": {**lead.__dict__, "total": lead.total, "learned": source.learned().get(target.key)},
        "forecast": forecast_at_horizon(source, target, now=now, horizon_seconds=lead.total + loop_interval),
    }


def forecast_at_horizon(
    source: PrometheusSource, target: Target, *, now: float, horizon_seconds: float
) -> dict[str, Any]:
    """Seed the target's forecaster from Prometheus history and read it ``horizon_seconds`` ahead.

    Returns:
        ``model``, ``at``, ``horizon_seconds``, ``mean``, ``p50``, the policy quantile
        (e.g. ``p90``) and ``history_points``; or ``error`` (and ``kind``) when no forecast.
    """
    from autoscaler.forecasting.forecaster import TargetForecaster

    forecaster = TargetForecaster(target, horizon_seconds=horizon_seconds + target.forecast.resolution_seconds)
    step = forecaster.step
    try:
        history = source.load_history(
            target, start=now - target.forecast.history_days * 86400, end=(now // step) * step - step, step=step
        )
    except MetricsError as exc:
        return {"error": str(exc), "kind": exc.kind}
    forecaster.seed(history)
    forecaster.refresh(now, bucket_completed=True)
    status = forecaster.status()
    view = forecaster.view(now)
    if view is None:
        return {"error": status.last_error or "no forecast (no usable history)", "history_points": status.points}
    p = view.prediction
    at = now + horizon_seconds
    k = min(len(p.mean) - 1, max(0, int((at - p.start) // p.step)))
    q = target.forecast.quantile
    out: dict[str, Any] = {
        "model": p.model,
        "at": at,
        "horizon_seconds": horizon_seconds,
        "mean": float(p.mean[k]),
        "p50": float(p.quantile(0.5)[k]),
        f"p{q * 100:g}": float(p.quantile(q)[k]),
        "history_points": status.points,
    }
    if status.last_error:
        out["fallback_reason"] = status.last_error
    return out


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1e6:
        return f"{value:.4g} {unit}".rstrip()
    return f"{value} {unit}".rstrip()


def render(result: dict[str, Any]) -> str:
    """The result of :func:`observe_target` as text for a terminal. Pure."""
    when = datetime.fromtimestamp(result["time"], tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    loop = result["loop"]
    lines = [f"target {result['target']} at {when} ({loop['queries']} queries, {loop['seconds']:.3f} s)", "signals:"]
    for name, value in result["signals"].items():
        if name == "newest_sample_time" and value is not None:
            text = f"{result['time'] - value:.0f} s ago"
        else:
            text = _fmt(value, result["unit"] if name == "load" else _UNITS.get(name, ""))
        if name in result["problems"]:
            text += f"  [{result['problems'][name]}: {result['details'].get(name, '')}]"
        lines.append(f"  {name:<24}{text}")
    c = result["cluster"]
    nodes = c["gpu_nodes"]
    ready = sum(1 for n in nodes.values() if n["ready"])
    gpus = sum(n["allocatable_gpus"] for n in nodes.values() if n["ready"])
    lines += [
        "cluster (kube-state-metrics):",
        f"  replicas {_fmt(c['spec_replicas'])} desired, {_fmt(c['ready_replicas'])} ready; pods "
        f"{_fmt(c['pending_pods'])} pending, {_fmt(c['unschedulable_pods'])} unschedulable",
        f"  GPU nodes {ready} ready of {len(nodes)}, {gpus:g} GPUs allocatable on ready nodes",
    ]
    lt = result["lead_times"]
    learned = lt["learned"] or {}
    lines += [
        f"lead times ({lt['source']}; {learned.get('samples', 0)} start-ups measured, "
        f"{learned.get('waited', 0)} waited for a node, {learned.get('warm', 0)} warm):",
        f"  node ready {lt['node_ready']:.0f} s, pod start warm {lt['pod_start_warm']:.0f} s, "
        f"fresh {lt['pod_start_fresh']:.0f} s, total {lt['total']:.0f} s",
    ]
    fc = result["forecast"]
    if "error" in fc:
        lines += ["forecast:", f"  unavailable: {fc['error']}"]
    else:
        stats = ", ".join(f"{k} {_fmt(v)}" for k, v in fc.items() if k == "mean" or k.startswith("p"))
        lines += [
            f"forecast ({fc['model']}, {fc['history_points']} points of history):",
            f"  in {fc['horizon_seconds']:.0f} s: {stats} {result['unit']}",
        ]
    return "\n".join(lines)
