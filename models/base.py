"""The forecaster interface and its output type.

The controller scales on a quantile of the load expected when a replica started now
becomes ready, so every model returns a full predictive distribution on a time grid,
not just a point forecast, and all models share one fit/update/predict life cycle.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from models.series import Series


@dataclass(frozen=True, eq=False)
class Prediction:
    """A forecast of the next `len(mean)` points after the fitted series.

    On construction every array is clipped at 0 and the quantile arrays are made
    monotone non-decreasing in the level (a running maximum over sorted levels), so
    consumers can rely on both invariants whatever model produced the forecast.

    Attributes:
        start: Timestamp of the first predicted point (fitted series end + step).
        step: Seconds between predicted points.
        mean: Point forecast per step, >= 0.
        quantiles: Level in (0, 1) -> forecast quantile per step, >= 0.
        model: Name of the model that produced the forecast.
        peaks: Level -> quantile of the highest load over the window from `start` to the
            end of step k, per k (`models.peaks`); ``None`` when not calibrated.
        peak_basis: The basis `peaks` were calibrated on.
        peak_level: The level the target's own history says is cheapest to size at, when
            the policy prices capacity and misses (`models.peaks.PeakEconomics`); a
            consumer asking for a peak uses it instead of the fixed quantile.
        backcasts: The point forecasts the model would have made from its recent origins
            (timestamp of the first origin, one row per origin one step apart, the last
            row being this forecast); handed to the peak calibration, then dropped.
    """

    start: float
    step: float
    mean: NDArray[np.float64]
    quantiles: Mapping[float, NDArray[np.float64]]
    model: str
    peaks: Mapping[float, NDArray[np.float64]] | None = None
    peak_basis: str | None = None
    peak_level: float | None = None
    backcasts: tuple[float, NDArray[np.float64]] | None = None

    def __post_init__(self) -> None:
        """Validate shapes and levels, then enforce non-negativity and monotonicity.

        Raises:
            ValueError: On a non-finite value, a level outside (0, 1), or a length mismatch.
        """
        mean = np.maximum(np.array(self.mean, dtype=np.float64), 0.0)
        if mean.ndim != 1 or not np.isfinite(mean).all():
            raise ValueError("Prediction.mean must be a finite 1-D array")
        levels = sorted(float(q) for q in self.quantiles)
        for q in levels:
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantile level {q} is outside (0, 1)")
        rows = [np.asarray(self.quantiles[q], dtype=np.float64) for q in levels]
        if any(row.shape != mean.shape or not np.isfinite(row).all() for row in rows):
            raise ValueError("every quantile array must be finite and as long as the mean")
        stacked = np.maximum.accumulate(np.maximum(np.array(rows).reshape(-1, mean.size), 0), 0)
        stacked.flags.writeable = False
        mean.flags.writeable = False
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "quantiles", MappingProxyType(dict(zip(levels, stacked, strict=True))))
        if self.peaks is not None:
            peak_levels = sorted(float(q) for q in self.peaks)
            peak_rows = [np.asarray(self.peaks[q], dtype=np.float64) for q in peak_levels]
            if any(row.shape != mean.shape or not np.isfinite(row).all() for row in peak_rows):
                raise ValueError("every peak array must be finite and as long as the mean")
            peak_stack = np.maximum.accumulate(np.maximum.accumulate(np.maximum(np.array(peak_rows), 0), 1), 0)
            peak_stack.flags.writeable = False
            object.__setattr__(self, "peaks", MappingProxyType(dict(zip(peak_levels, peak_stack, strict=True))))

    @property
    def horizon(self) -> int:
        """Number of predicted points."""
        return int(self.mean.size)

    def timestamps(self) -> NDArray[np.float64]:
        """Timestamps of the predicted points.

        Returns:
            `horizon` timestamps starting at `start`, `step` apart.
        """
        return self.start + self.step * np.arange(self.mean.size, dtype=np.float64)

    def peak(self, q: float) -> NDArray[np.float64] | None:
        """The level-`q` peak over each window from `start` (interpolated like `quantile`).

        Returns ``None`` without calibrated peaks or when `q` lies outside their levels.
        """
        if self.peaks is None:
            return None
        return _interpolate(self.peaks, q)

    def quantile(self, q: float) -> NDArray[np.float64]:
        """The forecast at level `q`, interpolated linearly between available levels.

        Args:
            q: Level in [min available level, max available level].

        Returns:
            One value per predicted point.

        Raises:
            ValueError: If `q` lies outside the range of available levels.
        """
        values = _interpolate(self.quantiles, q)
        if values is None:
            raise ValueError(f"quantile {q} is outside the available levels {list(self.quantiles)}")
        return values


def _interpolate(by_level: Mapping[float, NDArray[np.float64]], q: float) -> NDArray[np.float64] | None:
    """The level-`q` row, linear between the nearest levels; ``None`` outside them. Pure."""
    levels = list(by_level)
    for level in levels:
        if math.isclose(level, q, rel_tol=0.0, abs_tol=1e-12):
            return np.array(by_level[level])
    if not levels or not levels[0] < q < levels[-1]:
        return None
    upper = next(i for i, level in enumerate(levels) if level > q)
    lo, hi = levels[upper - 1], levels[upper]
    weight = (q - lo) / (hi - lo)
    result: NDArray[np.float64] = (1.0 - weight) * by_level[lo] + weight * by_level[hi]
    return result


def check_request(horizon: int, quantiles: Sequence[float]) -> None:
    """Validate the arguments of `Forecaster.predict`.

    Args:
        horizon: Number of points to predict.
        quantiles: Requested levels.

    Raises:
        ValueError: If horizon < 1 or a level is outside (0, 1).
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    for q in quantiles:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level {q!r} is outside (0, 1)")


class Forecaster(abc.ABC):
    """A load forecaster: fit on history, update on new points, predict quantiles."""

    name: ClassVar[str]

    @abc.abstractmethod
    def min_history(self) -> int:
        """Number of finite points needed to fit.

        Returns:
            The minimum count of finite values `fit` accepts.
        """

    @abc.abstractmethod
    def fit(self, series: Series) -> Self:
        """Estimate the model's parameters on `series` (may be expensive).

        Args:
            series: Regular history; NaN marks gaps.

        Returns:
            self, fitted.

        Raises:
            InsufficientHistory: If the series has fewer than `min_history()` finite points.
            ModelFitError: If estimation fails.
        """

    def update(self, series: Series) -> Self:
        """Condition on the latest data without re-estimating parameters.

        The default refits, which suits models whose fit is cheap.

        Args:
            series: The full recent history; it extends the series last fitted.

        Returns:
            self, conditioned on `series`.

        Raises:
            InsufficientHistory: As `fit`.
            ModelFitError: As `fit`.
        """
        return self.fit(series)

    @abc.abstractmethod
    def predict(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Prediction:
        """Forecast the next `horizon` points after the fitted series.

        Args:
            horizon: Number of points to predict (>= 1).
            quantiles: Levels in (0, 1) to include in the prediction.

        Returns:
            The Prediction, starting one step after the last fitted point.

        Raises:
            ModelFitError: If the model has not been fitted.
            ValueError: On an invalid horizon or level.
        """
