"""Quantiles of the peak load over the next k buckets: the number capacity must cover.

A replica asked for now serves a whole window: serving replicas the minutes until the
next one can start, GPU nodes a whole cold start. So the decision needs, for each window
from the forecast start to ``k`` buckets ahead, the q-quantile of the *highest* load in
it, at the resolution the load is observed (each cycle's 1-minute rate), not of the mean
of a 5-minute bucket. On smooth load the two differ by the noise; on bursty load (a
minute at ten times the mean, then nothing) by an order of magnitude, and a band around
the mean is either far too narrow or, scaled up, far too wide.

Each candidate *basis* turns the history into one number per origin and window length,
and split-conformal calibration on the last week of windows turns it into a quantile:

* ``forecast``: the highest point forecast of the configured model over the window
  (load that moves with the level and the daily shape);
* ``latest`` and ``recent``: the highest observed peak over the last ten minutes and
  over the last hour (bursts that keep coming);
* ``seasonal``: the highest observed peak one day earlier over the same window, widened
  by a bucket on each side (bursts that come at the same time every day);
* ``envelope``: the larger of ``latest`` and ``seasonal``.

With a day of windows, :class:`PeakModel` fits a linear *quantile regression* of the
window peak on the bases (``forecast``, ``recent``, ``seasonal`` and a constant) at each
level and window length: it learns how much each source says about the peak, e.g. that
load far below yesterday's at this hour tends to return to it within a cold start,
which no single basis knows. Rows are weighted by the forecast level, so the residuals
it fits are relative (the band grows with the load), and a basis whose weight comes out
negative is dropped, so a larger basis never lowers the answer. Before that, and
whenever a basis is missing now, split-conformal calibration of each single basis on the
recent windows stands in, on relative and on additive residuals, serving the one with
the lowest pinball loss at the policy level. On steady load the result follows the
forecast, on bursty load an envelope, and no rule per trace decides it.

A regression fitted on the same windows it is judged by is optimistic: on ServeGen its
0.995 peak was exceeded by 2.7 % of the windows that followed, not 0.5 %. So the served
quantiles carry an online correction per level and window length, adaptive conformal
inference (Gibbs and Candes, 2021): each window whose peak exceeded what was served
raises the level's factor, each covered one lowers it, in the ratio that makes the
long-run share of exceeded windows 1 - level, whatever the regression's bias
(`PeakModel.track`, `PeakModel.score`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
from numpy.typing import NDArray

from models.evaluation import pinball_loss
from models.intervals import scale_floor

#: Windows needed before peak quantiles are served (fewer: the caller keeps the model's
#: per-bucket band). Two hours of 5-minute buckets.
MIN_WINDOWS = 24
#: Windows needed before the quantile regression replaces the single-basis calibration:
#: half a day of 5-minute buckets, a few dozen beyond a 0.95 quantile.
MIN_REGRESSION_WINDOWS = 144
#: Most recent windows the calibration reads (a week of 5-minute buckets).
CALIBRATION_WINDOWS = 2016
#: Buckets the ``recent`` basis looks back (an hour of 5-minute buckets).
RECENT_BUCKETS = 12
#: Buckets the ``latest`` basis looks back (ten minutes): a burst that has just ended
#: weighs less in it than in ``recent``.
LATEST_BUCKETS = 2

BASES = ("forecast", "latest", "recent", "seasonal", "envelope")
#: The bases the regression weighs. ``envelope`` (the larger of yesterday's window and
#: the last ten minutes) is there because a linear fit cannot form a maximum itself.
REGRESSORS = ("forecast", "latest", "recent", "seasonal", "envelope")
#: Step of the coverage correction: an exceeded window raises its level's factor by
#: ``ADAPT_STEP * level``, a covered one lowers it by ``ADAPT_STEP * (1 - level)``. At
#: 0.02 a surprise raises a 0.995 peak by 2 % for about a day of 5-minute buckets.
ADAPT_STEP = 0.02
#: Bounds of the correction factor minus one: never below 70 % of the regression's
#: answer, never above twice it.
ADAPT_RANGE = (-0.3, 1.0)
#: Served windows remembered while their peaks are unknown (a few cold starts' worth).
MAX_PENDING = 64

#: The one tuple of each set of regressor names (see `regressor_names`).
_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}


def regressor_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple shared by every fit that weighs the same regressors.

    A calibration holds one entry per window length and level (dozens), each naming its
    regressors: at a thousand targets, a tuple per entry (and, from a saved state, a
    string per name) was a tenth of the memory a target's forecasts keep. Names that are
    not `REGRESSORS` (only in a malformed saved state) are returned as given.
    """
    key = tuple(names)
    if not set(key) <= set(REGRESSORS):
        return key
    return _NAMES.setdefault(key, tuple(sys.intern(n) for n in key))


