"""Cost and accuracy of every forecaster, so model defaults rest on measurements.

Run as `.venv/bin/python benchmarks/bench_models.py`. First, on every long shared trace
(ServeGen m-mid and m-small, Alibaba lora, NASA), each model's MAE 15-20 minutes ahead
as a ratio to persistence and to seasonal-naive, and its P90 coverage (`horizon_accuracy`).
Then, on synthetic 14-day series at
5-minute and 1-minute resolution it reports, per model type: median fit and update
time, and P90/P50 pinball loss, P90 coverage and MAE at the given horizon from a
rolling-origin backtest over the last two days, with the pinball loss and coverage
also as a ratio to seasonal-naive measured in the same run. Other benchmarks call
`model_costs_and_accuracy` on real traces.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models import MODEL_TYPES, Forecaster, Series, build_forecaster, rolling_origin_backtest

BASELINE = "seasonal_naive"
ORDER = ["naive", "direct", "linear_trend", "seasonal_naive", "holt_winters", "stl_arima", "auto"]


def _median_fit_seconds(build: Callable[[], Forecaster], series: Series, repeats: int) -> float:
    """Median wall time of fitting a fresh model on `series`."""
    times = []
    for _ in range(repeats):
        model = build()
        start = time.perf_counter()
        model.fit(series)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _median_update_seconds(fitted: Forecaster, series: Series, repeats: int) -> float:
    """Median wall time of updating copies of a fitted model with `series`."""
    times = []
    for _ in range(repeats):
        model = copy.deepcopy(fitted)
        start = time.perf_counter()
        model.update(series)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_costs_and_accuracy(
    series: Series,
    horizon: int,
    *,
    repeats: int = 5,
    backtest_days: float = 2.0,
    model_types: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Fit/update cost and backtest accuracy of each model type on one series.

    Fit time is for the whole series; update time for one new point after a fit on all
    but the last point. Accuracy comes from a rolling-origin backtest (fit at the first
    origin, then update, as the controller does) with origins `horizon` points apart
    over the last `backtest_days` (fewer if the first origin would leave a model short
    of its `min_history`).

    Args:
        series: The history, on a step that divides a day and a week.
        horizon: Forecast horizon in points.
        repeats: Timing repetitions (medians are reported).
        backtest_days: Span of the backtest origins.
        model_types: Types to measure; default all, seasonal-naive always included.

    Returns:
        One dict per model with keys model, fit_s, update_ms, pinball_p90, pinball_p50,
        coverage_p90, mae, pinball_ratio and coverage_ratio (both vs seasonal-naive).

    Raises:
        ValueError: If the series step does not suit the default seasons or is too short.
    """
    types = [t for t in ORDER if t in set(model_types or MODEL_TYPES) | {BASELINE}]
    head = Series(start=series.start, step=series.step, values=series.values[:-1])
    need = max(build_forecaster(t, step_seconds=series.step, horizon=horizon).min_history() for t in types)
    room = (len(series) - horizon - need) // horizon + 1  # origins keeping `need` points
    if room < 1:
        raise ValueError(f"{len(series)} points are too few to backtest models needing {need}")
    n_origins = min(room, max(1, round(backtest_days * 86400.0 / series.step / horizon)))
    rows: list[dict[str, Any]] = []
    for model_type in types:
        build = functools.partial(build_forecaster, model_type, step_seconds=series.step, horizon=horizon)
        fit_s = _median_fit_seconds(build, series, repeats)
        fitted = build().fit(head)
        update_s = _median_update_seconds(fitted, series, repeats)
        result = rolling_origin_backtest(
            series, build, horizon=horizon, quantiles=(0.5, 0.9), n_origins=n_origins, stride=horizon
        )
        rows.append(
            {
                "model": model_type,
                "fit_s": fit_s,
                "update_ms": 1000.0 * update_s,
                "pinball_p90": result.pinball[0.9],
                "pinball_p50": result.pinball[0.5],
                "coverage_p90": result.coverage[0.9],
                "mae": result.mae,
                "selected": getattr(fitted, "selected", None),
            }
        )
    base = next(row for row in rows if row["model"] == BASELINE)
    for row in rows:
        row["pinball_ratio"] = row["pinball_p90"] / base["pinball_p90"]
        row["coverage_ratio"] = row["coverage_p90"] / base["coverage_p90"]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `model_costs_and_accuracy` rows.

    Args:
        rows: The rows to print.

    Returns:
        The table, one line per model.
    """
    lines = [
        f"{'model':<20}{'fit s':>8}{'update ms':>11}{'P90 pinball':>13}{'vs snaive':>11}"
        f"{'P90 cover':>11}{'vs snaive':>11}{'P50 pinball':>13}{'MAE':>8}"
    ]
    for row in rows:
        name = row["model"] + (f"({row['selected']})" if row["selected"] else "")
        lines.append(
            f"{name:<20}{row['fit_s']:>8.3f}{row['update_ms']:>11.2f}{row['pinball_p90']:>13.3f}"
            f"{row['pinball_ratio']:>11.3f}{row['coverage_p90']:>11.3f}"
            f"{row['coverage_ratio']:>11.3f}{row['pinball_p50']:>13.3f}{row['mae']:>8.3f}"
        )
    return "\n".join(lines)


#: Long shared traces the forecast table covers (../shared/traces, see its README).
RAW = Path(__file__).resolve().parents[2] / "shared" / "traces" / "raw"
SHARED_TRACES = {
    "servegen-m-mid": RAW / "alibaba_servegen" / "language" / "m-mid",
    "servegen-m-small": RAW / "alibaba_servegen" / "language" / "m-small",
    "alibaba-lora": RAW / "alibaba_genai_2026" / "lora_request_trace.csv",
    "nasa-http-1995": RAW / "nasa_http_1995" / "workload.tbz2",
}
#: Steps ahead (5-minute buckets) scored: 15-20 minutes, the GPU cold start.
LEAD_STEPS = (3, 4)


def horizon_accuracy(series: Series, *, eval_days: float = 3.0, refit_days: float = 1.0) -> list[dict[str, Any]]:
    """MAE and P90 coverage 15-20 min ahead per model, against persistence and seasonal-naive.

    The controller's life cycle over the last ``eval_days``: each model is fitted at the
    first origin and every ``refit_days``, updated on every new bucket, and predicts from
    every origin; the median forecast 3 and 4 steps ahead is scored by its MAE, the 0.9
    quantile by its coverage. ``persistence`` is the last observed value and
    ``seasonal_naive_1d`` the value one day before the target, both scored on the same
    points (the ratios' denominators).

    Returns:
        One dict per model: model, mae, mae_vs_persistence, mae_vs_snaive, coverage_p90.
    """
    from models.gaps import fill_gaps

    step = series.step
    day = round(86400.0 / step)
    n = len(series)
    first = n - round(eval_days * 86400.0 / step) - max(LEAD_STEPS)
    actual = fill_gaps(np.asarray(series.values, dtype=np.float64))
    known = np.isfinite(series.values)
    origins = np.arange(first, n - max(LEAD_STEPS))
    targets = {h: origins + h for h in LEAD_STEPS}
    ok = {h: known[targets[h]] & known[origins] for h in LEAD_STEPS}

    def mae(pred: dict[int, NDArray[np.float64]]) -> float:
        return float(np.mean(np.concatenate([np.abs(pred[h] - actual[targets[h]])[ok[h]] for h in LEAD_STEPS])))

    persistence = mae(dict.fromkeys(LEAD_STEPS, actual[origins]))
    snaive = mae({h: actual[targets[h] - day] for h in LEAD_STEPS})
    rows = []
    for model_type in ("naive", "direct", "seasonal_naive", "linear_trend", "holt_winters", "stl_arima", "auto"):
        model = build_forecaster(model_type, step_seconds=step, horizon=max(LEAD_STEPS))
        median = {h: np.full(origins.size, np.nan) for h in LEAD_STEPS}
        upper = {h: np.full(origins.size, np.nan) for h in LEAD_STEPS}
        fitted_at: int | None = None
        for i, origin in enumerate(origins):
            history = Series(start=series.start, step=step, values=series.values[: origin + 1])
            if fitted_at is None or origin - fitted_at >= refit_days * day:
                model.fit(history)
                fitted_at = origin
            else:
                model.update(history)
            prediction = model.predict(max(LEAD_STEPS), (0.5, 0.9))
            for h in LEAD_STEPS:
                median[h][i] = prediction.quantiles[0.5][h - 1]
                upper[h][i] = prediction.quantiles[0.9][h - 1]
        error = mae(median)
        cover = np.concatenate([(actual[targets[h]] <= upper[h])[ok[h]] for h in LEAD_STEPS])
        rows.append(
            {
                "model": model_type,
                "mae": error,
                "mae_vs_persistence": error / persistence,
                "mae_vs_snaive": error / snaive,
                "coverage_p90": float(np.mean(cover)),
            }
        )
    return rows


def format_horizon_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `horizon_accuracy` rows."""
    lines = [f"{'model':<16}{'MAE':>10}{'/ persistence':>15}{'/ snaive 1d':>13}{'P90 cover':>11}"]
    for row in rows:
        lines.append(
            f"{row['model']:<16}{row['mae']:>10.3f}{row['mae_vs_persistence']:>15.3f}"
            f"{row['mae_vs_snaive']:>13.3f}{row['coverage_p90']:>11.3f}"
        )
    return "\n".join(lines)


def shared_trace_series(path: Path, step: float = 300.0) -> Series:
    """A shared trace on the forecasters' 5-minute grid (gaps stay NaN)."""
    from autoscaler.offline.traces import load_trace

    trace = load_trace(str(path))
    trace = trace.resample(step) if trace.step < step else trace.fill_gaps().resample(step)
    return Series(start=trace.start, step=step, values=np.asarray(trace.rates, dtype=np.float64))


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark all models on synthetic 14-day series at 5-minute and 1-minute steps.

    Args:
        argv: Command-line arguments (default sys.argv[1:]).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing repetitions")
    parser.add_argument("--horizon", type=int, default=3, help="forecast horizon in points")
    parser.add_argument("--days", type=float, default=14.0, help="length of the series")
    parser.add_argument("--skip-synthetic", action="store_true", help="only the shared-trace forecast table")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.models.synthetic import synthetic_series  # lives with the tests

    print("## forecast accuracy 15-20 min ahead on the long shared traces (5-min buckets, last 3 days, refit daily)")
    for name, path in SHARED_TRACES.items():
        if not path.exists():
            print(f"\n### {name}: missing ({path})")
            continue
        print(f"\n### {name}")
        print(format_horizon_table(horizon_accuracy(shared_trace_series(path))))
    if args.skip_synthetic:
        return 0

    for step in (300.0, 60.0):
        series = synthetic_series(days=args.days, step=step, seed=11, weekly=0.15)
        print(
            f"\n{args.days:g} days at {step:g} s ({len(series)} points), horizon {args.horizon}, "
            f"median of {args.repeats}; backtest over the last 2 days at most"
        )
        print(format_table(model_costs_and_accuracy(series, args.horizon, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
