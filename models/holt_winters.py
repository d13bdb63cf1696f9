"""Damped additive Holt-Winters: the main seasonal model for daily-cyclic request load.

statsmodels estimates the four smoothing parameters once (without its brute-force
grid search and with a classical decomposition as the known initial state: as accurate
here as estimating all initial seasons, and 10-50x cheaper); afterwards the smoothing recursion is run by this
module, so `update` costs a few microseconds per new point instead of a refit.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from models.residual import ResidualModel
from models.series import Series

# The initial state comes from the first 3 seasons only: as accurate as using all of
# them, and the later h-step errors that calibrate the intervals stay out-of-sample
# with respect to it (measured P90 coverage 0.86-0.90 with all seasons, 0.89-0.94 so).
INIT_SEASONS = 3


class EstimateOnly(ExponentialSmoothing):  # type: ignore[misc]
    """statsmodels' Holt-Winters whose `fit` stops once the parameters are estimated.

    After optimising, `fit` hands the parameters to `_predict` to build a results object,
    which reruns the smoothing recursion in Python: ~70% of a fit, wasted because
    `HoltWinters` runs its own recursion. This `_predict` returns just the parameters,
    under the names of the results' `params`. A test
    (`test_holt_winters_estimates_statsmodels_parameters_without_its_results`) checks
    they still equal a full fit's, in case statsmodels changes this internal hook.
    """

    def _predict(self, h: int | None = None, **params: Any) -> SimpleNamespace:
        """The parameters `fit` estimated, without the in-sample recursion."""
        del h
        return SimpleNamespace(params=params, _results=SimpleNamespace())


def classical_initial_state(y: NDArray[np.float64], season: int) -> tuple[float, float, NDArray[np.float64]]:
    """Initial level, trend and seasonal indices from a simple decomposition.

    The trend is a line through the means of the complete seasons; the seasonal index
    of a phase is its mean deviation from that line, smoothed over neighbouring phases
    (a circular window of ~1/96 season, i.e. 15 minutes of a daily season) because two
    or three seasons leave each raw index almost as noisy as a single observation.

    Args:
        y: At least two full seasons of gap-filled load.
        season: Season length in points.

    Returns:
        (level, trend per step, seasonal indices summing to 0), for time 0.
    """
    cycles = y.size // season
    table = y[: cycles * season].reshape(cycles, season)
    centres = season * np.arange(cycles) + (season - 1) / 2.0
    slope, intercept = np.polyfit(centres, table.mean(axis=1), 1)
    line = intercept + slope * np.arange(cycles * season).reshape(cycles, season)
    raw = (table - line).mean(axis=0)
    half = season // 192
    padded = np.concatenate((raw[season - half :], raw, raw[:half]))
    seasonal = np.convolve(padded, np.full(2 * half + 1, 1.0 / (2 * half + 1)), mode="valid")
    return float(intercept - slope), float(slope), seasonal - seasonal.mean()


class HoltWinters(ResidualModel):
    """Additive Holt-Winters with an (optionally damped) additive trend.

    Attributes:
        season: Season length in points.
        damped_trend: Whether the trend is damped.
        alpha: Level smoothing parameter (after fit).
        beta: Trend smoothing parameter.
        gamma: Seasonal smoothing parameter.
        phi: Trend damping factor (1 when not damped).
        initial_level: Level before the first point of the fitted series.
        initial_trend: Trend before the first point.
        initial_seasonal: Seasonal indices of the first season.
    """

    name: ClassVar[str] = "holt_winters"

    def __init__(self, season: int, *, damped_trend: bool = True) -> None:
        """Create the model.

        Args:
            season: Season length in points (e.g. 288 for a day of 5-minute points).
            damped_trend: Damp the trend so long horizons do not run away.

        Raises:
            ValueError: If season < 2.
        """
        super().__init__()
        if season < 2:
            raise ValueError(f"season must be >= 2 points, got {season}")
        self.season = season
        self.damped_trend = damped_trend
        self.alpha = self.beta = self.gamma = 0.0
        self.phi = 1.0
        self.initial_level = self.initial_trend = 0.0
        self.initial_seasonal = np.empty(0)
        self._level = np.empty(0)
        self._trend = np.empty(0)
        self._seasonal = np.empty(0)
        #: Smoothing parameters the next estimate takes instead of optimising (`fit_with_params`).
        self._known: tuple[float, float, float, float] | None = None

    def min_history(self) -> int:
        """Two full seasons."""
        return 2 * self.season

    def _gap_season(self) -> int:
        """Gaps are filled from one season back."""
        return self.season

    def _min_origin(self) -> int:
        """Skip the first season, where the state still reflects its initial guess."""
        return self.season

    def _drop_state(self, k: int) -> None:
        """Keep the state from the window's new first point on."""
        self._level = self._level[k:].copy()
        self._trend = self._trend[k:].copy()
        self._seasonal = self._seasonal[k:].copy()

    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Estimate the smoothing parameters, then run the recursion over `y`."""
        head = y[: INIT_SEASONS * self.season]
        level0, trend0, seasonal0 = classical_initial_state(head, self.season)
        if self._known is not None:
            self.alpha, self.beta, self.gamma, self.phi = self._known
        else:
            model = EstimateOnly(
                y,
                trend="add",
                damped_trend=self.damped_trend,
                seasonal="add",
                seasonal_periods=self.season,
                initialization_method="known",
                initial_level=level0,
                initial_trend=trend0,
                initial_seasonal=seasonal0,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params = model.fit(use_brute=False).params
            self.alpha = float(params["smoothing_level"])
            self.beta = float(params["smoothing_trend"])
            self.gamma = float(params["smoothing_seasonal"])
            self.phi = float(params["damping_trend"]) if self.damped_trend else 1.0
        values = (self.alpha, self.beta, self.gamma, self.phi)
        if not np.isfinite(values).all():
            raise ValueError(f"non-finite smoothing parameters {values}")
        self.initial_level, self.initial_trend = level0, trend0
        self.initial_seasonal = np.array(seasonal0, dtype=np.float64)
        self._level = np.array([level0])
        self._trend = np.array([trend0])
        self._seasonal = np.array(seasonal0, dtype=np.float64)
        self._smooth(y, 0)

    def export_params(self) -> tuple[float, float, float, float]:
        """The estimated smoothing parameters (alpha, beta, gamma, phi), to persist across restarts."""
        return (self.alpha, self.beta, self.gamma, self.phi)

    def fit_with_params(self, series: Series, params: tuple[float, float, float, float]) -> Self:
        """Fit on `series` with known smoothing parameters (from `export_params`), skipping the optimiser.

        A restarted controller restores its targets' last estimates this way: the
        optimiser is most of a fit's cost, and the recursion over the history rebuilds
        the state those parameters imply. Later fits estimate the parameters again.

        Raises:
            InsufficientHistory: As `fit`.
            ModelFitError: As `fit`, or when a parameter is not finite.
        """
        self._known = params
        try:
            return self.fit(series)
        finally:
            self._known = None

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Re-run the recursion from the first changed point."""
        self._smooth(y, changed)

    def _smooth(self, y: NDArray[np.float64], first: int) -> None:
        """Run the smoothing recursion over y[first:], from the state before `first`.

        State arrays: level[i] and trend[i] hold the state after i observations;
        seasonal[t] holds the seasonal index applied to time t (known up to t + season).
        """
        m, n = self.season, y.size
        alpha, beta, gamma, phi = self.alpha, self.beta, self.gamma, self.phi
        level = np.resize(self._level[: first + 1], n + 1)
        trend = np.resize(self._trend[: first + 1], n + 1)
        seasonal = np.resize(self._seasonal[: first + m], n + m)
        lvl, trd = float(level[first]), float(trend[first])
        values = y.tolist()
        season_values = seasonal.tolist()
        for t in range(first, n):
            expected = lvl + phi * trd
            obs, season_t = values[t], season_values[t]
            new_level = alpha * (obs - season_t) + (1.0 - alpha) * expected
            trd = beta * (new_level - lvl) + (1.0 - beta) * phi * trd
            season_values[t + m] = gamma * (obs - expected) + (1.0 - gamma) * season_t
            lvl = new_level
            level[t + 1], trend[t + 1] = lvl, trd
        self._level, self._trend = level, trend
        self._seasonal = np.array(season_values, dtype=np.float64)

    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """level + damped trend + seasonal index from the state after each origin."""
        steps = np.arange(1, horizon + 1)
        damping = np.cumsum(self.phi**steps)
        state = origins + 1
        season_index = (steps - self.season * ((steps - 1) // self.season))[:, None] + origins
        forecast: NDArray[np.float64] = (
            self._level[state] + self._trend[state] * damping[:, None] + self._seasonal[season_index]
        )
        return forecast.T