@dataclass(frozen=True)
class PeakForecast:
    """Quantiles of the peak over the windows [start, start + (k + 1) * step), k = 0..K-1.

    Attributes:
        basis: What served the quantiles: ``regression`` or the single basis chosen.
        quantiles: Level -> non-decreasing peak quantile per window length.
        windows: Calibration windows behind the quantiles.
        level: The cost-optimal level (see `PeakModel.fit`), if one was chosen.
    """

    basis: str
    quantiles: Mapping[float, NDArray[np.float64]]
    windows: int
    level: float | None = None


@dataclass(frozen=True)
class PeakHistory:
    """What the peak calibration reads: bucket means and peaks, and the model's backcasts.

    Attributes:
        means: Gap-filled bucket means up to the forecast origin (the last element).
        peaks: Observed peak per bucket, aligned with ``means``; NaN where unknown (the
            mean stands in: a lower bound of the peak).
        horizon: Window lengths to predict, in buckets (1..horizon).
        season: The daily season in buckets, if the series is long enough to use it.
        forecasts: Point forecasts of the configured model, one row per origin from
            ``forecast_first`` to the last element, ``horizon`` columns; the last row is
            the forecast made now. ``None``: the last bucket mean stands in.
        forecast_first: Origin of the first row of ``forecasts``.
    """

    means: NDArray[np.float64]
    peaks: NDArray[np.float64]
    horizon: int
    season: int | None = None
    forecasts: NDArray[np.float64] | None = None
    forecast_first: int = 0


@dataclass
class _Windows:
    """The calibration windows of a history: bases and actual peaks per origin and length."""

    origins: NDArray[np.int64]
    past: dict[str, NDArray[np.float64]]
    current: dict[str, NDArray[np.float64]]
    actual: NDArray[np.float64]
    floor: float


def _window_max(values: NDArray[np.float64], origins: NDArray[np.int64], lengths: int) -> NDArray[np.float64]:
    """Row ``i``, column ``k``: max of ``values[origins[i] + 1 .. origins[i] + k + 1]``. Pure."""
    out = np.empty((origins.size, lengths))
    running = np.full(origins.size, -np.inf)
    for k in range(lengths):
        running = np.maximum(running, values[origins + k + 1])
        out[:, k] = running
    return out


def _trailing_max(values: NDArray[np.float64], window: int, origins: NDArray[np.int64]) -> NDArray[np.float64]:
    """``out[i]`` = max of ``values[max(0, o - window + 1) .. o]`` for ``o = origins[i]``. Pure.

    A few origins (the forecast origin of every update) read their own windows: the
    sliding maximum over the whole history was a third of an update's CPU.
    """
    if origins.size * window < values.size:
        return np.array([values[max(0, o - window + 1) : o + 1].max() for o in origins.tolist()], dtype=np.float64)
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.concatenate((np.full(window - 1, -np.inf), values))
    result: NDArray[np.float64] = sliding_window_view(padded, window).max(axis=1)[origins]
    return result


