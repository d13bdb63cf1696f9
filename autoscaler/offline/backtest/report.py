"""What ``autoscaler backtest`` writes: the Markdown/JSON summary, ``result.json``, the PNGs and ``report.html``.

Why a module of its own: :mod:`autoscaler.offline.backtest.replay` fetches a target's history and replays
it; this module only renders what came out (a :class:`BacktestReport`), so the replay can be
read without the plotting and HTML, and the rendering tested on a report alone.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from autoscaler.offline.sim.engine import PolicyResult, Scenario
from autoscaler.offline.sim.report import ATTRIBUTION_COLUMNS, Column, format_markdown, plot_forecast_band
from autoscaler.offline.sim.tradeoff import format_tradeoff, plot_tradeoff

if TYPE_CHECKING:
    from autoscaler.offline.backtest.recorded import Recorded

#: Columns of the backtest table (the ``simulate`` table plus replica-hours).
COLUMNS: tuple[Column, ...] = (
    ("policy", "policy", "{}"),
    ("slo_attainment_pct", "SLO %", "{:.2f}"),
    ("failed_requests", "failed", "{:,}"),
    ("gpu_node_hours", "GPU node-h", "{:.1f}"),
    ("replica_hours", "replica-h", "{:.1f}"),
    ("vs_oracle", "x oracle", "{:.2f}"),
    ("scale_events", "scale ev.", "{}"),
    ("placeholder_events", "placeh. ev.", "{}"),
    ("p95_latency_ms", "p95 ms", "{:.0f}"),
)


@dataclass
class BacktestReport:
    """Everything one backtest produced."""

    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    results: list[PolicyResult]
    recorded: Recorded
    scenario: Scenario
    tradeoff: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def references(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows a trade-off curve is drawn against: the recorded reality, the HPA replay and the oracle."""
    return [r for r in rows if r["policy"] in ("recorded", "hpa", "oracle") and r["slo_attainment_pct"] is not None]


def headline(meta: Mapping[str, Any]) -> str:
    """One line: target, evaluated span, warm-up, cold start and gaps."""
    ev, cold = meta["evaluated"], meta["cold_start"]
    return (
        f"backtest {meta['target']}: {ev['days']:.2f} days evaluated ({ev['start_iso']} to {ev['end_iso']}) "
        f"after {ev['warmup_days']:.2f} days of warm-up; cold start {cold['total_seconds'] / 60:.1f} min "
        f"({cold['source']}); {ev['load_gap_buckets']} gap buckets"
    )


# ------------------------------------------------------------------------ outputs


