"""Present simulation results: a table on stdout, a JSON file and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.offline.sim.engine import ATTRIBUTION, PolicyResult

COLUMNS = (
    ("policy", "policy", "{}"),
    ("slo_attainment_pct", "SLO %", "{:.2f}"),
    ("failed_requests", "failed", "{:,}"),
    ("gpu_node_hours", "GPU node-h", "{:.1f}"),
    ("vs_oracle", "x oracle", "{:.2f}"),
    ("scale_events", "scale ev.", "{}"),
    ("placeholder_events", "placeh. ev.", "{}"),
    ("p95_latency_ms", "p95 ms", "{:.0f}"),
)


def summaries(results: Sequence[PolicyResult]) -> list[dict[str, Any]]:
    """One summary row per policy, with GPU-hours relative to the oracle."""
    oracle = next((r.gpu_node_hours for r in results if r.name == "oracle"), None)
    return [r.summary(oracle) for r in results]


Column = tuple[str, str, str]
"""``(row key, title, format)`` of one table column."""


def _cells(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[list[str]]:
    body = []
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value))
        body.append(cells)
    return body


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column] = COLUMNS) -> str:
    """A fixed-width text table of the summary rows (a missing or ``None`` value prints ``-``)."""
    header = [title for _, title, _ in columns]
    body = _cells(rows, columns)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def format_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column] = COLUMNS) -> str:
    """The same table in Markdown (for issues, pull requests and reports)."""
    header = [title for _, title, _ in columns]
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows, columns)]
    return "\n".join(lines)


def format_verdict(verdict: Mapping[str, bool], *, policy: str = "predictive") -> str:
    """One line: which baselines ``policy`` beats on SLO and node-hours at once."""
    cells = [f"{name} {'yes' if beats else 'NO'}" for name, beats in verdict.items()]
    overall = "beats every baseline" if all(verdict.values()) else "does not beat every baseline"
    return f"Pareto verdict ({policy} better on SLO and GPU node-hours at once): {', '.join(cells)} -> {overall}"


ATTRIBUTION_COLUMNS: tuple[Column, ...] = (
    ("policy", "policy", "{}"),
    ("gpu_node_hours", "total", "{:.1f}"),
    *((f"hours_{k}", k, "{:.1f}") for k in ATTRIBUTION),
)


def format_attribution(rows: Sequence[Mapping[str, Any]]) -> str:
    """Node-hours per policy split by what they bought (see `PolicyResult.attribution`)."""
    return format_table(rows, ATTRIBUTION_COLUMNS)


def write_json(
    path: Path,
    *,
    meta: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the run's settings and summary rows (and extra sections, e.g. the trade-off)."""
    doc = {"meta": dict(meta), "results": list(rows), **(extra or {})}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def plot(
    path: Path,
    results: Sequence[PolicyResult],
    *,
    dt: float,
    title: str,
    slo_seconds: float,
    per_replica: float,
) -> None:
    """PNG: load and forecast band; replicas, placeholders and nodes; latency vs SLO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r.name: r for r in results}
    fig, axes = plt.subplots(3, 1, figsize=(14, 10), sharex=True)
    first = results[0].series
    hours = (np.arange(first["load"].size) * dt) / 3600.0
    ax = axes[0]
    ax.plot(hours, first["load"], lw=0.5, color="black", label="load (req/s)")
    pred = by_name.get("predictive")
    if pred is not None:
        plot_forecast_band(ax, hours, pred)
    ax.set_ylabel("req/s")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    ax = axes[1]
    colors = {
        "predictive": "tab:blue",
        "hpa": "tab:red",
        "hpa-concurrency": "tab:orange",
        "naive-seasonal": "tab:brown",
        "oracle": "tab:green",
        "static": "tab:gray",
    }
    for r in results:
        ax.plot(hours, r.series["ready"], lw=0.8, color=colors.get(r.name), label=f"{r.name} ready")
        ax.plot(hours, r.series["nodes"], lw=0.6, ls=":", color=colors.get(r.name), label=f"{r.name} nodes")
    if pred is not None:
        ax.plot(
            hours, pred.series["placeholders"], lw=0.6, ls="--", color="tab:purple", label="predictive placeholders"
        )
    ax.plot(hours, first["load"] / per_replica, lw=0.5, color="black", alpha=0.5, label="load / perReplica")
    ax.set_ylabel("replicas / nodes")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax = axes[2]
    for r in results:
        ax.plot(hours, np.minimum(r.series["latency"], 10.0), lw=0.6, color=colors.get(r.name), label=r.name)
    ax.axhline(slo_seconds, color="black", ls="--", lw=0.8, label="SLO")
    ax.set_yscale("log")
    ax.set_ylabel("mean latency (s, capped at 10)")
    ax.set_xlabel("hours since simulation start")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_forecast_band(ax: Any, hours: Any, result: Any) -> None:
    """Draw a predictive run's forecast mean and its band up to the policy quantile."""
    ax.plot(
        hours, result.series["forecast_mean"], lw=0.8, color="tab:blue", label="forecast mean (one cold start ahead)"
    )
    ax.fill_between(
        hours,
        result.series["forecast_mean"],
        result.series["forecast_q"],
        color="tab:blue",
        alpha=0.25,
        label="forecast band to policy quantile",
    )