def _bases(
    peaks: NDArray[np.float64],
    means: NDArray[np.float64],
    origins: NDArray[np.int64],
    horizon: int,
    *,
    season: int | None,
    forecasts: NDArray[np.float64] | None,
) -> dict[str, NDArray[np.float64]]:
    """Each available basis at each origin (rows) and window length (columns). Pure."""
    recent = _trailing_max(peaks, RECENT_BUCKETS, origins)
    latest = _trailing_max(peaks, LATEST_BUCKETS, origins)
    out: dict[str, NDArray[np.float64]] = {
        "recent": np.repeat(recent[:, None], horizon, axis=1),
        "latest": np.repeat(latest[:, None], horizon, axis=1),
    }
    if forecasts is not None:
        out["forecast"] = np.maximum.accumulate(np.maximum(forecasts, 0.0), axis=1)
    else:
        out["forecast"] = np.repeat(means[origins][:, None], horizon, axis=1)
    if season is not None and origins.size and origins[0] - season >= 1:
        # Yesterday's window widened by one bucket each side: [o - season, o - season + k + 2].
        out["seasonal"] = _window_max(peaks, origins - season - 1, horizon + 2)[:, 2:]
        out["envelope"] = np.maximum(out["seasonal"], out["latest"])
    return out


def _observed_peaks(history: PeakHistory) -> NDArray[np.float64]:
    """Each bucket's peak, the mean standing in where the peak is unknown (a lower bound). Pure."""
    means = history.means
    return np.where(np.isfinite(history.peaks), np.maximum(history.peaks, means), means)


def _span(history: PeakHistory) -> tuple[int, int, int | None] | None:
    """The first and last calibration origin of ``history`` and the season its windows use. Pure.

    ``None`` with fewer than `MIN_WINDOWS` windows; the season is ``None`` unless every
    one of at least `MIN_WINDOWS` windows has yesterday's.
    """
    last = history.means.size - 1 - history.horizon  # the latest origin whose every window is known
    first = max(0, last - CALIBRATION_WINDOWS + 1, history.forecast_first if history.forecasts is not None else 0)
    season = history.season
    if season is not None and last - max(first, season + 1) + 1 >= MIN_WINDOWS:
        first = max(first, season + 1)  # every calibration window has yesterday's
    else:
        season = None
    if last - first + 1 < MIN_WINDOWS:
        return None
    return first, last, season


def _current_bases(history: PeakHistory, p: NDArray[np.float64], season: int | None) -> dict[str, NDArray[np.float64]]:
    """The bases at the forecast origin (the last bucket), one row. Pure."""
    forecasts = history.forecasts
    now_rows = None if forecasts is None else forecasts[-1:, : history.horizon]
    origin = np.array([history.means.size - 1], dtype=np.int64)
    return _bases(p, history.means, origin, history.horizon, season=season, forecasts=now_rows)


def _windows(history: PeakHistory) -> _Windows | None:
    """The calibration windows of ``history``, or ``None`` with fewer than `MIN_WINDOWS`. Pure."""
    span = _span(history)
    if span is None:
        return None
    first, last, season = span
    means, horizon, forecasts = history.means, history.horizon, history.forecasts
    p = _observed_peaks(history)
    origins = np.arange(first, last + 1, dtype=np.int64)
    rows = None if forecasts is None else forecasts[origins - history.forecast_first][:, :horizon]
    return _Windows(
        origins=origins,
        past=_bases(p, means, origins, horizon, season=season, forecasts=rows),
        current=_current_bases(history, p, season),
        actual=_window_max(p, origins, horizon),
        floor=scale_floor(means[-CALIBRATION_WINDOWS:]),
    )


def _monotone(quantiles: Mapping[float, NDArray[np.float64]]) -> dict[float, NDArray[np.float64]]:
    """Non-negative, non-decreasing in the window length and in the level. Pure."""
    levels = sorted(quantiles)
    stacked = np.maximum.accumulate(np.maximum(np.array([quantiles[q] for q in levels]), 0.0), axis=1)
    stacked = np.maximum.accumulate(stacked, axis=0)
    return {q: stacked[i] for i, q in enumerate(levels)}


