"""Least-squares trend extrapolation, the warm-start model for targets with little history.

With under a day of data no seasonal model can be fitted, but a ramp seen in the last
hour still says more than the last value alone.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from models.residual import ResidualModel


class LinearTrend(ResidualModel):
    """Extrapolates a least-squares line through the last `window` points.

    Gaps inside the window are filled by linear interpolation before the line is fitted.
    """

    name: ClassVar[str] = "linear_trend"

    def __init__(self, window: int) -> None:
        """Create the model.

        Args:
            window: Number of most recent points the line is fitted to (>= 2).

        Raises:
            ValueError: If window < 2.
        """
        super().__init__()
        if window < 2:
            raise ValueError(f"window must be >= 2 points, got {window}")
        self.window = window

    def min_history(self) -> int:
        """Six points, or the whole window when it is shorter."""
        return min(self.window, 6)

    def _min_origin(self) -> int:
        """Origins with `min_history` points behind them: shorter lines extrapolate noise."""
        return self.min_history() - 1

    def _lookback(self) -> int:
        """A line reads the window before its origin."""
        return self.window - 1

    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Nothing to estimate ahead of time: lines are fitted per origin."""

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Nothing to update beyond the stored history."""

    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """Line through y[t-window+1..t] evaluated at t+1..t+horizon, per origin t."""
        y = self._y
        index = np.arange(y.size, dtype=np.float64)
        sum_y = np.concatenate(([0.0], np.cumsum(y)))
        sum_iy = np.concatenate(([0.0], np.cumsum(index * y)))
        first = origins - self.window + 1
        count: float | NDArray[np.float64]
        if origins.size == 0 or first[0] >= 0:
            count = float(self.window)  # every window is full (the usual case): scalar sums
        else:
            first = np.maximum(first, 0)
            count = (origins - first + 1).astype(np.float64)
        # Coordinates u = i - t run over -(count-1)..0 within each window.
        s_y = sum_y[origins + 1] - sum_y[first]
        s_uy = sum_iy[origins + 1] - sum_iy[first] - origins * s_y
        s_u = -count * (count - 1) / 2.0
        s_uu = (count - 1) * count * (2 * count - 1) / 6.0
        denom = count * s_uu - s_u**2
        slope = np.divide(count * s_uy - s_u * s_y, denom, out=np.zeros_like(s_y), where=denom > 0)
        intercept = (s_y - slope * s_u) / count
        steps = np.arange(1, horizon + 1, dtype=np.float64)
        forecast: NDArray[np.float64] = (intercept + slope * steps[:, None]).T
        return forecast
