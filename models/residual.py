"""Shared life cycle of the concrete models: gap handling, cheap updates, calibrated quantiles.

Every concrete forecaster works on a gap-filled copy of its history and can produce the
point forecasts it would have made from any past origin (a "backcast"). From that one
method this base class derives the forecast itself, incremental `update`, and
prediction intervals calibrated on the model's own recent h-step errors.

Parameters are estimated on the whole history, but afterwards a model keeps only the
recent window its forecasts and calibration read (`CALIBRATION_ORIGINS` origins plus the
lags a backcast looks back), and shares that window with the caller's series instead of
copying it: a controller holds one model per target, and full-length state arrays per
model were most of its memory.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Self

import numpy as np
from numpy.lib.stride_tricks import as_strided
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
        self._dropped = 0  # points dropped from the front of the window since the fit

    @property
    def fitted(self) -> bool:
        """Whether `fit` has succeeded."""
        return self._raw is not None

    @property
    def history(self) -> NDArray[np.float64] | None:
        """The raw window the model keeps (``None`` before a fit).

        Without gaps it is a view of the caller's series, cut to `window_points`: what a
        thousand targets' memory depends on, so footprint checks read it.
        """
        return self._raw

    @property
    def filled_history(self) -> NDArray[np.float64]:
        """The gap-filled window the model fits on: `history` itself when it has no gap."""
        return self._y

    def _gap_season(self) -> int | None:
        """Season used to fill gaps; None fills without seasonality."""
        return None

    def _min_origin(self) -> int:
        """Earliest origin (index of the last point used) whose backcast is meaningful."""
        return 0

    def _lookback(self) -> int:
        """Points before the earliest calibration origin that a backcast reads."""
        return 0

    def _drop_state(self, k: int) -> None:
        """Forget the state of the first `k` points (the window moves forward).

        Models whose only state is the history itself need nothing here.
        """

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
        """Forecasts of y[t+1..t+horizon] from each origin t; shape (len(origins), horizon).

        Thousands of origins and a few steps: computing step-major (one row per step)
        and returning the transpose runs several times faster in numpy than rows of a
        few steps, and the caller wants that layout anyway.
        """

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
        raw = series.values[first:]
        y = fill_gaps(raw, season=self._gap_season())
        try:
            self._estimate(y)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            self._raw = None
            raise ModelFitError(f"{self.name} fit failed: {exc}") from exc
        self._raw, self._y = raw, y
        self._start, self._step = series.start + first * series.step, series.step
        self._dropped = 0
        self._trim()
        return self

    def update(self, series: Series) -> Self:
        """Condition on `series` with the fitted parameters, touching only changed points.

        `series` must be on the fitted time grid and usually ends a few points later; it
        may start earlier (the model reads only its own window of it) or later (a sliding
        window: the model's older points are kept if the window still needs them). Gaps
        are filled on all of `series`, as `fit` does, so a gap keeps the seasonal context
        from before the window. A series off the grid, or not overlapping the window, is
        handed to `fit` instead.

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
        if not aligned or not -len(series) < shift < self._raw.size:
            return self.fit(series)
        if shift > 0 and len(series) >= self.window_points():
            self._drop(shift)  # the window moves past these points anyway: share the series
            shift = 0
        if shift > 0:  # a short series starting inside the window: keep the older points
            full = np.concatenate((self._raw[:shift], series.values))
            begin = 0
        else:
            full, begin = series.values, -shift
        raw = full[begin:]
        if _first_difference(self._raw, raw) == raw.size == self._raw.size:
            return self
        filled = fill_gaps(full, season=self._gap_season())
        y = raw if filled is full else filled[begin:]
        self._condition(y, min(_first_difference(self._y, y), y.size))
        self._raw, self._y = raw, y
        self._trim()
        return self

    def window_points(self) -> int:
        """Points of history the forecasts and their calibration read (older ones are dropped)."""
        return CALIBRATION_ORIGINS + 1 + self._lookback()

    def _trim(self) -> None:
        """Drop the points before the window the forecasts and calibration read."""
        assert self._raw is not None  # noqa: S101 - called after a fit
        if self._raw.size > self.window_points():
            self._drop(self._raw.size - self.window_points())

    def _drop(self, k: int) -> None:
        """Drop the first `k` points of the window and their state.

        The raw window stays a view of the caller's series (nothing copied); a gap-filled
        copy is cut so the full-length array it came from is freed.
        """
        assert self._raw is not None  # noqa: S101 - called after a fit
        shared = np.may_share_memory(self._y, self._raw)
        self._drop_state(k)
        self._raw = self._raw[k:]
        self._y = self._raw if shared else self._y[k:].copy()
        self._start += k * self._step
        self._dropped += k

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
        first = min(max(self._min_origin() - self._dropped, n - 1 - CALIBRATION_ORIGINS, 0), n - 1)
        # One backcast serves the calibration origins and the forecast from the last point.
        backcasts = self._backcast(np.arange(first, n, dtype=np.int64), horizon)
        mean = np.maximum(backcasts[-1], 0.0)
        recent = self._y[-CALIBRATION_ORIGINS:]
        floor = scale_floor(recent)
        errors = self._relative_errors(backcasts[:-1], first, floor)
        offsets = relative_offsets(errors, quantiles, sigma1=lambda: fallback_sigma(recent, floor))
        scale = error_scale(mean, floor)
        return Prediction(
            start=self._start + n * self._step,
            step=self._step,
            mean=mean,
            quantiles={q: mean + offset * scale for q, offset in offsets.items()},
            model=self.name,
            backcasts=(self._start + first * self._step, backcasts),
        )

    def _relative_errors(self, backcasts: NDArray[np.float64], first: int, floor: float) -> NDArray[np.float64]:
        """(actual - backcast) / scale for the origins from `first` on, NaN where the actual is unknown.

        Args:
            backcasts: Point forecasts from origins first, first + 1, ..., one row each.
            first: The first origin.
            floor: The scale floor.
        """
        origins, horizon = backcasts.shape
        assert self._raw is not None  # noqa: S101 - predict checked it
        # Built step-major (row h: every origin's error h + 1 steps ahead) and returned
        # transposed, so `relative_offsets` sorts contiguous rows. Row h of the actuals
        # is raw[first + 1 + h :][:origins], NaN past the end.
        padded = np.concatenate((self._raw[first + 1 : first + 1 + origins], np.full(horizon, np.nan)))
        actual = as_strided(padded, shape=(horizon, origins), strides=(padded.strides[0],) * 2, writeable=False)
        errors = np.subtract(actual, backcasts.T, out=np.empty((horizon, origins)))
        inflation = self._error_inflation()
        if inflation != 1.0:
            errors *= inflation
        errors /= error_scale(backcasts.T, floor)
        by_origin: NDArray[np.float64] = errors.T
        return by_origin