def _conformal(w: _Windows, levels: Sequence[float]) -> PeakForecast:
    """Each basis plus its split-conformal residual, relative or additive; the best by pinball. Pure.

    Relative residuals (divided by the basis) fit load whose surprises grow with it.
    Bursty, intermittent load is the other kind: a burst of the same size comes whatever
    the level, so relative to a basis near zero it is a factor of tens, and that factor
    applied to a busy hour's basis asks for many times the highest load ever seen (on
    Alibaba lora, 10,000 req/s against a 1,300 req/s history, for half a day). Each basis
    is therefore also calibrated on additive residuals (served as ``<basis>+``), and the
    pinball loss at the policy level picks among all of them.
    """
    q_select = max(levels)
    count = w.origins.size
    fits: dict[str, dict[float, NDArray[np.float64]]] = {}
    scores: dict[str, float] = {}
    for base, additive in [(n, False) for n in BASES] + [(n, True) for n in BASES]:
        basis = w.past.get(base)
        if basis is None or base not in w.current:
            continue
        name = base + "+" if additive else base
        scale = np.ones_like(basis) if additive else np.maximum(basis, w.floor)
        ordered = np.sort((w.actual - basis) / scale, axis=0)
        offsets: dict[float, NDArray[np.float64]] = {}
        for q in levels:
            # The split-conformal finite-sample level, clipped to the sample.
            adjusted = min(1.0, q * (count + 1) / count) if q >= 0.5 else max(0.0, 1 - (1 - q) * (count + 1) / count)
            offsets[q] = np.quantile(ordered, adjusted, axis=0)
        scores[name] = pinball_loss(w.actual, basis + offsets[q_select] * scale, q_select)
        now = w.current[base][0]
        now_scale = 1.0 if additive else np.maximum(now, w.floor)
        fits[name] = {q: now + off * now_scale for q, off in offsets.items()}
    best = min(scores, key=scores.__getitem__)
    return PeakForecast(basis=best, quantiles=_monotone(fits[best]), windows=count)


#: Most iterations of the quantile regression's reweighting. IRLS on the pinball loss
#: closes in on its optimum only linearly (a handful of residuals go to zero and their
#: weights grow without bound), so the coefficients rarely settle within
#: `QR_TOLERANCE`: the loss test below ends most fits long before this.
QR_ITERATIONS = 60
QR_TOLERANCE = 1e-6
#: A fit ends when its lowest pinball loss has improved by less than this fraction over
#: the last `QR_PATIENCE` iterations. On a week of windows the 60 iterations that used
#: to run each fit ended within 1e-3 of this loss (median 1e-4) and cost most of a
#: refit's CPU, a hundred fits per refit (window lengths x levels): each iteration is a
#: pass over the whole week, whatever the remaining gain.
QR_LOSS_TOLERANCE = 1e-5
QR_PATIENCE = 5


def _pinball(r: NDArray[np.float64], q: float) -> float:
    """Pinball loss of the residuals ``r`` at level ``q`` (summed). Pure."""
    return float(np.dot(r, q - (r < 0)))


def quantile_regression(
    y: NDArray[np.float64], x: NDArray[np.float64], q: float, start: NDArray[np.float64] | None = None
) -> NDArray[np.float64] | None:
    """Linear quantile regression coefficients by iteratively reweighted least squares. Pure.

    Minimises the pinball loss ``sum(rho_q(y - x @ b))``: each pass solves a weighted least
    squares with weight ``q / |r|`` above the fit and ``(1 - q) / |r|`` below it (the
    loss's own slope over the residual), as statsmodels' QuantReg does. The iterate with
    the lowest loss is returned (IRLS is not monotone near the optimum), once the loss
    has stopped improving (`QR_LOSS_TOLERANCE`) or the coefficients have settled; a
    warm start near the solution (the last fit, or the neighbouring window length's)
    gets there in fewer passes, so an hourly refit of every window length and level
    stays cheap at a thousand targets. ``None`` if the system is singular.
    """
    p = x.shape[1]
    floor = 1e-6 * max(float(np.mean(np.abs(y))), 1e-12)
    ridge = 1e-10 * np.eye(p)
    try:
        beta = np.linalg.lstsq(x, y, rcond=None)[0] if start is None or start.shape != (p,) else start.copy()
        best, best_loss, stalled = beta, math.inf, 0
        for _ in range(QR_ITERATIONS):
            r = y - x @ beta
            loss = _pinball(r, q)
            stalled = 0 if loss < best_loss * (1.0 - QR_LOSS_TOLERANCE) else stalled + 1
            if loss < best_loss:
                best, best_loss = beta, loss
            if stalled >= QR_PATIENCE:
                break
            weight = np.where(r > 0, q, 1.0 - q) / np.maximum(np.abs(r), floor)
            xw = x * weight[:, None]
            new = np.linalg.solve(xw.T @ x + ridge, xw.T @ y)
            settled = np.max(np.abs(new - beta)) <= QR_TOLERANCE * (1.0 + np.max(np.abs(beta)))
            beta = new
            if settled:
                break
        if _pinball(y - x @ beta, q) < best_loss:
            best = beta
    except np.linalg.LinAlgError:
        return None
    result = np.asarray(best, dtype=np.float64)
    return result if np.isfinite(result).all() else None


