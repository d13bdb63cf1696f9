"""Per-target forecasting state: the load series, the fitted model and its cadence.

Fitting is the expensive part (see ``benchmarks/``), so it runs on a cadence
(``refitIntervalSeconds``) while every completed bucket only *updates* the model's state
with fixed parameters. History comes from the metrics source on start-up, so a restarted
controller forecasts as well as one that never stopped; new observations are bucketed in
memory between loads, and a bucket with no valid sample is NaN (a gap), never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoscaler.core.forecast_view import PredictionView
from autoscaler.policy.schema import SEASONS, Target
from models.base import Forecaster, Prediction
from models.errors import ForecastError
from models.linear import LinearTrend
from models.registry import build_forecaster
from models.series import Series

#: Tried in order when the configured model cannot fit: the fallback always exists.
FALLBACK_MODELS = ("seasonal_naive", "naive")


@dataclass
class ForecastStatus:
    """What the service can say about itself (for logs and metrics)."""

    model: str | None
    points: int
    last_fit: float | None
    last_error: str | None


class TargetForecaster:
    """Keeps one target's load series and model, and serves forecasts.

    Not thread-safe; the controller owns one per target and calls it from one cycle at a time.
    """

    def __init__(self, target: Target, *, horizon_seconds: float) -> None:
        self.target = target
        self.step = float(target.forecast.resolution_seconds)
        self.capacity = max(4, int(target.forecast.history_days * 86400 / self.step))
        self.horizon = max(2, math.ceil(horizon_seconds / self.step) + 2)
        self.series: Series | None = None
        self.model: Forecaster | None = None
        self._model_type: str | None = None
        self.prediction: Prediction | None = None
        self.last_fit: float | None = None
        #: True when the last refresh skipped a due refit for lack of fit budget.
        self.fit_deferred = False
        self.last_error: str | None = None
        self._bucket_start: float | None = None
        self._bucket_sum = 0.0
        self._bucket_n = 0

    @property
    def quantiles(self) -> tuple[float, ...]:
        """Levels predicted: the policy quantile plus the median for scoring."""
        return tuple(sorted({0.5, self.target.forecast.quantile}))

    def seed(self, series: Series) -> None:
        """Install history (from the metrics source), aligned to the bucket grid."""
        values = np.asarray(series.values, dtype=np.float64)[-self.capacity :]
        start = series.start + (len(series.values) - len(values)) * series.step
        self.series = Series(start=start, step=self.step, values=values)
        self._bucket_start = self.series.end + self.step
        self.model = None
        self.prediction = None

    def observe(self, now: float, load: float | None) -> bool:
        """Add one observation at ``now``; returns True when a bucket completed.

        Args:
            now: Observation time (unix seconds).
            load: Observed load, or ``None`` if unknown (counted as a gap, not zero).
        """
        if self._bucket_start is None:
            self._bucket_start = math.floor(now / self.step) * self.step
        completed = False
        while now >= self._bucket_start + self.step:
            value = self._bucket_sum / self._bucket_n if self._bucket_n else math.nan
            self._append(self._bucket_start, value)
            self._bucket_start += self.step
            self._bucket_sum, self._bucket_n = 0.0, 0
            completed = True
        if load is not None and math.isfinite(load) and load >= 0:
            self._bucket_sum += load
            self._bucket_n += 1
        return completed

    def _append(self, start: float, value: float) -> None:
        if self.series is None or len(self.series) == 0:
            self.series = Series(start=start, step=self.step, values=np.array([value]))
            return
        gap = round((start - self.series.end) / self.step) - 1
        pad = [math.nan] * max(0, gap)
        values = np.concatenate([self.series.values, pad, [value]])[-self.capacity :]
        new_start = start - (len(values) - 1) * self.step
        self.series = Series(start=new_start, step=self.step, values=values)

    def refresh(self, now: float, *, bucket_completed: bool, allow_fit: bool = True) -> None:
        """Refit on the cadence, otherwise update state when a bucket completed.

        The configured model is tried first, then the seasonal-naive and naive fallbacks,
        so a target always gets a forecast once it has any history. With ``allow_fit``
        false (the loop's fit budget is spent) a due refit waits for a later loop; a
        target with no model yet gets the cheap fallbacks meanwhile. Never raises: a
        model failure is recorded in ``last_error``.
        """
        if self.series is None or not np.isfinite(self.series.values).any():
            return
        interval = self.target.forecast.refit_interval_seconds
        if self.model is None:
            # Until a model fits (short history), retry every bucket rather than hourly.
            interval = min(interval, int(self.step))
        due = self.last_fit is None or now - self.last_fit >= interval
        self.fit_deferred = due and not allow_fit
        try:
            if due and allow_fit:
                self.model = self._fit_with_fallback()
                self.last_fit = now
            elif self.model is None:
                if not self.fit_deferred:
                    return
                self.model = self._fit_with_fallback(FALLBACK_MODELS)  # cheap stand-in until budget allows
            elif bucket_completed:
                self.model = self.model.update(self.series)
            elif self.prediction is not None:
                return
            if self.model is None:
                self.prediction = None
                return
            self.prediction = self._with_trend_guard(self.model.predict(self.horizon, self.quantiles))
        except (ForecastError, ValueError, np.linalg.LinAlgError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.model = None
            self.prediction = None

    def _with_trend_guard(self, prediction: Prediction) -> Prediction:
        """Raise upper quantiles to a short linear trend's, so ramps are met early.

        Seasonal models learn yesterday's shape; a ramp they have not seen (a recovery
        after an outage, a launch) shows first as a trend in the last half hour. Only
        levels above the median are raised, so the mean and median stay the model's.
        """
        window = self.target.forecast.trend_guard_points
        if window < 2 or self.series is None:
            return prediction
        try:
            trend = LinearTrend(window).fit(self.series).predict(len(prediction.mean), tuple(prediction.quantiles))
        except (ForecastError, ValueError):
            return prediction
        quantiles = {
            q: np.maximum(values, trend.quantiles[q]) if q > 0.5 else values
            for q, values in prediction.quantiles.items()
        }
        return Prediction(
            start=prediction.start,
            step=prediction.step,
            mean=prediction.mean,
            quantiles=quantiles,
            model=f"{prediction.model}+trend",
        )

    def _fit_with_fallback(self, types: tuple[str, ...] | None = None) -> Forecaster | None:
        assert self.series is not None  # noqa: S101 - checked by the caller
        errors = []
        configured = self.target.forecast.model
        for model_type in dict.fromkeys(types or (configured, *FALLBACK_MODELS)):
            # Refit the configured model in place: 'auto' remembers its last selection
            # and only re-runs its backtest when one is due.
            reuse = model_type == configured and self.model is not None and self._model_type == configured
            try:
                model = (self.model if reuse and self.model is not None else self._build(model_type)).fit(self.series)
            except (ForecastError, ValueError, np.linalg.LinAlgError) as exc:
                errors.append(f"{model_type}: {exc}")
                continue
            self.last_error = "; ".join(errors) or None
            self._model_type = model_type
            return model
        self.last_error = "; ".join(errors)
        return None

    def _build(self, model_type: str) -> Forecaster:
        fc = self.target.forecast
        return build_forecaster(
            model_type,
            step_seconds=self.step,
            seasons_seconds=[SEASONS[s] for s in fc.seasons],
            horizon=self.horizon,
            quantile=fc.quantile,
            candidates=list(fc.candidates) if model_type == "auto" else None,
        )

    def view(self, now: float) -> PredictionView | None:
        """The current forecast, if it still covers ``now``."""
        if self.prediction is None:
            return None
        p = self.prediction
        if now >= p.start + len(p.mean) * p.step:
            return None
        return PredictionView(p)

    def status(self) -> ForecastStatus:
        """Model name, history size, last fit and last error."""
        return ForecastStatus(
            model=self.prediction.model if self.prediction is not None else None,
            points=0 if self.series is None else int(np.isfinite(self.series.values).sum()),
            last_fit=self.last_fit,
            last_error=self.last_error,
        )
