"""Forecast scoring and rolling-origin backtests, shared by `AutoSelector` and the benchmarks.

Pinball (quantile) loss scores exactly what the controller consumes, a quantile of
future load; coverage checks calibration; the backtest replays the fit/update/predict
life cycle the controller runs, so scores reflect production use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.base import Forecaster, Prediction
from models.series import Series


def pinball_loss(y: ArrayLike, q_pred: ArrayLike, q: float) -> float:
    """Mean pinball (quantile) loss of forecasts `q_pred` of level `q` against actuals `y`.

    Args:
        y: Actual values; NaN entries are ignored.
        q_pred: Forecast q-quantiles, broadcastable to y.
        q: Level in (0, 1).

    Returns:
        The mean loss over finite actuals, NaN if there are none.

    Raises:
        ValueError: If q is outside (0, 1).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level {q!r} is outside (0, 1)")
    actual, pred = np.broadcast_arrays(np.asarray(y, float), np.asarray(q_pred, float))
    known = np.isfinite(actual)
    if not known.any():
        return math.nan
    diff = actual[known] - pred[known]
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff)))


def interval_coverage(y: ArrayLike, upper: ArrayLike) -> float:
    """Fraction of actuals at or below the forecast upper bound.

    Args:
        y: Actual values; NaN entries are ignored.
        upper: Upper bounds (e.g. the P90 forecast), broadcastable to y.

    Returns:
        The covered fraction of finite actuals, NaN if there are none.
    """
    actual, bound = np.broadcast_arrays(np.asarray(y, float), np.asarray(upper, float))
    known = np.isfinite(actual)
    if not known.any():
        return math.nan
    return float(np.mean(actual[known] <= bound[known]))


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Forecasts from several origins against what actually happened.

    Attributes:
        model: Model name reported by the first prediction.
        origins: Index (points of history used) of each forecast origin.
        predictions: One Prediction per origin.
        actuals: Shape (n_origins, horizon); NaN where the actual is unknown.
        pinball: Level -> mean pinball loss over all origins and steps.
        coverage: Level -> fraction of actuals at or below that quantile.
        mae: Mean absolute error of the mean forecast.
    """

    model: str
    origins: NDArray[np.int64]
    predictions: tuple[Prediction, ...]
    actuals: NDArray[np.float64]
    pinball: Mapping[float, float]
    coverage: Mapping[float, float]
    mae: float

    def score(self, quantile: float) -> float:
        """Selection score: pinball loss at `quantile` plus at the median.

        Args:
            quantile: The policy level; must have been backtested along with 0.5.

        Returns:
            The sum of both losses.

        Raises:
            KeyError: If either level was not part of the backtest.
        """
        return self.pinball[quantile] + self.pinball[0.5]


def backtest_origins(length: int, *, horizon: int, n_origins: int, stride: int) -> list[int]:
    """Origins (history lengths) of a rolling-origin backtest, oldest first.

    The last origin leaves exactly `horizon` points to score; the others are `stride`
    points apart before it. Origins that would leave no history are dropped.

    Args:
        length: Length of the series.
        horizon: Points predicted from each origin.
        n_origins: Number of origins wanted.
        stride: Points between consecutive origins (>= 1).

    Returns:
        Up to `n_origins` history lengths, ascending.
    """
    last = length - horizon
    return [o for o in (last - k * stride for k in range(n_origins - 1, -1, -1)) if o >= 1]


def rolling_origin_backtest(
    series: Series,
    factory: Callable[[], Forecaster],
    *,
    horizon: int,
    quantiles: Sequence[float],
    n_origins: int,
    stride: int,
    refit_every: int | None = None,
) -> BacktestResult:
    """Replay fit/update/predict over the series and score the forecasts.

    At each origin the model sees series[:origin] and predicts the next `horizon`
    points. It is fitted at the first origin and then, every `refit_every` origins,
    refitted; at other origins it is only `update`d, as the controller does.

    Args:
        series: The full history.
        factory: Builds a fresh, unfitted forecaster.
        horizon: Points predicted from each origin (>= 1).
        quantiles: Levels to predict and score.
        n_origins: Number of origins (>= 1).
        stride: Points between consecutive origins (>= 1).
        refit_every: Refit period in origins; None fits only at the first origin.

    Returns:
        The BacktestResult.

    Raises:
        ValueError: On invalid arguments or a series too short for any origin.
        ForecastError: Whatever the model raises (e.g. InsufficientHistory).
    """
    if horizon < 1 or n_origins < 1 or stride < 1 or (refit_every is not None and refit_every < 1):
        raise ValueError("horizon, n_origins, stride and refit_every must be >= 1")
    origins = backtest_origins(len(series), horizon=horizon, n_origins=n_origins, stride=stride)
    if not origins:
        raise ValueError(f"a series of {len(series)} points is too short for horizon {horizon}")
    model = factory()
    predictions: list[Prediction] = []
    for k, origin in enumerate(origins):
        history = Series(start=series.start, step=series.step, values=series.values[:origin])
        if k == 0 or (refit_every is not None and k % refit_every == 0):
            model = factory().fit(history) if k else model.fit(history)
        else:
            model.update(history)
        predictions.append(model.predict(horizon, quantiles))
    actuals = np.array([series.values[o : o + horizon] for o in origins], dtype=np.float64)
    levels = sorted({float(q) for q in quantiles})
    stacked = {q: np.array([p.quantiles[q] for p in predictions]) for q in levels}
    means = np.array([p.mean for p in predictions])
    known = np.isfinite(actuals)
    return BacktestResult(
        model=predictions[0].model,
        origins=np.array(origins, dtype=np.int64),
        predictions=tuple(predictions),
        actuals=actuals,
        pinball={q: pinball_loss(actuals, stacked[q], q) for q in levels},
        coverage={q: interval_coverage(actuals, stacked[q]) for q in levels},
        mae=float(np.mean(np.abs(actuals - means)[known])) if known.any() else math.nan,
    )