@dataclass(frozen=True)
class PeakEconomics:
    """What capacity and a miss cost, to choose the level from a target's own history.

    Attributes:
        unit: Load one replica serves within the SLO (the sizing unit).
        replica_bucket_cost: Cost of one replica held for one bucket.
        request_miss_cost: Cost of one request that misses the SLO.
        window: Window length (buckets, 1-based) the capacity is bought for: the node
            cold start.
    """

    unit: float
    replica_bucket_cost: float
    request_miss_cost: float
    window: int


def _replay_cost(
    fitted: NDArray[np.float64], w: _Windows, means: NDArray[np.float64], step: float, e: PeakEconomics
) -> float:
    """Cost of sizing every past window at ``fitted`` (one value per origin). Pure.

    Capacity bought at an origin arrives a cold start later (``window`` buckets) and is
    held for as long (no scale-down while it is needed again within a cold start), so
    bucket ``j`` has the largest capacity the origins one to two cold starts before it
    bought; what later origins saw comes too late for it. Every request of a bucket
    whose peak exceeds its capacity counts as missed (a queue builds and the whole
    bucket waits).
    """
    replicas = np.ceil(np.maximum(fitted, 0.0) / e.unit - 1e-9)
    capacity = replicas * e.unit
    n, lead = w.origins.size, e.window
    # Capacity bought at origin i is in place from bucket i + lead on (a cold start
    # later) and held for a window; what origins saw later arrives too late for bucket j.
    held = np.full(n + 2 * lead, -np.inf)
    for k in range(lead):
        held[lead + k : lead + k + n] = np.maximum(held[lead + k : lead + k + n], capacity)
    m = np.arange(2 * lead - 1, n + lead)  # buckets o_0 + m covered by `lead` origins each
    m = m[m <= n - 1]  # whose peak is known
    cover = held[m]
    bucket_peak = w.actual[m - 1, 0]  # actual[i, 0] is the peak of bucket o_i + 1
    missed = bucket_peak > cover + 1e-9
    requests = means[w.origins[0] + m] * step
    held_replicas = cover / e.unit
    return float(held_replicas.sum() * e.replica_bucket_cost + requests[missed].sum() * e.request_miss_cost)


