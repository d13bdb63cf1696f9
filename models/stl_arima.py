"""STL + ARIMA: seasonal decomposition, then ARIMA on the deseasonalised load.

Seasonal SARIMAX with a 288-point (daily, 5-minute) season does not finish in minutes,
so the season is removed by STL (LOESS with "jumps": 0.74 s -> 0.024 s on 14 days of
5-minute data, seasonal component within 0.006 req/s) and a small ARIMA models what is
left, as statsmodels' `STLForecast` does: the forecast season repeats the last
estimated cycle. statsmodels estimates the ARIMA coefficients; the one-step
innovations and multi-step forecasts are computed here, so `update` and the in-sample
h-step errors behind the intervals stay cheap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.seasonal import STL

from models.residual import ResidualModel
from models.series import Series

# A local-mean (degree 0) seasonal smoother over 13 cycles: the default (7 cycles, degree
# 1) extrapolates noise into the last cycle, which is the one that is forecast.
STL_SEASONAL_WINDOW = 13
STL_SEASONAL_DEG = 0
ARIMA_FIT_POINTS = 4032  # the ARIMA is estimated on at most this many recent points


def _odd(value: float) -> int:
    """Smallest odd integer >= value."""
    n = math.ceil(value)
    return n if n % 2 else n + 1


def _own_cycle_weight(window: int) -> float:
    """Weight the seasonal smoother gives the adjacent cycle (tricube LOESS, interior)."""
    half = (window - 1) / 2.0
    distance = np.arange(-half, half + 1)
    weights = (1.0 - np.abs(distance / (half + 1.0)) ** 3) ** 3
    return float(weights[int(half) + 1] / weights.sum())


def stl_seasonal(y: NDArray[np.float64], season: int) -> NDArray[np.float64]:
    """The seasonal component of a fast, non-robust STL decomposition.

    Args:
        y: Gap-filled load, at least two seasons long.
        season: Season length in points.

    Returns:
        The seasonal component, same length as y.
    """
    trend = _odd(1.5 * season / (1.0 - 1.5 / STL_SEASONAL_WINDOW))
    low_pass = _odd(season + 1)
    result = STL(
        y,
        period=season,
        seasonal=STL_SEASONAL_WINDOW,
        seasonal_deg=STL_SEASONAL_DEG,
        trend=trend,
        low_pass=low_pass,
        trend_jump=max(1, trend // 10),
        low_pass_jump=max(1, low_pass // 10),
    ).fit()
    return np.asarray(result.seasonal, dtype=np.float64)


class StlArima(ResidualModel):
    """ARIMA(p, d, q), d in {0, 1}, on STL-deseasonalised load; the last cycle repeats.

    Attributes:
        season: Season length in points.
        order: ARIMA order (p, d, q).
        ar: Estimated AR coefficients.
        ma: Estimated MA coefficients.
        mean: Estimated mean of the deseasonalised series (0 when d = 1).
    """

    name: ClassVar[str] = "stl_arima"

    def __init__(self, season: int, *, order: tuple[int, int, int] = (1, 1, 1)) -> None:
        """Create the model.

        Args:
            season: Season length in points.
            order: ARIMA (p, d, q) for the deseasonalised series; d must be 0 or 1.

        Raises:
            ValueError: If season < 2 or the order is invalid.
        """
        super().__init__()
        p, d, q = order
        if season < 2:
            raise ValueError(f"season must be >= 2 points, got {season}")
        if p < 0 or q < 0 or d not in (0, 1):
            raise ValueError(f"order must be (p >= 0, d in {{0, 1}}, q >= 0), got {order}")
        self.season = season
        self.order = order
        self.ar = np.zeros(p)
        self.ma = np.zeros(q)
        self.mean = 0.0
        self._seasonal = np.empty(0)
        self._z = np.empty(0)  # demeaned (differenced) deseasonalised series
        self._eps = np.empty(0)  # one-step innovations of the ARMA on z
        self._adjusted = np.empty(0)  # deseasonalised series
        #: Coefficients the next estimate takes instead of running the MLE (`fit_with_params`).
        self._known: tuple[NDArray[np.float64], NDArray[np.float64], float] | None = None

    def min_history(self) -> int:
        """Two full seasons (STL's minimum)."""
        return 2 * self.season

    def _gap_season(self) -> int:
        """Gaps are filled from one season back."""
        return self.season

    def _min_origin(self) -> int:
        """Skip the first season, while the innovations forget their zero start."""
        return self.season

    def _lookback(self) -> int:
        """A backcast reads the seasonal index one season back and the ARMA lags."""
        return max(self.season, *self.order[::2]) - 1

    def _drop_state(self, k: int) -> None:
        """Keep the decomposition and innovations from the window's new first point on."""
        self._seasonal = self._seasonal[k:].copy()
        self._z = self._z[k:].copy()
        self._eps = self._eps[k:].copy()
        self._adjusted = self._adjusted[k:].copy()

    def _error_inflation(self) -> float:
        """Undo the optimism of in-sample errors under a two-sided seasonal smoother.

        The seasonal index a backcast uses was smoothed over neighbouring cycles, so it
        already contains part of the value being predicted (the adjacent cycle's weight).
        """
        return 1.0 / (1.0 - _own_cycle_weight(STL_SEASONAL_WINDOW))

    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Decompose, estimate the ARIMA, then compute the innovations over `y`."""
        self._seasonal = stl_seasonal(y, self.season)
        if self._known is not None:
            self.ar, self.ma, self.mean = self._known
            self._z = np.empty(0)
            self._eps = np.empty(0)
            self._innovations(y, 0)
            return
        p, d, q = self.order
        adjusted = (y - self._seasonal)[-ARIMA_FIT_POINTS:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ARIMA(adjusted, order=self.order, trend="n" if d else "c")
            # Only the coefficients are used: skip the results object, whose Kalman
            # smoothing pass cost as much as the estimation itself.
            estimates = model.fit(method="innovations_mle", return_params=True)
        params = dict(zip(model.param_names, np.asarray(estimates), strict=True))
        self.ar = np.array([params[f"ar.L{i}"] for i in range(1, p + 1)], dtype=np.float64)
        self.ma = np.array([params[f"ma.L{i}"] for i in range(1, q + 1)], dtype=np.float64)
        self.mean = float(params.get("const", 0.0))
        if not (np.isfinite(self.ar).all() and np.isfinite(self.ma).all()):
            raise ValueError("ARIMA returned non-finite coefficients")
        self._z = np.empty(0)
        self._eps = np.empty(0)
        self._innovations(y, 0)

    def export_params(self) -> dict[str, object]:
        """The estimated ARIMA coefficients (order, AR, MA, mean), JSON-ready, to persist across restarts."""
        return {
            "order": list(self.order),
            "ar": [float(v) for v in self.ar],
            "ma": [float(v) for v in self.ma],
            "mean": float(self.mean),
        }

    def fit_with_params(self, series: Series, params: object) -> Self:
        """Fit on `series` with known ARIMA coefficients (from `export_params`), skipping the MLE.

        The MLE is ~80 % of a fit (0.12 of 0.15 s on 14 days of 5-minute data); the STL
        decomposition and the innovations are recomputed on `series`, as a refit would.
        Later fits estimate the coefficients again.

        Raises:
            InsufficientHistory: As `fit`.
            ModelFitError: As `fit`.
            ValueError: When the coefficients are malformed, not finite, or for another order.
        """
        if not isinstance(params, Mapping):
            raise ValueError("malformed ARIMA coefficients")
        p, _, q = self.order
        order, ar, ma, mean = params.get("order"), params.get("ar"), params.get("ma"), params.get("mean")
        if order != list(self.order) or not isinstance(ar, list) or not isinstance(ma, list):
            raise ValueError(f"the saved ARIMA coefficients are not for order {self.order}")
        if len(ar) != p or len(ma) != q or not isinstance(mean, int | float) or isinstance(mean, bool):
            raise ValueError("malformed ARIMA coefficients")
        ar_values, ma_values = np.asarray(ar, dtype=np.float64), np.asarray(ma, dtype=np.float64)
        if not (np.isfinite(ar_values).all() and np.isfinite(ma_values).all() and math.isfinite(mean)):
            raise ValueError("non-finite ARIMA coefficients")
        self._known = (ar_values, ma_values, float(mean))
        try:
            return self.fit(series)
        finally:
            self._known = None

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Extend the season periodically and the innovations from the first change."""
        self._innovations(y, changed)

    def _innovations(self, y: NDArray[np.float64], first: int) -> None:
        """Recompute z and the ARMA innovations for points >= `first`."""
        n, m = y.size, self.season
        seasonal = self._seasonal[: max(first, min(self._seasonal.size, n))]
        if seasonal.size < n:  # new points reuse the last estimated season
            last_cycle = seasonal[-m:]
            reps = math.ceil((n - seasonal.size) / m)
            seasonal = np.concatenate((seasonal, np.tile(last_cycle, reps)[: n - seasonal.size]))
        self._seasonal = seasonal
        adjusted = y - seasonal
        z = np.diff(adjusted, prepend=adjusted[0]) if self.order[1] else adjusted - self.mean
        eps = np.resize(self._eps[:first], n)
        start = min(first, self._eps.size)
        ar, ma = self.ar.tolist(), self.ma.tolist()
        zl, el = z.tolist(), eps.tolist()
        for t in range(start, n):
            value = zl[t]
            for i, coef in enumerate(ar, 1):
                value -= coef * zl[t - i] if t >= i else 0.0
            for j, coef in enumerate(ma, 1):
                value -= coef * el[t - j] if t >= j else 0.0
            el[t] = value
        self._z, self._eps = z, np.array(el, dtype=np.float64)
        self._adjusted = adjusted

    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """ARMA forecast of the deseasonalised series plus last season's seasonal value.

        Built step-major (one row per lag or step, one column per origin) and returned
        transposed: numpy runs long rows of origins far faster than rows of a few steps.
        """
        p, d, q = self.order
        width = max(p, q)
        hist = origins - np.arange(width)[::-1, None]  # rows t-width+1 .. t
        valid = hist >= 0
        z = np.concatenate(
            (np.where(valid, self._z[np.maximum(hist, 0)], 0.0), np.zeros((horizon, origins.size))),
            axis=0,
        )
        eps = np.concatenate(
            (np.where(valid, self._eps[np.maximum(hist, 0)], 0.0), np.zeros((horizon, origins.size))),
            axis=0,
        )
        for k in range(horizon):
            row = width + k
            z[row] = sum(self.ar[i] * z[row - 1 - i] for i in range(p)) + sum(
                self.ma[j] * eps[row - 1 - j] for j in range(q)
            )
        future = z[width:]
        base = self._adjusted[origins] if d else self.mean
        level = base + (np.cumsum(future, axis=0) if d else future)
        steps = np.arange(1, horizon + 1)
        season_index = (steps - self.season * ((steps - 1) // self.season + 1))[:, None] + origins
        forecast: NDArray[np.float64] = (level + self._seasonal[season_index]).T
        return forecast
