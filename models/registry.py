"""Build a forecaster from configuration: model type name plus the target's time grid.

The controller's configuration names a model type and knows the scrape step; this is
the one place that turns seconds into season lengths in points and wires the
automatic selector's candidates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

from models.auto import AutoSelector
from models.base import Forecaster, check_request
from models.direct import DirectRegression
from models.holt_winters import HoltWinters
from models.linear import LinearTrend
from models.naive import Naive, SeasonalNaive
from models.stl_arima import StlArima

MODEL_TYPES: frozenset[str] = frozenset(
    {"naive", "direct", "seasonal_naive", "holt_winters", "stl_arima", "linear_trend", "auto"}
)
SEASONAL_TYPES: frozenset[str] = frozenset({"seasonal_naive", "holt_winters", "stl_arima"})
LINEAR_WINDOW_SECONDS = 3600.0  # LinearTrend fits the last hour (at least 6 points)


def season_points(seasons_seconds: Sequence[float], step_seconds: float) -> list[int]:
    """Season lengths in points, ascending.

    Args:
        seasons_seconds: Season lengths in seconds.
        step_seconds: Seconds between points.

    Returns:
        The distinct lengths in points.

    Raises:
        ValueError: If a season is not a whole number of steps or is shorter than 2 steps.
    """
    points = set()
    for seconds in seasons_seconds:
        ratio = seconds / step_seconds
        if not math.isfinite(ratio) or abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
            raise ValueError(f"season {seconds} s is not a whole number of {step_seconds} s steps")
        if round(ratio) < 2:
            raise ValueError(f"season {seconds} s is shorter than 2 steps of {step_seconds} s")
        points.add(round(ratio))
    return sorted(points)


def _factory(model_type: str, seasons: list[int], step_seconds: float, horizon: int) -> Callable[[], Forecaster]:
    """A factory of unfitted forecasters of a non-auto type."""
    if model_type in SEASONAL_TYPES and not seasons:
        raise ValueError(f"model type {model_type!r} needs at least one season")
    if model_type == "naive":
        return Naive
    if model_type == "direct":
        return functools.partial(DirectRegression, horizon, seasons[0] if seasons else None)
    if model_type == "linear_trend":
        window = max(6, round(LINEAR_WINDOW_SECONDS / step_seconds))
        return functools.partial(LinearTrend, window)
    if model_type == "seasonal_naive":
        return functools.partial(SeasonalNaive, seasons)
    if model_type == "holt_winters":
        return functools.partial(HoltWinters, seasons[0])
    return functools.partial(StlArima, seasons[0])


def build_forecaster(
    model_type: str,
    *,
    step_seconds: float,
    seasons_seconds: Sequence[float] = (86400.0, 604800.0),
    horizon: int,
    quantile: float = 0.9,
    candidates: Sequence[str] | None = None,
) -> Forecaster:
    """Build an unfitted forecaster.

    Holt-Winters and STL-ARIMA use the shortest season (daily by default).
    Seasonal-naive gets every season and, at each fit, uses the longest one the
    history covers twice (weekly from 2 weeks of data, else daily). "auto" selects
    among `candidates` (default: every other type; seasonal ones only with seasons).

    Args:
        model_type: One of MODEL_TYPES.
        step_seconds: Seconds between points of the series the model will see.
        seasons_seconds: Season lengths in seconds, each a whole number of steps.
        horizon: Forecast horizon in points; "auto" backtests at this horizon.
        quantile: Policy quantile; "auto" scores candidates at it.
        candidates: Model types "auto" chooses from; only valid with "auto".

    Returns:
        The unfitted forecaster.

    Raises:
        ValueError: On an unknown type or candidate, or an invalid argument.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; expected one of {sorted(MODEL_TYPES)}")
    if not (math.isfinite(step_seconds) and step_seconds > 0):
        raise ValueError(f"step_seconds must be finite and > 0, got {step_seconds!r}")
    check_request(horizon, (quantile,))
    seasons = season_points(seasons_seconds, step_seconds)
    if model_type != "auto":
        if candidates is not None:
            raise ValueError(f"candidates only apply to model type 'auto', not {model_type!r}")
        return _factory(model_type, seasons, step_seconds, horizon)()
    if candidates is None:
        names = sorted(MODEL_TYPES - {"auto"} - (set() if seasons else SEASONAL_TYPES))
    else:
        names = list(candidates)
        unknown = [n for n in names if n not in MODEL_TYPES or n == "auto"]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"candidates must be distinct non-auto model types, got {list(candidates)}")
    order = ["naive", "direct", "linear_trend", "seasonal_naive", "holt_winters", "stl_arima"]
    names.sort(key=order.index)  # simpler models first: they win ties
    return AutoSelector(
        [_factory(n, seasons, step_seconds, horizon) for n in names], horizon=horizon, quantile=quantile
    )
