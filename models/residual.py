"""Shared life cycle of the concrete models: gap handling, cheap updates, calibrated quantiles.

Every concrete forecaster works on a gap-filled copy of its history and can produce the
point forecasts it would have made from any past origin (a "backcast"). From that one
method this base class derives the forecast itself, incremental `update`, and
prediction intervals calibrated on the model's own recent h-step errors.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Self

import numpy as np
from numpy.typing import NDArray

from models.base import Forecaster, Prediction, check_request
from models.errors import InsufficientHistory, ModelFitError
from models.gaps import fill_gaps
from models.intervals import error_scale, fallback_sigma, relative_offsets, scale_floor
from models.series import Series

CALIBRATION_ORIGINS = 2016  # most recent origins whose errors calibrate the intervals


def _first_difference(old: NDArray[np.float64], new: NDArray[np.float64]) -> int:
    """Index of the first position where two arrays differ (NaN equals NaN)."""
    n = min(old.size, new.size)
    same = (old[:n] == new[:n]) | (np.isnan(old[:n]) & np.isnan(new[:n]))
    changed = np.flatnonzero(~same)
    return int(changed[0]) if changed.size else n


class ResidualModel(Forecaster):
    """A forecaster defined by its backcasts; intervals come from its own h-step errors.

    Subclasses implement `_estimate` (fit parameters and state on the gap-filled
    history), optionally `_condition` (cheaply extend the state to changed or new
    points), and `_backcast` (point forecasts made at given origins).
    """

    def __init__(self) -> None:
        """Create an unfitted model."""
        self._raw: NDArray[np.float64] | None = None
        self._y: NDArray[np.float64] = np.empty(0)
        self._start = 0.0
        self._step = 1.0

    @property
    def fitted(self) -> bool:
        """Whether `fit` has succeeded."""
        return self._raw is not None

    def _gap_season(self) -> int | None:
        """Season used to fill gaps; None fills without seasonality."""
        return None

    def _min_origin(self) -> int:
        """Earliest origin (index of the last point used) whose backcast is meaningful."""
        return 0

    def _error_inflation(self) -> float:
        """Factor applied to in-sample errors that are known to be optimistic."""
        return 1.0

    @abc.abstractmethod
    def _estimate(self, y: NDArray[np.float64]) -> None:
        """Estimate parameters and state on the gap-filled history `y`."""

    def _condition(self, y: NDArray[np.float64], changed: int) -> None:
        """Re-derive the state for `y`, whose points before `changed` are already known."""
        del changed
        self._estimate(y)

    @abc.abstractmethod
    def _backcast(self, origins: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
        """Forecasts of y[t+1..t+horizon] from each origin t; shape (len(origins), horizon)."""

    def fit(self, series: Series) -> Self:
        """Fill gaps and estimate parameters on `series` (leading gaps are dropped).

        Args:
            series: Regular history; NaN marks gaps.

        Returns:
            self, fitted.

        Raises:
            InsufficientHistory: If `series` has fewer than `min_history()` finite points.
            ModelFitError: If estimation fails.
        """
        finite = np.isfinite(series.values)
        count = int(finite.sum())
        if count < max(1, self.min_history()):
            raise InsufficientHistory(f"{self.name} needs {self.min_history()} finite points, got {count}")
        first = int(np.argmax(finite))
        raw = np.array(series.values[first:], dtype=np.float64)
        y = fill_gaps(raw, season=self._gap_season())
        try:
            self._estimate(y)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            self._raw = None
            raise ModelFitError(f"{self.name} fit failed: {exc}") from exc
        self._raw, self._y = raw, y
        self._start, self._step = series.start + first * series.step, series.step
        return self

    def update(self, series: Series) -> Self:
        """Condition on `series` with the fitted parameters, touching only changed points.

        `series` must be on the fitted time grid; it may start later (a sliding window:
        the dropped prefix is kept) and usually ends a few points later. A series off the
        grid, or ending before the fitted start, is handed to `fit` instead.

        Args:
            series: The full recent history.

        Returns:
            self, conditioned on `series`.

        Raises:
            ModelFitError: If the model has not been fitted (or the fallback fit fails).
            InsufficientHistory: If the fallback fit lacks history.
        """
        if self._raw is None:
            raise ModelFitError(f"{self.name} is not fitted; call fit() first")
        offset = (series.start - self._start) / self._step
        aligned = math.isclose(series.step, self._step, rel_tol=1e-9) and math.isclose(
            offset, round(offset), abs_tol=1e-6
        )
        shift = round(offset) if aligned else 0
        if not aligned or -shift >= len(series):
            return self.fit(series)
        tail = series.values[max(0, -shift) :]
        gap = np.full(max(0, shift - self._raw.size), np.nan)
        raw = np.concatenate((self._raw[: max(0, shift)], gap, tail))
        if _first_difference(self._raw, raw) == raw.size == self._raw.size:
            return self
        y = fill_gaps(raw, season=self._gap_season())
        self._condition(y, min(_first_difference(self._y, y), y.size))
        self._raw, self._y = raw, y
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Prediction:
        """Point forecast from the last point plus quantiles from recent h-step errors.

        Args:
            horizon: Number of points to predict (>= 1).
            quantiles: Levels in (0, 1).

        Returns:
            The Prediction starting one step after the last fitted point.

        Raises:
            ModelFitError: If the model has not been fitted.
            ValueError: On an invalid horizon or level.
        """
        check_request(horizon, quantiles)
        if self._raw is None:
            raise ModelFitError(f"{self.name} is not fitted; call fit() first")
        n = self._y.size
        last = np.array([n - 1], dtype=np.int64)
        mean = np.maximum(self._backcast(last, horizon)[0], 0.0)
        recent = self._y[-CALIBRATION_ORIGINS:]
        floor = scale_floor(recent)
        errors = self._relative_errors(horizon, floor)
        offsets = relative_offsets(errors, quantiles, sigma1=fallback_sigma(recent, floor))
        scale = error_scale(mean, floor)
        return Prediction(
            start=self._start + n * self._step,
            step=self._step,
            mean=mean,
            quantiles={q: mean + offset * scale for q, offset in offsets.items()},
            model=self.name,
        )

    def _relative_errors(self, horizon: int, floor: float) -> NDArray[np.float64]:
        """(actual - backcast) / scale for recent origins, NaN where the actual was a gap."""
        n = self._y.size
        first = max(self._min_origin(), n - 1 - CALIBRATION_ORIGINS)
        origins = np.arange(first, n - 1, dtype=np.int64)
        if origins.size == 0 or self._raw is None:
            return np.empty((0, horizon))
        pred = self._backcast(origins, horizon)
        target = origins[:, None] + np.arange(1, horizon + 1)
        inside = target < n
        index = np.where(inside, target, n - 1)
        actual = np.where(inside, self._raw[index], np.nan)
        return (actual - pred) * self._error_inflation() / error_scale(pred, floor)
