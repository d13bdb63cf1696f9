"""The cost knob's trade-off curve: SLO attainment against GPU node-hours, one point per quantile.

Why: ``forecast.quantile`` is the one knob that trades GPU-hours for SLO attainment, and the
newsvendor reading of it (:mod:`autoscaler.policy.cost`) turns each quantile into the cost
ratio it implies (what one under-provisioned replica-minute is worth in idle GPU-hours).
An operator picks a setting by seeing the whole curve on *their* load at once, next to
the reactive HPA (what they run today) and the oracle (the cost floor), rather than by
running one simulation per guess. ``autoscaler simulate --tradeoff`` and ``autoscaler
backtest --tradeoff`` both draw it with the functions here.

Every point is the same predictive policy at a fixed ``forecast.quantile`` (its ``cost``
section, which would choose the level itself, left out), run on the same scenario and
the same noisy load as the reference policies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.sim.engine import PolicyResult, Scenario, run_policy
from autoscaler.policy.cost import QUANTILE_MAX, QUANTILE_MIN, cost_ratio_for_quantile
from autoscaler.policy.schema import Target

#: Quantiles swept when ``--tradeoff`` is given without a list.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def parse_quantiles(text: str) -> tuple[float, ...]:
    """``"0.5,0.9,0.95"`` -> sorted, de-duplicated quantiles within the policy's bounds.

    Raises:
        ValueError: an entry is not a number, or lies outside ``[0.5, 0.999]`` (the bounds
            of ``forecast.quantile``, so every point is a policy one could deploy).
    """
    values: set[float] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        try:
            q = float(part)
        except ValueError:
            raise ValueError(f"--tradeoff: {part!r} is not a number") from None
        if not QUANTILE_MIN <= q <= QUANTILE_MAX:
            raise ValueError(f"--tradeoff: quantile {q:g} is outside [{QUANTILE_MIN:g}, {QUANTILE_MAX:g}]")
        values.add(q)
    if not values:
        raise ValueError("--tradeoff: no quantiles given")
    return tuple(sorted(values))


def with_quantile(target: Target, quantile: float) -> Target:
    """The target sized at a fixed ``forecast.quantile``.

    A ``cost`` section would derive the quantile (and pick the peak level from the
    history) itself, so it is dropped: each point is one fixed level.
    """
    return dataclasses.replace(target, cost=None, forecast=dataclasses.replace(target.forecast, quantile=quantile))


def run_tradeoff(
    scenario: Scenario,
    target: Target,
    quantiles: Sequence[float],
    *,
    load: NDArray[np.float64],
    loop_interval: float = 30.0,
    known: Mapping[float, PolicyResult] | None = None,
    initial_replicas: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[float, PolicyResult]]:
    """Run the predictive policy once per quantile on the same scenario and load.

    Args:
        scenario: The scenario every point shares.
        target: The predictive target; only its quantile changes between points.
        quantiles: The quantiles to run.
        load: The shared per-step load (same noise as the reference runs).
        loop_interval: Controller loop period in seconds.
        known: Results already computed for some quantiles (e.g. the main predictive run),
            reused instead of simulated again.
        initial_replicas: Serving replicas at the start (see :func:`run_policy`).
        progress: Called with steps done, as in :func:`run_policy`.

    Returns:
        ``(quantile, result)`` in the order of ``quantiles``.
    """
    known = known or {}
    out = []
    for q in quantiles:
        result = known.get(q)
        if result is None:
            result = run_policy(
                "predictive",
                scenario,
                with_quantile(target, q),
                loop_interval=loop_interval,
                load=load,
                progress=progress,
                initial_replicas=initial_replicas,
                label=f"q={q:g}",
            )
        elif progress is not None:
            progress(load.size)
        out.append((q, result))
    return out


def tradeoff_rows(points: Sequence[tuple[float, PolicyResult]], *, gpus_per_replica: int = 1) -> list[dict[str, Any]]:
    """One JSON-ready row per quantile: the cost ratio it implies, SLO %, node-hours, events."""
    return [
        {
            "quantile": q,
            "cost_ratio": float(f"{cost_ratio_for_quantile(q, gpus_per_replica):.6g}"),
            "slo_attainment_pct": round(100 * r.slo_attainment, 3),
            "gpu_node_hours": round(r.gpu_node_hours, 2),
            "failed_requests": round(r.failed),
            "scale_events": r.serving_scale_events,
        }
        for q, r in points
    ]


def format_tradeoff(rows: Sequence[Mapping[str, Any]], references: Sequence[Mapping[str, Any]] = ()) -> str:
    """Fixed-width table: one line per quantile, then the reference policies (no quantile).

    ``cost ratio`` is ``u/c``: the cost of one under-provisioned replica-minute in idle
    GPU-hours that makes the quantile cost-optimal.
    """
    header = ("policy", "quantile", "cost ratio u/c", "SLO %", "GPU node-h", "scale ev.")
    body = [
        (
            "predictive",
            f"{r['quantile']:g}",
            f"{r['cost_ratio']:.4g}",
            f"{r['slo_attainment_pct']:.2f}",
            f"{r['gpu_node_hours']:.1f}",
            str(r["scale_events"]),
        )
        for r in rows
    ]
    for ref in references:
        hours = ref.get("gpu_node_hours")
        body.append(
            (
                str(ref["policy"]),
                "-",
                "-",
                f"{ref['slo_attainment_pct']:.2f}",
                "-" if hours is None else f"{hours:.1f}",
                str(ref.get("scale_events", "-")),
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


#: Marker and colour of each reference policy on the trade-off plot.
_REFERENCE_STYLE = {
    "hpa": ("X", "tab:red"),
    "oracle": ("*", "tab:green"),
    "static": ("s", "tab:gray"),
    "recorded": ("D", "black"),
}


def plot_tradeoff(
    path: Path,
    rows: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]] = (),
    *,
    title: str,
) -> None:
    """PNG: SLO attainment (%) against GPU node-hours; the quantile curve and reference points.

    Each curve point is labelled with its quantile and the cost ratio ``u/c`` it implies.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    xs = [float(r["gpu_node_hours"]) for r in rows]
    ys = [float(r["slo_attainment_pct"]) for r in rows]
    ax.plot(xs, ys, "-o", color="tab:blue", lw=1.5, ms=6, label="predictive, one point per forecast.quantile")
    for i, (r, x, y) in enumerate(zip(rows, xs, ys, strict=True)):
        # Neighbouring quantiles often sit close together: label them alternately below and above.
        below = i % 2 == 0
        ax.annotate(
            f"q={r['quantile']:g}\nu/c={r['cost_ratio']:.3g}",
            (x, y),
            textcoords="offset points",
            xytext=(6, -22) if below else (-6, 10),
            ha="left" if below else "right",
            fontsize=8,
            color="tab:blue",
        )
    for ref in references:
        hours = ref.get("gpu_node_hours")
        if hours is None:
            continue
        marker, color = _REFERENCE_STYLE.get(str(ref["policy"]), ("o", "tab:orange"))
        ax.plot(
            [hours], [ref["slo_attainment_pct"]], marker=marker, color=color, ms=11, ls="", label=str(ref["policy"])
        )
        ax.annotate(
            str(ref["policy"]),
            (hours, ref["slo_attainment_pct"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=9,
            color=color,
        )
    all_y = ys + [float(r["slo_attainment_pct"]) for r in references]
    low = min(all_y) if all_y else 0.0
    ax.set_ylim(max(0.0, low - 0.1 * max(1.0, 100.0 - low) - 0.5), 100.5)
    ax.set_xlabel("GPU node-hours")
    ax.set_ylabel("SLO attainment (% of requests within the latency SLO)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.text(
        0.01,
        0.01,
        "u/c: cost of one under-provisioned replica-minute in idle GPU-hours that makes the quantile "
        "cost-optimal (newsvendor q* = 60u / (60u + g c))",
        fontsize=7,
        color="dimgray",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
