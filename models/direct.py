"""Direct multi-step regression: one linear forecast per step ahead, shrunk toward persistence.

At the cold-start horizon (15-20 minutes) the last value is a hard baseline: load moves
like a random walk over a few buckets, and a seasonal model that re-plays yesterday's
shape carries yesterday's noise too. What can beat it is small and differs per target
(smoothing a noisy level, leaning on the daily shape during a ramp), so this model learns
it: for each step ``h`` ahead, least squares of ``y[t + h]`` on the last few values, the
last hour's mean and, once a day is known, the same time yesterday at the origin and at
the target, fitted on the last week of origins. The fit is shrunk toward persistence
(weight 1 on the last value), so with little evidence it *is* persistence, and it
never needs more than a few hours of history to start.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from models.residual import ResidualModel

#: Recent values used as regressors (the last one first).
LAGS = 4
#: Points averaged into the smoothed level (an hour of 5-minute buckets).
LEVEL_POINTS = 12
#: Half width (points) of the centred means taken one season back.
SEASON_HALF_WIDTH = 3
#: Origins fitted on (a week of 5-minute buckets).
TRAIN_ORIGINS = 2016
#: Shrinkage toward persistence per training origin: small, since the regressors are
#: nearly collinear (their differences, what is learned, have a small variance).
RIDGE = 1e-3


class DirectRegression(ResidualModel):
    """Per-step linear forecasts from recent lags, the hourly level and yesterday."""

    name: ClassVar[str] = "direct"

    def __init__(self, horizon: int, season: int | None = None) -> None:
        """Create the model.

        Args:
            horizon: Steps ahead fitted (>= 1); longer forecasts reuse the last step's weights.
            season: The daily season in points, used once the history holds it.

        Raises:
            ValueError: On a horizon < 1 or a season < 2.
        """
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if season is not None and season < 2:
            raise ValueError(f"season must be >= 2 points, got {season}")
        self.horizon = horizon
        self.season = season
        self.uses_season = False
        self._weights = np.zeros((horizon, 0))

    def min_history(self) -> int:
        """Four hours of 5-minute buckets: enough origins for a shrunk fit."""
        return 4 * LEVEL_POINTS

    def _lookback(self) -> int:
        """Points before an origin a forecast reads: yesterday (when used) and the hour."""
        return (self.season + SEASON_HALF_WIDTH if self.uses_season and self.season else 0) + LEVEL_POINTS

    def _min_origin(self) -> int:
        """Origins with every regressor behind them (earlier ones would read padding)."""
        return self._lookback()

    def _features(self, y: NDArray[np.float64], origins: NDArray[np.int64], h: int) -> NDArray[np.float64]:
        """Regressors per origin (rows): 1, lags, hourly level, and yesterday when used."""
        lagged = [y[np.maximum(origins - i, 0)] for i in range(LAGS)]
        cumsum = np.concatenate(([0.0], np.cumsum(y)))
        lo = np.maximum(origins - LEVEL_POINTS + 1, 0)
        level = (cumsum[origins + 1] - cumsum[lo]) / (origins + 1 - lo)
        columns = [np.ones(origins.size), *lagged, level]
        if self.uses_season and self.season is not None:
            s, k = self.season, SEASON_HALF_WIDTH
            # Yesterday around the target and around the origin, each a centred mean: one
            # noisy point would carry yesterday's noise into today's forecast.
            for at in (origins + h - s, origins - s):
                lo, hi = np.maximum(at - k, 0), np.maximum(at + k + 1, 1)
                columns.append((cumsum[hi] - cumsum[lo]) / (hi - lo))
        return np.column_stack(columns)

    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Fit each step's weights on the last week of origins, shrunk toward persistence."""
        s = self.season
        self.uses_season = s is not None and y.size >= s + self.horizon + 4 * LEVEL_POINTS
        first = (s + SEASON_HALF_WIDTH if self.uses_season and s is not None else 0) + LEVEL_POINTS
        last = y.size - 1 - self.horizon
        origins = np.arange(max(first, last - TRAIN_ORIGINS + 1), last + 1, dtype=np.int64)
        scale = max(float(np.mean(np.abs(y))), 1e-9)
        width = self._features(y, np.array([y.size - 1], dtype=np.int64), 1).shape[1]
        prior = np.zeros(width)
        prior[1] = 1.0  # persistence: all weight on the last value
        weights = np.tile(prior, (self.horizon, 1))
        if origins.size >= width:
            lam = RIDGE * origins.size
            penalty = lam * np.eye(width)
            penalty[0, 0] = lam * 1e-3  # the constant is nearly free
            for h in range(1, self.horizon + 1):
                x = self._features(y, origins, h) / scale
                target = y[origins + h] / scale
                x[:, 0] = 1.0
                solved = np.linalg.solve(x.T @ x + penalty, x.T @ target + penalty @ prior)
                solved[0] *= scale  # the constant back in load units
                weights[h - 1] = solved
        self._weights = weights

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Weights stay; forecasts read the newest values directly."""

    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """Each step's linear forecast from each origin; shape (len(origins), horizon)."""
        y = self._y
        out = np.empty((horizon, origins.size))
        for h in range(1, horizon + 1):
            w = self._weights[min(h, self.horizon) - 1]
            out[h - 1] = self._features(y, origins, h) @ w
        result: NDArray[np.float64] = out.T
        return result
