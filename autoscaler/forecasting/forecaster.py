"""Per-target forecasting state: the load series, the fitted model and its cadence.

Fitting is the expensive part (see ``benchmarks/``), so it runs on a cadence
(``refitIntervalSeconds``) while every completed bucket only *updates* the model's state
with fixed parameters. History comes from the metrics source on start-up, so a restarted
controller forecasts as well as one that never stopped; new observations are bucketed in
memory between loads, and a bucket with no valid sample is NaN (a gap), never zero.
The controller decides, within its per-cycle CPU budget, when each target refits or
updates; an update left for a later cycle is remembered (``stale_since``) and the
previous prediction, which covers 1.5 cold starts, is served meanwhile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import zlib
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import NDArray

from autoscaler.core.forecast_view import PredictionView
from autoscaler.forecasting.fit_state import STATE_VERSION, export_peaks, finite_floats, restore_peaks
from autoscaler.policy.schema import SEASONS, Target
from models.auto import AutoSelector
from models.base import Forecaster, Prediction
from models.errors import ForecastError
from models.gaps import fill_gaps
from models.holt_winters import HoltWinters
from models.linear import LinearTrend
from models.peaks import (
    CALIBRATION_WINDOWS,
    MIN_WINDOWS,
    RECENT_BUCKETS,
    PeakEconomics,
    PeakHistory,
    PeakModel,
    with_partial_peak,
)
from models.registry import build_forecaster
from models.residual import CALIBRATION_ORIGINS
from models.series import AppendBuffer, Series
from models.stl_arima import StlArima

#: Tried in order when the configured model cannot fit: the fallback always exists.
FALLBACK_MODELS = ("seasonal_naive", "naive")
#: Buckets appended between two moves of a target's history to a new array (`AppendBuffer`).
HISTORY_SLACK_SECONDS = 86400.0


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

    def __init__(self, target: Target, *, horizon_seconds: float, loop_seconds: float = 30.0) -> None:
        self.target = target
        #: The control loop's period: capacity bought now is in place a cold start plus
        #: one loop later.
        self.loop_seconds = loop_seconds
        self.step = float(target.forecast.resolution_seconds)
        self.capacity = max(4, int(target.forecast.history_days * 86400 / self.step))
        self.horizon = max(2, math.ceil(horizon_seconds / self.step) + 2)
        #: Bucket peaks kept: what the peak calibration reads (`_peak_history`), the
        #: last week of windows and the day and hour before it, not the whole history.
        daily = round(SEASONS["daily"] / self.step) if "daily" in target.forecast.seasons else 0
        self.peak_capacity = min(self.capacity, CALIBRATION_WINDOWS + self.horizon + daily + RECENT_BUCKETS + 2)
        slack = max(1, round(HISTORY_SLACK_SECONDS / self.step))
        self._means = AppendBuffer(self.capacity, slack)
        self._peaks = AppendBuffer(self.peak_capacity, slack)
        #: Room after the end of the first history array: targets seeded in the same cycle
        #: then move their histories to new arrays in different cycles, not all at once.
        self._first_room = 1 + zlib.crc32(target.key.encode()) % slack
        self._series: Series | None = None
        self.model: Forecaster | None = None
        self._model_type: str | None = None
        self.prediction: Prediction | None = None
        self.last_fit: float | None = None
        #: True when a due refit is waiting for fit budget (set by the controller each cycle).
        self.fit_deferred = False
        self.last_error: str | None = None
        #: CPU seconds of the last fit of the configured model (its peak calibration included),
        #: keyed by whether it was a model selection (see `next_fit_selects`): the
        #: controller admits a refit only when that much of the cycle's budget is left.
        self.fit_seconds: dict[bool, float] = {}
        #: Time the oldest bucket the prediction does not reflect yet completed (None: up
        #: to date); a loop out of budget leaves the update to a later loop.
        self.stale_since: float | None = None
        #: The window-peak calibration, refitted after the model (see `_with_peaks`).
        self.peak_model: PeakModel | None = None
        #: The configured model was refitted and the peak calibration not yet: its own
        #: fit, due at once (`fit_due`), in a later `refresh`. Each is a few hundred ms
        #: of CPU; run as one unit they made a single piece of work the controller
        #: cannot split, and the cycle that ran it went over its budget.
        self._peaks_refit_due = False
        #: CPU seconds of the latest refit of the model alone and of the peak
        #: calibration alone: ``fit_seconds[False]`` is the larger (see `refresh`).
        self._refit_parts: dict[str, float] = {}
        #: The peak regression's bases at the prediction's origin, to re-apply it when the
        #: bucket being collected shows a higher peak (`view`); ``None`` off the regression.
        self._peak_bases: dict[str, NDArray[np.float64]] | None = None
        #: Load one replica serves (the controller's learned estimate, when it has one):
        #: the unit the peak model prices capacity in.
        self.unit_capacity: float | None = None
        self._bucket_start: float | None = None
        self._bucket_sum = 0.0
        self._bucket_n = 0
        self._bucket_max = -math.inf
        #: A saved fit state waiting to be installed by the next `refresh` (`restore_state`).
        self._restore: dict[str, Any] | None = None
        #: Why the last queued saved state could not be installed (the controller logs it once).
        self.restore_ignored: str | None = None

    @property
    def quantiles(self) -> tuple[float, ...]:
        """Levels predicted: the policy quantile plus the median for scoring."""
        return tuple(sorted({0.5, self.target.forecast.quantile}))

    @property
    def calibration_due(self) -> bool:
        """Whether the next fit is the peak calibration's, owed since the model's last refit.

        It is due at once, and short (no model fit): a scheduler may put it before the
        model refits waiting, so the new model is not priced by the old calibration long.
        """
        return self._peaks_refit_due and self.model is not None

    @property
    def restoring(self) -> bool:
        """Whether a saved state is queued: the next `refresh` rebuilds it instead of a stand-in."""
        return self._restore is not None

    @property
    def restore_owed(self) -> bool:
        """A saved state is queued and the next `refresh` can rebuild it (there is known history).

        Without a known point `refresh` does nothing, so the state can stay queued for as
        long as the metrics are missing: what waits for the restores must not wait for it.
        """
        return self._restore is not None and has_known_point(self.series)

    def seed(self, series: Series, peaks: Series | None = None) -> None:
        """Install history (from the metrics source), aligned to the bucket grid.

        Args:
            series: Mean load per bucket.
            peaks: Highest load per bucket on the same grid, if the source knows it.
        """
        values = np.asarray(series.values, dtype=np.float64)[-self.capacity :]
        start = series.start + (len(series.values) - len(values)) * series.step
        self._means.replace(values, room=self._first_room)
        self._series = seeded = Series(start=start, step=self.step, values=self._means.values)
        tail = np.full(min(values.size, self.peak_capacity), np.nan)
        if peaks is not None and len(peaks):
            offset = round((peaks.start - (seeded.end - (tail.size - 1) * self.step)) / self.step)
            src = np.asarray(peaks.values, dtype=np.float64)
            lo, hi = max(0, offset), min(tail.size, offset + src.size)
            if hi > lo:
                tail[lo:hi] = src[lo - offset : hi - offset]
        self._peaks.replace(tail, room=self._first_room)
        self._bucket_start = seeded.end + self.step
        self.model = None
        self.prediction = None
        self.stale_since = None

    @property
    def series(self) -> Series | None:
        """Mean load per bucket over the last `capacity` buckets (NaN: a gap), ``None`` before any.

        A view of the history kept (`seed`, `observe`): later buckets do not change a
        series handed out.
        """
        return self._series

    @property
    def peaks(self) -> NDArray[np.float64] | None:
        """Highest observation per bucket over the last `peak_capacity` buckets of ``series``.

        Aligned with the end of ``series`` (NaN: none known, e.g. history loaded as
        bucket means): what the peak calibration is scored against. ``None`` without a
        series.
        """
        return None if self.series is None else self._peaks.values

    def peak_series(self) -> Series | None:
        """The highest observation per bucket, on the series' grid (NaN where unknown)."""
        if self.series is None:
            return None
        values = self._peaks.values
        return Series(start=self.series.end - (values.size - 1) * self.step, step=self.step, values=values)

    def observe(self, now: float, load: float | None) -> bool:
        """Add one observation at ``now``; returns True when a bucket completed.

        Args:
            now: Observation time (unix seconds).
            load: Observed load, or ``None`` if unknown (counted as a gap, not zero).
        """
        if self._bucket_start is None:
            self._bucket_start = math.floor(now / self.step) * self.step
        elif now < self._bucket_start - self.step:
            self._rewind(now)
        completed = False
        if now >= self._bucket_start + self.step:
            value = self._bucket_sum / self._bucket_n if self._bucket_n else math.nan
            peak = self._bucket_max if self._bucket_n else math.nan
            self.append_bucket(self._bucket_start, value, peak)
            self._bucket_start += self.step
            self._bucket_sum, self._bucket_n, self._bucket_max = 0.0, 0, -math.inf
            completed = True
        # Buckets completed since hold no sample: one append of the last, the gap before
        # it padded with NaN (one copy of the series, not one per bucket after a pause).
        empty = math.floor((now - self._bucket_start) / self.step)
        if empty > 0:
            self._bucket_start += (empty - 1) * self.step
            self.append_bucket(self._bucket_start, math.nan, math.nan)
            self._bucket_start += self.step
        if completed and self.stale_since is None:
            self.stale_since = now
        if load is not None and math.isfinite(load) and load >= 0:
            self._bucket_sum += load
            self._bucket_n += 1
            self._bucket_max = max(self._bucket_max, load)
        return completed

    def _rewind(self, now: float) -> None:
        """Follow a clock that went back more than a bucket, if no real load was seen "ahead".

        Buckets filled while the clock ran ahead hold no sample (the metrics source has
        none from the future): they are dropped and the model is rebuilt from the real
        history (the stand-in at once, the refit when the budget allows), so the forecast
        covers the present again. Buckets that do hold load were measured, under a wrong
        clock: they are kept and the bucket clock waits for real time to catch up.
        """
        keep_until = math.floor(now / self.step) * self.step
        series = self.series
        first_ahead = 0 if series is None else max(0, math.ceil((keep_until - series.start) / self.step))
        # The bucket of ``now`` itself was closed early by the jump (partial, but real):
        # it is dropped with the rest and collected again; later ones must be empty.
        if self._bucket_n or (series is not None and np.isfinite(series.values[first_ahead + 1 :]).any()):
            return
        if series is not None:
            # The peaks cover the last buckets of the series: those kept are their first ones.
            self._peaks.truncate(first_ahead - (len(series) - len(self._peaks)))
            self._means.truncate(first_ahead)
            kept = self._means.values
            self._series = Series(start=series.start, step=self.step, values=kept) if len(kept) else None
        self._bucket_start = keep_until
        self._bucket_sum, self._bucket_n, self._bucket_max = 0.0, 0, -math.inf
        self.model, self.prediction, self.last_fit, self.stale_since = None, None, None, None

    def demote_selected(self, now: float) -> str | None:
        """Drop the automatic selection's current model for under-forecasting live traffic.

        The selector ranks it last for a day and the next fit (due at once) reselects
        among the others. Returns the demoted candidate, or ``None`` when the model is
        not an automatic selection.
        """
        model = self.model
        if not isinstance(model, AutoSelector) or model.selected is None or self.series is None:
            return None
        name = model.selected
        model.demote(name, until=self.series.end + model.reselect_seconds)
        self.last_fit = None
        return name

    def append_bucket(self, start: float, value: float, peak: float) -> None:
        """Append one completed bucket (its mean and peak) at ``start``, NaN-padding any skipped ones.

        Buckets skipped since the last one (a pause, a restart on a lagging history) are
        padded in the same copy, so a catch-up after a pause costs one copy of the series,
        not one per empty bucket; the series keeps at most ``capacity`` buckets. The
        buckets are written after the end of the array the series already views
        (`AppendBuffer`): the models' views of the previous series stay valid and no
        copy is made.
        """
        if self.series is None or len(self.series) == 0:
            self._means.replace([value], room=self._first_room)
            self._peaks.replace([peak], room=self._first_room)
            self._series = Series(start=start, step=self.step, values=self._means.values)
            return
        gap = round((start - self.series.end) / self.step) - 1
        pad = [math.nan] * min(max(0, gap), self.capacity)  # the rest would be cut anyway
        self._means.extend([*pad, value])
        self._peaks.extend([*pad, peak])
        values = self._means.values
        self._series = Series(start=start - (len(values) - 1) * self.step, step=self.step, values=values)

    def bucket_due(self, now: float) -> bool:
        """Whether observing at ``now`` completes a bucket (the model will need an update)."""
        return self._bucket_start is not None and now >= self._bucket_start + self.step

    def fit_due(self, now: float) -> bool:
        """Whether a fit is due at ``now``: the configured model's, or the peak calibration's after it."""
        return self._model_fit_due(now) or self.calibration_due

    def _model_fit_due(self, now: float) -> bool:
        """Whether the configured model is due for a (re)fit at ``now`` (its cadence)."""
        if self.series is None:
            return False
        interval = self.target.forecast.refit_interval_seconds
        if self.model is None:
            # Until a model fits (short history), retry every bucket rather than hourly.
            interval = min(interval, int(self.step))
        return self.last_fit is None or now - self.last_fit >= interval

    def next_fit_selects(self) -> bool:
        """Whether the next fit runs a model selection ('auto' backtest), not just a refit.

        A selection costs several times a refit, so the two are budgeted apart.
        """
        configured = self.target.forecast.model
        if self.model is None or self._model_type != configured:
            return configured == "auto"
        if self.calibration_due:
            return False  # the next fit is the peak calibration's (see `refresh`)
        return isinstance(self.model, AutoSelector) and self.series is not None and self.model.reselects(self.series)

    def refresh(self, now: float, *, bucket_completed: bool = False, allow_fit: bool = True) -> None:
        """Refit on the cadence, otherwise update state when the series has new buckets.

        The configured model is tried first, then the seasonal-naive and naive fallbacks,
        so a target always gets a forecast once it has any history. With ``allow_fit``
        false (the loop's fit budget is spent) a due refit waits for a later loop; a
        target with no model yet gets the cheap fallbacks meanwhile. A caller out of
        budget may also leave an update for a later loop by not calling this: the
        previous prediction covers 1.5 cold starts, and ``stale_since`` remembers the
        update is owed. Never raises: a model failure is recorded in ``last_error``.

        Args:
            now: Current time (unix seconds).
            bucket_completed: Treat the model as stale even if ``observe`` did not say so
                (a freshly seeded forecaster).
            allow_fit: Whether a due (re)fit may run now.

        A refit of the configured model leaves the peak calibration's refit to the next
        fit (due at once, and run before any other), so the controller budgets the two
        apart; the prediction in between is the new model's, priced by the previous
        calibration.
        """
        if not has_known_point(self.series):
            return
        self._apply_restore()
        stale = bucket_completed or self.stale_since is not None
        due = self.fit_due(now)
        self.fit_deferred = due and not allow_fit
        refitted = refit_peaks = False
        started = time.process_time()
        try:
            if due and allow_fit and self.calibration_due:
                assert self.model is not None  # noqa: S101 - calibration_due checked it
                # The peak calibration's own fit, after the model's (see `_peaks_refit_due`),
                # before a model refit due meanwhile (a demotion): `next_fit_selects` said so.
                refit_peaks, selects = True, False
                if stale:
                    self.model = self.model.update(self.series)
            elif due and allow_fit:
                refitted = True
                selects = self.next_fit_selects()
                self.model = self._fit_with_fallback()
                self.last_fit = now
                # The calibration is refitted in this unit only when it has no fit yet
                # (nothing to price the new model's forecast with) or off the
                # configured model (a fallback is not refitted on the cadence).
                calibrated = self.peak_model is not None and bool(self.peak_model.coefficients)
                configured = self._model_type == self.target.forecast.model
                self._peaks_refit_due = calibrated and configured and self.model is not None
                refit_peaks = not self._peaks_refit_due
            elif self.model is None:
                if not self.fit_deferred:
                    return
                self.model = self._fit_with_fallback(FALLBACK_MODELS)  # cheap stand-in until budget allows
            elif stale:
                self.model = self.model.update(self.series)
            elif self.prediction is not None:
                return
            self.stale_since = None
            if self.model is None:
                self.prediction = None
                return
            raw = self._with_trend_guard(self.model.predict(self.horizon, self.quantiles))
            self.prediction = self._with_peaks(raw, refit=refit_peaks)
            if refit_peaks and not refitted:
                self._peaks_refit_due = False
            if (refitted or refit_peaks) and self._model_type == self.target.forecast.model:
                self._record_fit_seconds(selects, "model" if refitted else "peaks", time.process_time() - started)
        except (ForecastError, ValueError, np.linalg.LinAlgError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.model = None
            self.prediction = None

    def _record_fit_seconds(self, selects: bool, part: str, seconds: float) -> None:
        """Charge one fit unit's CPU seconds where the controller's budget reads them.

        A model selection is its own kind. A refit of the model alone and one of the
        peak calibration alone both come up as the next fit not selecting, so that
        kind's cost is the larger of the latest of each: the controller admits either
        only when the costlier would fit. Until both have run (a restored target's
        first refit), the cost known before stands in for the other: a restored model
        refit of 0.014 s must not set the estimate its 0.3 s calibration is admitted by.
        """
        if selects:
            self.fit_seconds[True] = seconds
            return
        other = self._refit_parts.get("peaks" if part == "model" else "model", self.fit_seconds.get(False))
        self._refit_parts[part] = seconds
        self.fit_seconds[False] = seconds if other is None else max(seconds, other)

    def _with_trend_guard(self, prediction: Prediction) -> Prediction:
        """Raise upper quantiles to a short linear trend's, so ramps are met early.

        Seasonal models learn yesterday's shape; a ramp they have not seen (a recovery
        after an outage, a launch) shows first as a trend in the last half hour. Only
        levels above the median are raised, so the mean and median stay the model's.
        """
        window = self.target.forecast.trend_guard_points
        if window < 2 or self.series is None:
            return prediction
        upper = tuple(q for q in prediction.quantiles if q > 0.5)
        if not upper:
            return prediction
        try:
            trend = LinearTrend(window).fit(recent_points(self.series, CALIBRATION_ORIGINS + window))
            trend_prediction = trend.predict(len(prediction.mean), upper)
        except (ForecastError, ValueError):
            return prediction
        quantiles = {
            q: np.maximum(values, trend_prediction.quantiles[q]) if q > 0.5 else values
            for q, values in prediction.quantiles.items()
        }
        return Prediction(
            start=prediction.start,
            step=prediction.step,
            mean=prediction.mean,
            quantiles=quantiles,
            model=f"{prediction.model}+trend",
            backcasts=prediction.backcasts,
        )

    def _with_peaks(self, prediction: Prediction, *, refit: bool) -> Prediction:
        """Add the calibrated peak over each window (`models.peaks`); drop the backcasts.

        The peak calibration reads the last week of buckets, the day before it (the
        seasonal basis) and an hour more (the recent basis), so only that tail is
        gap-filled and scored; the model's backcasts join as the ``forecast`` basis when
        they end at the same bucket as the series. The peak regression is refitted with
        the model (``refit``), and as soon as the history allows while it has no fit.
        """
        plain = dataclasses.replace(prediction, backcasts=None)
        history = self._peak_history(prediction)
        if history is None:
            return plain
        if self.peak_model is None:
            self.peak_model = PeakModel(levels=self._peak_levels())
        assert self.series is not None  # noqa: S101 - _peak_history read it
        self.peak_model.score(history, self.series.end, self.step)
        if refit or not self.peak_model.coefficients:
            self.peak_model.fit(history, self._economics(), step=self.step)
        bases = PeakModel.current_bases(history)
        peak = None if bases is None else self.peak_model.predict_from(bases, history.horizon)
        self._peak_bases = bases if peak is not None else None
        if peak is not None:
            self.peak_model.track(prediction.start, peak)
        if peak is None:
            peak = self.peak_model.predict(history)
        if peak is None:
            return plain
        return dataclasses.replace(plain, peaks=dict(peak.quantiles), peak_basis=peak.basis, peak_level=peak.level)

    def _peak_levels(self) -> tuple[float, ...]:
        """The levels the peak calibration fits: a fixed ladder plus the predicted quantiles."""
        return tuple(sorted({0.5, 0.75, 0.9, 0.95, 0.98, 0.995, *self.quantiles}))

    def _economics(self) -> PeakEconomics | None:
        """The policy's prices in the peak model's units, or ``None`` without a cost section.

        One replica held for a bucket costs its GPUs' idle price for that long; a missed
        request costs the price of an under-provisioned replica-minute shared by the
        requests one replica serves in a minute.
        """
        cost = self.target.cost
        if cost is None:
            return None
        unit = self.unit_capacity or self.target.capacity.per_replica
        gpus = self.target.placeholders.gpus_per_pod
        lead = self.target.cold_start.total_seconds + self.loop_seconds
        return PeakEconomics(
            unit=unit,
            replica_bucket_cost=cost.idle_gpu_hour * gpus * self.step / 3600.0,
            request_miss_cost=cost.under_provisioned_minute / (unit * 60.0),
            window=max(1, math.ceil(lead / self.step)),
        )

    def _peak_history(self, prediction: Prediction) -> PeakHistory | None:
        """The recent tail of the series the peak calibration reads, or ``None`` if too short."""
        series = self.series
        if series is None or len(series) < MIN_WINDOWS + 2:
            return None
        daily = round(SEASONS["daily"] / self.step) if "daily" in self.target.forecast.seasons else None
        horizon = len(prediction.mean)
        keep = CALIBRATION_WINDOWS + horizon + (daily or 0) + RECENT_BUCKETS + 2
        values = series.values[-keep:]
        known = np.isfinite(values)
        if not known.any():
            return None
        first_known = int(np.argmax(known))
        values, tail_peaks = values[first_known:], self._peak_tail(values.size)[first_known:]
        try:
            means = fill_gaps(values, season=daily if daily and values.size > 2 * daily else None)
        except ForecastError:
            return None
        forecasts, forecast_first = None, 0
        if prediction.backcasts is not None:
            tail_start = series.end - (values.size - 1) * self.step
            t0, rows = prediction.backcasts
            first = round((t0 - tail_start) / self.step)
            if first + rows.shape[0] == values.size and rows.shape[1] >= horizon:
                skip = max(0, -first)
                forecasts, forecast_first = rows[skip:, :horizon], first + skip
        season = daily if daily and values.size >= daily + MIN_WINDOWS + horizon + 2 else None
        return PeakHistory(
            means=means,
            peaks=tail_peaks,
            horizon=horizon,
            season=season,
            forecasts=forecasts,
            forecast_first=forecast_first,
        )

    def _peak_tail(self, size: int) -> NDArray[np.float64]:
        """The peaks of the last ``size`` buckets, NaN before the oldest one kept."""
        peaks = self._peaks.values[-size:]
        if peaks.size == size:
            return peaks
        return np.concatenate((np.full(size - peaks.size, np.nan), peaks))

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

    def export_state(self) -> dict[str, Any] | None:
        """What the last fit of the configured model estimated, to survive a restart (JSON-ready).

        ``None`` until the configured model has fitted (a stand-in is not worth keeping);
        a restored state not installed yet is kept as it is. See :mod:`autoscaler.forecasting.fit_state`;
        `restore_state` is the inverse.
        """
        if self._restore is not None:
            return self._restore
        model = self.model
        if model is None or self._model_type != self.target.forecast.model or self.last_fit is None:
            return None
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "config": self._fingerprint(),
            "last_fit": self.last_fit,
            "fit_seconds": [self.fit_seconds.get(False), self.fit_seconds.get(True)],
        }
        winner = model.model if isinstance(model, AutoSelector) else model
        if isinstance(model, AutoSelector):
            state["selection"] = model.export_selection()
        if isinstance(winner, HoltWinters):
            state["params"] = list(winner.export_params())
        elif isinstance(winner, StlArima):
            state["arima"] = winner.export_params()
        if self.peak_model is not None and self.peak_model.coefficients:
            state["peaks"] = export_peaks(self.peak_model)
        return state

    def restore_state(self, state: dict[str, Any]) -> str | None:
        """Queue a saved state (`export_state`) for the next `refresh`; call after `seed`.

        The model is rebuilt there, within the controller's budget for owed work: the
        saved winner refitted with its saved parameters (Holt-Winters skips its
        optimiser, STL-ARIMA its ARIMA estimation), the saved selection and peak
        weights installed as they were, and the refit cadence kept from the saved last
        fit.

        Returns:
            ``None`` when queued, else why the state is ignored (another version, or the
            target's forecast settings changed since it was saved): the target then fits
            from its history as after a first start.
        """
        if state.get("version") != STATE_VERSION:
            return f"fit state version {state.get('version')!r}, this build reads {STATE_VERSION}"
        if state.get("config") != self._fingerprint():
            return "the target's forecast settings changed since the state was saved"
        last_fit = state.get("last_fit")
        if not isinstance(last_fit, int | float) or not math.isfinite(last_fit):
            return "malformed fit state (last_fit)"
        self._restore = state
        return None

    def _fingerprint(self) -> str:
        """A digest of every setting a fit depends on: a saved state is only valid under the same."""
        t = self.target
        settings = (t.forecast, t.cost, t.cold_start, t.capacity.per_replica, t.placeholders.gpus_per_pod)
        text = repr((settings, self.step, self.horizon, self.loop_seconds))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _apply_restore(self) -> None:
        """Install the queued saved state, if any, unless a model already exists.

        Never raises: a state that does not rebuild is dropped, the reason kept in
        ``restore_ignored``, and the target goes the usual way (stand-in, then a fit).
        """
        state, self._restore = self._restore, None
        if state is None or self.model is not None or self.series is None:
            return
        try:
            model = self._restored_model(state, self.series)
            peaks = state.get("peaks")
            peak_model = None if peaks is None else restore_peaks(peaks, self._peak_levels())
            fit_seconds = state.get("fit_seconds", [None, None])
        except (ForecastError, ValueError, KeyError, TypeError, np.linalg.LinAlgError) as exc:
            self.restore_ignored = f"the saved state does not rebuild ({type(exc).__name__}: {exc})"
            return
        self.model, self._model_type, self.peak_model = model, self.target.forecast.model, peak_model
        self.last_fit = float(state["last_fit"])
        for selects, seconds in zip((False, True), fit_seconds, strict=False):
            if isinstance(seconds, int | float) and math.isfinite(seconds):
                self.fit_seconds[selects] = float(seconds)

    def _restored_model(self, state: dict[str, Any], series: Series) -> Forecaster:
        """The configured model rebuilt from a saved state on ``series`` (no selection, no optimiser)."""
        model = self._build(self.target.forecast.model)
        selection = state.get("selection")
        winner = model
        if isinstance(model, AutoSelector):
            if not isinstance(selection, dict):
                raise ValueError("no saved selection")
            winner = model.winner_factory(str(selection.get("selected")))()
        params = state.get("params")
        if isinstance(winner, HoltWinters) and params is not None:
            p = finite_floats(params, 4)
            winner.fit_with_params(series, (p[0], p[1], p[2], p[3]))
        elif isinstance(winner, StlArima) and state.get("arima") is not None:
            winner.fit_with_params(series, state["arima"])
        else:
            winner.fit(series)
        if isinstance(model, AutoSelector) and isinstance(selection, dict):
            first = int(np.argmax(np.isfinite(series.values)))
            model.restore_selection(selection, winner, series.tail(len(series) - first))
        return model

    def view(self, now: float) -> PredictionView | None:
        """The current forecast, if it still covers ``now``.

        A load higher than every base of the peak regression, seen in the bucket still
        being collected, raises the peaks at once (`models.peaks.with_partial_peak`):
        otherwise a ramp would wait up to a bucket to reach the node sizing.
        """
        if self.prediction is None:
            return None
        p = self.prediction
        if now >= p.start + len(p.mean) * p.step:
            return None
        bases, model = self._peak_bases, self.peak_model
        if bases is not None and model is not None and self._bucket_n and p.peaks is not None:
            partial = self._bucket_max
            if "latest" in bases and partial > float(bases["latest"][0]):
                raised = model.predict_from(with_partial_peak(bases, partial), len(p.mean))
                if raised is not None:
                    p = dataclasses.replace(p, peaks=dict(raised.quantiles))
        return PredictionView(p)

    def status(self) -> ForecastStatus:
        """Model name, history size, last fit and last error."""
        return ForecastStatus(
            model=self.prediction.model if self.prediction is not None else None,
            points=0 if self.series is None else int(np.isfinite(self.series.values).sum()),
            last_fit=self.last_fit,
            last_error=self.last_error,
        )


def has_known_point(series: Series | None) -> TypeGuard[Series]:
    """Whether ``series`` exists and holds a known point: a forecaster has nothing to work on otherwise."""
    return series is not None and bool(np.isfinite(series.values).any())


def recent_points(series: Series, points: int) -> Series:
    """The last ``points`` of ``series``, reaching back to a known value if they start in a gap.

    A linear trend over the last few buckets and its calibration errors over the last
    ``CALIBRATION_ORIGINS`` origins depend only on this much history; starting on a known
    value gives gap filling the same neighbours as on the whole series.
    """
    first = max(0, len(series) - points)
    if not math.isfinite(series.values[first]):
        known = np.flatnonzero(np.isfinite(series.values[:first]))
        first = int(known[-1]) if known.size else first
    return series.tail(len(series) - first)
