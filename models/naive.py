"""Naive forecasters: the always-available fallbacks and the baselines others must beat.

`Naive` needs a single point, so a brand-new target still gets a forecast;
`SeasonalNaive` repeats the last season and is the benchmark every smarter model is
compared against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from models.residual import ResidualModel


class Naive(ResidualModel):
    """Forecasts the last known value for every future step."""

    name: ClassVar[str] = "naive"

    def min_history(self) -> int:
        """One finite point is enough."""
        return 1

    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Nothing to estimate: the state is the history itself."""

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Nothing to update beyond the stored history."""

    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """y[t] repeated `horizon` times for each origin t."""
        return np.repeat(self._y[origins][None, :], horizon, axis=0).T


class SeasonalNaive(ResidualModel):
    """Forecasts the value observed one season earlier.

    Given several season lengths, `fit` uses the longest one that the history covers at
    least twice (e.g. weekly once 2 weeks are known), else the shortest; `update` keeps
    the season chosen at fit time.
    """

    name: ClassVar[str] = "seasonal_naive"

    def __init__(self, season: int | Sequence[int]) -> None:
        """Create the model.

        Args:
            season: Season length in points, or several candidate lengths.

        Raises:
            ValueError: If no season is given or one is < 2.
        """
        super().__init__()
        seasons = sorted({int(s) for s in season} if isinstance(season, Sequence) else {int(season)})
        if not seasons or seasons[0] < 2:
            raise ValueError(f"season lengths must be >= 2 points, got {season!r}")
        self._seasons = seasons
        self.season = seasons[0]

    def min_history(self) -> int:
        """One shortest season plus a twelfth of it (at least 2 points) of errors."""
        return self._seasons[0] + max(2, self._seasons[0] // 12)

    def _gap_season(self) -> int:
        """Gaps are filled from the active season."""
        return self.season

    def _min_origin(self) -> int:
        """The first origin with a full season behind it."""
        return self.season - 1

    def _lookback(self) -> int:
        """A backcast reads one season back."""
        return self.season - 1

    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Pick the longest season covered twice by the history."""
        covered = [s for s in self._seasons if y.size >= 2 * s]
        self.season = covered[-1] if covered else self._seasons[0]

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Nothing to update beyond the stored history."""

    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """y at the same phase in the last complete season before each origin."""
        steps = np.arange(1, horizon + 1)
        back = self.season * ((steps - 1) // self.season + 1)
        index = (steps - back)[:, None] + origins
        forecast: NDArray[np.float64] = self._y[np.maximum(index, 0)].T
        return forecast