def write_outputs(report: BacktestReport, out: Path, *, plot: bool) -> None:
    """Write ``result.json``, ``report.html`` and, when ``plot``, ``backtest.png`` and ``tradeoff.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    result = out / "result.json"
    result.write_text(
        json.dumps({"meta": report.meta, "results": report.rows, "tradeoff": report.tradeoff}, indent=2, default=str)
        + "\n"
    )
    report.files.append(result)
    images: list[tuple[str, Path]] = []
    if plot:
        png = out / "backtest.png"
        plot_backtest(png, report)
        images.append(("Recorded history and the replays", png))
        report.files.append(png)
        if report.tradeoff:
            trade = out / "tradeoff.png"
            plot_tradeoff(
                trade,
                report.tradeoff,
                references(report.rows),
                title=f"{report.meta['target']}: SLO attainment vs GPU node-hours per forecast quantile",
            )
            images.append(("Trade-off: one point per forecast quantile", trade))
            report.files.append(trade)
    page = out / "report.html"
    page.write_text(render_html(report, images))
    report.files.append(page)


def plot_backtest(path: Path, report: BacktestReport) -> None:
    """PNG: recorded load and forecast band; recorded and replayed replicas; latency vs SLO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec, scenario = report.recorded, report.scenario
    begin = round(scenario.warmup_seconds / rec.step)
    rec_hours = (np.arange(rec.size - begin) * rec.step) / 3600.0
    colors = {"predictive": "tab:blue", "candidate": "tab:orange", "hpa": "tab:red", "oracle": "tab:green"}
    fig, axes = plt.subplots(3, 1, figsize=(14, 10), sharex=True)
    ax = axes[0]
    ax.plot(rec_hours, rec.load[begin:], lw=0.6, color="black", label=f"recorded load ({report.meta['unit']})")
    gaps = np.isnan(rec.load[begin:])
    if gaps.any():
        ymax = float(np.nanmax(rec.load[begin:])) if np.isfinite(rec.load[begin:]).any() else 1.0
        ax.fill_between(rec_hours, 0, ymax, where=gaps, color="gold", alpha=0.3, step="post", label="no data (gap)")
    first = report.results[0]
    hours = (np.arange(first.series["load"].size) * scenario.dt) / 3600.0
    pred = next((r for r in report.results if r.name == "predictive"), None)
    if pred is not None:
        plot_forecast_band(ax, hours, pred)
    ax.set_ylabel(report.meta["unit"])
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(headline(report.meta), fontsize=9)
    ax = axes[1]
    # The reactive rows flap; draw them faint and underneath so the predictive ones stay readable.
    faint = {"hpa": 0.45}
    ax.step(
        rec_hours,
        rec.replicas()[begin:],
        where="post",
        lw=0.8,
        color="black",
        alpha=0.6,
        label="recorded desired replicas",
    )
    for r in sorted(report.results, key=lambda r: r.name not in faint):
        ax.plot(
            hours,
            r.series["ready"],
            lw=0.8,
            color=colors.get(r.name),
            alpha=faint.get(r.name, 1.0),
            label=f"{r.name} ready (replay)",
        )
    ax.set_ylabel("replicas")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax = axes[2]
    ax.plot(
        rec_hours,
        np.minimum(rec.latency[begin:], 10.0),
        lw=0.6,
        color="black",
        alpha=0.6,
        label="recorded mean latency",
    )
    for r in sorted(report.results, key=lambda r: r.name not in faint):
        ax.plot(
            hours,
            np.minimum(r.series["latency"], 10.0),
            lw=0.5,
            color=colors.get(r.name),
            alpha=faint.get(r.name, 1.0),
            label=r.name,
        )
    ax.axhline(report.meta["slo_seconds"], color="black", ls="--", lw=0.8, label="SLO")
    ax.set_yscale("log")
    ax.set_ylabel("mean latency (s, capped at 10)")
    ax.set_xlabel("hours since the evaluated span's start")
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in columns)
    body = []
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append(f"<td>{html.escape('-' if value is None else fmt.format(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


TRADEOFF_COLUMNS: tuple[Column, ...] = (
    ("quantile", "quantile", "{:g}"),
    ("cost_ratio", "cost ratio u/c", "{:.4g}"),
    ("slo_attainment_pct", "SLO %", "{:.2f}"),
    ("gpu_node_hours", "GPU node-h", "{:.1f}"),
    ("scale_events", "scale ev.", "{}"),
)


def render_html(report: BacktestReport, images: Sequence[tuple[str, Path]]) -> str:
    """A self-contained HTML page: title, results table, trade-off table, plots inline, assumptions."""
    meta = report.meta
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>backtest {html.escape(meta['target'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}code{background:#f4f4f4}</style>",
        "</head><body>",
        f"<h1>Backtest of {html.escape(meta['target'])}</h1>",
        f"<p>{html.escape(headline(meta))}</p>",
        "<h2>Results</h2>",
        _html_table(report.rows, COLUMNS),
    ]
    if report.tradeoff:
        parts += [
            "<h2>Trade-off (forecast quantile)</h2>",
            "<p>u/c: cost of one under-provisioned replica-minute in idle GPU-hours that makes the quantile "
            "cost-optimal.</p>",
            _html_table(report.tradeoff, TRADEOFF_COLUMNS),
        ]
    for caption, path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        )
    parts.append("<h2>Assumptions</h2><ul>")
    parts += [f"<li>{html.escape(a)}</li>" for a in meta["assumptions"]]
    parts.append("</ul><h2>Settings</h2>")
    settings = {k: v for k, v in meta.items() if k != "assumptions"}
    parts.append(f"<pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def print_summary(report: BacktestReport, out: IO[str] | None, *, as_json: bool, wall_seconds: float) -> None:
    """Print the report to ``out`` (stdout when ``None``): JSON, or the headline and Markdown tables."""
    meta, rows = report.meta, report.rows
    if as_json:
        print(json.dumps({"meta": meta, "results": rows, "tradeoff": report.tradeoff}, indent=2, default=str), file=out)
        return
    print(headline(meta), file=out)
    print(file=out)
    print(format_markdown(rows, COLUMNS), file=out)
    print("\nwhere the GPU node-hours went (replayed policies):", file=out)
    print(format_markdown([r for r in rows if "hours_needed" in r], ATTRIBUTION_COLUMNS), file=out)
    if report.tradeoff:
        print(file=out)
        print(format_tradeoff(report.tradeoff, references(rows)), file=out)
    print(file=out)
    print(f"wrote {', '.join(str(p) for p in report.files)} ({wall_seconds:.1f} s)", file=out)