@dataclass
class PeakModel:
    """Window-peak quantiles by quantile regression on the bases, refitted on a cadence.

    ``fit`` estimates, per window length and level, the weights of a constant and of
    each regressor basis (`REGRESSORS`) available in the history; ``predict`` applies
    them to the bases now. Without a fit, with too little history, or when a fitted
    basis is missing now, ``predict`` serves the single-basis conformal calibration.
    """

    levels: tuple[float, ...]
    #: (window length, level) -> (regressor names, weights: constant first).
    coefficients: dict[tuple[int, float], tuple[tuple[str, ...], NDArray[np.float64]]] = field(default_factory=dict)
    windows: int = 0
    #: The level whose replayed cost was lowest at the last fit (with economics), else ``None``.
    level: float | None = None
    #: Level -> relative correction per window length (see `score`); kept across refits.
    offsets: dict[float, NDArray[np.float64]] = field(default_factory=dict)
    #: Start of a served window -> the quantiles served for it, until its peaks are known.
    pending: dict[float, dict[float, NDArray[np.float64]]] = field(default_factory=dict)

    def fit(self, history: PeakHistory, economics: PeakEconomics | None = None, *, step: float = 300.0) -> Self:
        """Fit the regressions on the calibration windows of ``history`` (a no-op if too few).

        With ``economics``, also choose `level`: the fitted level whose sizing of the
        past windows (`_replay_cost`) would have cost least, missed requests included.
        A target whose misses are short bursts carrying few requests is sized lower
        than one whose misses are level shifts that queue the whole fleet.
        """
        old, self.coefficients = self.coefficients, {}
        self.level = None
        w = _windows(history)
        if w is None or w.origins.size < MIN_REGRESSION_WINDOWS:
            self.windows = 0
            return self
        self.windows = int(w.origins.size)
        names = tuple(n for n in REGRESSORS if n in w.past)
        for k in range(self.fitted_windows(history.horizon, economics)):
            scale = np.maximum(w.past["forecast"][:, k], w.floor)
            for q in self.levels:
                chosen = list(names)
                while chosen:
                    x = np.column_stack([np.ones(scale.size)] + [w.past[n][:, k] for n in chosen]) / scale[:, None]
                    # Warm start: this fit's last estimate, else the window one bucket
                    # shorter (the peaks of windows a bucket apart weigh the bases alike).
                    previous = old.get((k, q)) or self.coefficients.get((k - 1, q))
                    start = previous[1] if previous is not None and previous[0] == tuple(chosen) else None
                    params = quantile_regression(w.actual[:, k] / scale, x, q, start)
                    if params is None:
                        chosen = []
                        break
                    negative = int(np.argmin(params[1:]))
                    if params[1 + negative] >= 0:
                        self.coefficients[(k, q)] = (regressor_names(chosen), params)
                        break
                    del chosen[negative]  # a larger basis must never lower the peak
        if economics is not None:
            self.level = self._cheapest_level(w, history, economics, step)
        return self

    @staticmethod
    def fitted_windows(horizon: int, economics: PeakEconomics | None) -> int:
        """Window lengths the regression is fitted for: up to a bucket past the node window.

        Decisions read the window until a new replica serves (a bucket or two) and the
        one until a new node does; longer windows reuse the longest fitted one's weights.
        """
        window = economics.window if economics is not None else horizon
        return max(1, min(horizon, window + 1))

    def _cheapest_level(self, w: _Windows, history: PeakHistory, e: PeakEconomics, step: float) -> float | None:
        """The level with the lowest replayed cost at the node window (in-sample fits)."""
        k = min(max(e.window, 1), history.horizon) - 1
        best: tuple[float, float] | None = None
        for q in self.levels:
            fitted_q = self.coefficients.get((k, q))
            if fitted_q is None:
                continue
            names, params = fitted_q
            fitted = params[0] + sum(params[1 + i] * w.past[n][:, k] for i, n in enumerate(names))
            fitted = fitted * (1.0 + self._offset(q, k))
            cost = _replay_cost(np.asarray(fitted, dtype=np.float64), w, history.means, step, e)
            if best is None or cost < best[0]:
                best = (cost, q)
        return None if best is None else best[1]

    def predict(self, history: PeakHistory) -> PeakForecast | None:
        """The peak quantiles now, or ``None`` with fewer than `MIN_WINDOWS` windows."""
        w = _windows(history)
        if w is None:
            return None
        now = {name: basis[0] for name, basis in w.current.items()}
        regressed = self.predict_from(now, history.horizon)
        return regressed if regressed is not None else _conformal(w, self.levels)

    def predict_from(self, bases: Mapping[str, NDArray[np.float64]], horizon: int) -> PeakForecast | None:
        """The regression's peak quantiles for the bases now (one value per window length).

        ``None`` without a fit or when a fitted basis is missing. Cheap (a dot product per
        window and level), so the caller can re-apply it within a bucket when a new peak
        raises the ``latest`` and ``recent`` bases (`with_partial_peak`).
        """
        if not self.coefficients:
            return None
        fitted_k = max(k for k, _ in self.coefficients)
        out: dict[float, NDArray[np.float64]] = {}
        for q in self.levels:
            row = np.empty(horizon)
            for k in range(horizon):
                fitted = self.coefficients.get((min(k, fitted_k), q))
                if fitted is None or any(n not in bases for n in fitted[0]):
                    return None
                names, params = fitted
                value = params[0] + sum(params[1 + i] * bases[n][k] for i, n in enumerate(names))
                row[k] = value * (1.0 + self._offset(q, k))
            out[q] = row
        return PeakForecast(basis="regression", quantiles=_monotone(out), windows=self.windows, level=self.level)

    def _offset(self, q: float, k: int) -> float:
        offsets = self.offsets.get(q)
        return 0.0 if offsets is None else float(offsets[min(k, offsets.size - 1)])

    def track(self, start: float, forecast: PeakForecast) -> None:
        """Remember the regression's quantiles served for the windows from ``start`` on.

        Only the fitted window lengths are kept (the rest reuse the longest one's
        correction), and only until `score` has seen their peaks.
        """
        if forecast.basis != "regression" or not self.coefficients:
            return
        lengths = max(k for k, _ in self.coefficients) + 1
        while len(self.pending) >= MAX_PENDING:  # a clock gone back leaves windows that never close
            del self.pending[min(self.pending)]
        quantiles = forecast.quantiles
        self.pending[start] = {q: np.asarray(v[:lengths], dtype=np.float64).copy() for q, v in quantiles.items()}

    def score(self, history: PeakHistory, origin: float, step: float) -> None:
        """Update the coverage correction with every tracked window whose peaks are now known.

        ``origin`` is the start time of the last bucket of ``history``. A window's level
        factor rises by ``ADAPT_STEP * level`` when the served quantile was exceeded and
        falls by ``ADAPT_STEP * (1 - level)`` when it held. A change of the fitted window
        lengths (a new cold start) starts the level's correction afresh.
        """
        if not self.pending:
            return
        size = history.means.size
        p = _observed_peaks(history)
        first = origin - (size - 1) * step
        for start in sorted(self.pending):
            served = self.pending[start]
            lengths = next(iter(served.values())).size
            i = round((start - first) / step)
            if i + lengths > size:
                break  # this window and every later one are still open
            del self.pending[start]
            if i < 0:
                continue
            actual = np.maximum.accumulate(p[i : i + lengths])
            for q, values in served.items():
                offsets = self.offsets.get(q)
                if offsets is None or offsets.size != lengths:
                    offsets = self.offsets[q] = np.zeros(lengths)
                exceeded = (actual > values * (1.0 + 1e-9)).astype(np.float64)
                offsets[:] = np.clip(offsets + ADAPT_STEP * (exceeded - (1.0 - q)), *ADAPT_RANGE)

    @staticmethod
    def current_bases(history: PeakHistory) -> dict[str, NDArray[np.float64]] | None:
        """The bases at the forecast origin (what `predict_from` reads), or ``None`` if too short.

        Every update reads them: only the origin's own windows are computed, not the
        calibration's (same numbers as `_windows`, at a fraction of its CPU).
        """
        span = _span(history)
        if span is None:
            return None
        current = _current_bases(history, _observed_peaks(history), span[2])
        return {name: basis[0] for name, basis in current.items()}


def with_partial_peak(bases: Mapping[str, NDArray[np.float64]], peak: float) -> dict[str, NDArray[np.float64]]:
    """The bases with a peak seen in the bucket still being collected. Pure.

    The origin is the last complete bucket, up to a bucket old; a higher load seen since
    raises the ``latest`` and ``recent`` peaks (and the envelope) at once instead of at
    the next bucket, which is a third of a 15-minute cold start sooner.
    """
    out = dict(bases)
    for name in ("latest", "recent"):
        if name in out:
            out[name] = np.maximum(out[name], peak)
    if "envelope" in out and "seasonal" in out:
        out["envelope"] = np.maximum(out["seasonal"], out["latest"])
    return out
