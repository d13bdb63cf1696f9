"""Automatic model choice per target, from a backtest on the target's own recent history.

Targets differ (steady chat traffic, bursty batch jobs, brand-new deployments), and no
single model wins everywhere. The selector replays the controller's life cycle on recent
history at the cold-start horizon, scores each candidate by the pinball loss the policy
cares about, and serves the winner. Targets with little history get a deliberately
conservative warm-start forecast until seasonal models become possible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Self

import numpy as np

from models.base import Forecaster, Prediction, check_request
from models.errors import ForecastError, InsufficientHistory, ModelFitError
from models.evaluation import backtest_origins, rolling_origin_backtest
from models.series import Series

HOUR = 3600.0


class AutoSelector(Forecaster):
    """Picks the candidate with the lowest backtested pinball loss and forecasts with it.

    Attributes:
        selected: Name of the current winner (None before the first fit).
        scores: Candidate name -> backtest score (pinball loss at the policy quantile
            plus at the median, averaged over origins and steps) from the last fit.
    """

    name: ClassVar[str] = "auto"

    def __init__(
        self,
        candidates: Sequence[Callable[[], Forecaster]],
        *,
        horizon: int,
        quantile: float = 0.9,
        n_origins: int = 24,
        stride: int | None = None,
        warm_seconds: float = 86400.0,
        reselect_seconds: float = 86400.0,
    ) -> None:
        """Create the selector.

        Args:
            candidates: Factories of unfitted forecasters, with distinct model names;
                earlier ones win ties.
            horizon: Backtest horizon in points (the cold-start horizon).
            quantile: Policy quantile scored along with the median.
            n_origins: Backtest origins per fit.
            stride: Points between origins; default one hour of points.
            warm_seconds: While the history is shorter than this, every upper quantile
                (level > 0.5) is raised to at least the maximum of the last hour.
            reselect_seconds: A `fit` within this much history of the last selection
                only refits the winner (the backtest is the expensive part), unless
                more candidates have become eligible since (history grew past their
                minimum), so a warm-starting target upgrades as soon as it can.

        Raises:
            ValueError: On no candidates, duplicate names or invalid numbers.
        """
        check_request(horizon, (quantile,))
        if n_origins < 1 or (stride is not None and stride < 1) or warm_seconds < 0 or reselect_seconds < 0:
            raise ValueError("n_origins and stride must be >= 1; warm_seconds and reselect_seconds >= 0")
        probes = [factory() for factory in candidates]
        names = [probe.name for probe in probes]
        if not probes or len(set(names)) != len(names):
            raise ValueError(f"candidates must be non-empty with distinct names, got {names}")
        self._factories = dict(zip(names, candidates, strict=True))
        self._min_history = {probe.name: probe.min_history() for probe in probes}
        self.horizon, self.quantile = horizon, quantile
        self.n_origins, self.stride, self.warm_seconds = n_origins, stride, warm_seconds
        self.reselect_seconds = reselect_seconds
        self._selected_at: tuple[float, frozenset[str]] | None = None
        self.selected: str | None = None
        self.scores: dict[str, float] = {}
        self._model: Forecaster | None = None
        self._warm_floor: float | None = None
        #: Candidate -> history end (timestamp) until which it is ranked last (see `demote`).
        self._demoted: dict[str, float] = {}

    def min_history(self) -> int:
        """The smallest need among the candidates."""
        return min(self._min_history.values())

    @property
    def model(self) -> Forecaster | None:
        """The fitted winner, or None before the first fit."""
        return self._model

    def fit(self, series: Series) -> Self:
        """Backtest the eligible candidates, then fit the winner on the whole series.

        A candidate takes part when its `min_history` is met at the first origin. The
        origins are `n_origins` points `stride` apart ending `horizon` points before the
        end; with little history they are packed closer (down to 1 point apart) so that
        every candidate the full history allows can take part. With no room for a
        backtest the candidate needing the least history is used.

        Args:
            series: Regular history; NaN marks gaps.

        Returns:
            self, fitted.

        Raises:
            InsufficientHistory: If no candidate has enough history.
            ModelFitError: If every eligible candidate failed to fit.
        """
        finite = np.isfinite(series.values)
        if not finite.any():
            raise InsufficientHistory("the series has no finite value")
        first = int(np.argmax(finite))
        history = series.tail(len(series) - first)
        eligible = self._eligible(int(finite.sum()))
        if not self._reselection_due(history.end, eligible) and self._refit_winner_only(history):
            return self
        self._selected_at = (history.end, eligible)
        self.scores = self._backtest(history)
        self._demoted = {c: until for c, until in self._demoted.items() if until > history.end}
        ranking = sorted(self.scores, key=lambda c: (c in self._demoted, self.scores[c]))
        if not ranking:
            total = int(finite.sum())
            usable = [n for n, need in self._min_history.items() if need <= total]
            ranking = sorted(usable, key=self._min_history.__getitem__)
        for candidate in ranking:
            try:
                self._model = self._factories[candidate]().fit(history)
            except ForecastError:
                continue
            self.selected = candidate
            self._refresh_warm(history)
            return self
        if not ranking:
            raise InsufficientHistory(f"no candidate can fit {int(finite.sum())} finite points")
        raise ModelFitError(f"every candidate failed to fit: {ranking}")

    def reselects(self, series: Series) -> bool:
        """Whether `fit(series)` would run a new backtest rather than refit the winner.

        A backtest costs several times a refit; the controller budgets its work per loop
        with this.
        """
        finite = np.isfinite(series.values)
        return self._reselection_due(series.end, self._eligible(int(finite.sum())))

    def _eligible(self, finite_points: int) -> frozenset[str]:
        """The candidates whose minimum history `finite_points` meets."""
        return frozenset(c for c, need in self._min_history.items() if need <= finite_points)

    def _reselection_due(self, end: float, eligible: frozenset[str]) -> bool:
        """No selection yet, other candidates eligible, or `reselect_seconds` of new history."""
        if self.selected is None or self._selected_at is None:
            return True
        selected_end, selected_eligible = self._selected_at
        return eligible != selected_eligible or end - selected_end >= self.reselect_seconds

    def demote(self, candidate: str, *, until: float) -> None:
        """Rank ``candidate`` last until the history reaches ``until``; the next fit reselects.

        Live (shadow) scoring calls this when the served model keeps under-forecasting:
        a backtest on the past can favour a model that no longer fits the traffic.
        """
        if candidate not in self._factories:
            raise ValueError(f"unknown candidate {candidate!r}")
        self._demoted[candidate] = until
        self._selected_at = None

    def export_selection(self) -> dict[str, object] | None:
        """The last selection (winner, scores, when and among whom, demotions), or ``None``.

        What a restarted controller needs to skip the backtest: the selection stays
        valid for `reselect_seconds` of history, like it would have without the restart.
        JSON-ready (strings, floats and lists only).
        """
        if self.selected is None or self._selected_at is None:
            return None
        end, eligible = self._selected_at
        return {
            "selected": self.selected,
            "scores": dict(self.scores),
            "selected_end": end,
            "eligible": sorted(eligible),
            "demoted": dict(self._demoted),
        }

    def restore_selection(self, selection: Mapping[str, object], winner: Forecaster, history: Series) -> None:
        """Install an exported selection and its winner, already fitted on ``history``.

        Raises:
            ValueError: When the selection names a candidate this selector does not have
                or is malformed (the caller ignores the saved state then).
        """
        selected, scores = selection.get("selected"), selection.get("scores")
        end, eligible, demoted = selection.get("selected_end"), selection.get("eligible"), selection.get("demoted")
        if not isinstance(selected, str) or not isinstance(scores, dict) or not isinstance(demoted, dict):
            raise ValueError("malformed selection")
        if not isinstance(end, int | float) or not isinstance(eligible, list):
            raise ValueError("malformed selection")
        names = {selected, *scores, *eligible, *demoted}
        if not names <= set(self._factories) or winner.name != selected:
            raise ValueError(f"the selection names candidates this selector does not have: {sorted(names)}")
        self.selected = selected
        self.scores = {str(k): float(v) for k, v in scores.items()}
        self._selected_at = (float(end), frozenset(str(c) for c in eligible))
        self._demoted = {str(k): float(v) for k, v in demoted.items()}
        self._model = winner
        self._refresh_warm(history)

    def winner_factory(self, name: str) -> Callable[[], Forecaster]:
        """The factory of candidate ``name`` (to rebuild a restored winner).

        Raises:
            KeyError: When ``name`` is not a candidate.
        """
        return self._factories[name]

    def _refit_winner_only(self, history: Series) -> bool:
        """Refit the current winner without a new backtest; False if it fails to fit."""
        assert self.selected is not None  # noqa: S101 - a selection exists when not due
        try:
            self._model = self._factories[self.selected]().fit(history)
        except ForecastError:
            return False
        self._refresh_warm(history)
        return True

    def _backtest(self, history: Series) -> dict[str, float]:
        """Scores of the candidates eligible at the first origin of a packed schedule."""
        n, horizon = len(history), self.horizon
        finite_before = np.cumsum(np.isfinite(history.values))  # [o - 1]: finite in [:o]
        last = n - horizon
        if last < 1:
            return {}
        eligible = [c for c, need in self._min_history.items() if finite_before[last - 1] >= need]
        if not eligible:
            return {}
        need = max(self._min_history[c] for c in eligible)
        need_at = int(np.searchsorted(finite_before, need)) + 1  # shortest history with `need`
        stride = self.stride or max(1, round(HOUR / history.step))
        if self.n_origins > 1:
            stride = min(stride, max(1, (last - need_at) // (self.n_origins - 1)))
        origins = backtest_origins(n, horizon=horizon, n_origins=self.n_origins, stride=stride)
        count = sum(1 for o in origins if o >= need_at)
        scores: dict[str, float] = {}
        for candidate in eligible:
            try:
                result = rolling_origin_backtest(
                    history,
                    self._factories[candidate],
                    horizon=horizon,
                    quantiles=(0.5, self.quantile),
                    n_origins=count,
                    stride=stride,
                )
            except ForecastError:
                continue
            score = result.score(self.quantile)
            if math.isfinite(score):
                scores[candidate] = score
        return scores

    def _refresh_warm(self, series: Series) -> None:
        """Set the warm-start floor: the last hour's maximum while history is short."""
        finite = series.values[np.isfinite(series.values)]
        if len(series) * series.step >= self.warm_seconds or not finite.size:
            self._warm_floor = None
            return
        recent = series.values[-max(1, round(HOUR / series.step)) :]
        recent = recent[np.isfinite(recent)]
        self._warm_floor = float(np.max(recent)) if recent.size else float(finite[-1])

    def update(self, series: Series) -> Self:
        """Update the current winner cheaply; the choice is revisited only by `fit`.

        Args:
            series: The full recent history.

        Returns:
            self.

        Raises:
            ModelFitError: If the selector has not been fitted.
        """
        if self._model is None:
            raise ModelFitError("auto is not fitted; call fit() first")
        self._model.update(series)
        finite = np.isfinite(series.values)
        if finite.any():
            self._refresh_warm(series.tail(len(series) - int(np.argmax(finite))))
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Prediction:
        """The winner's forecast, with upper quantiles floored during warm start.

        Args:
            horizon: Number of points to predict (>= 1).
            quantiles: Levels in (0, 1).

        Returns:
            The Prediction, named "auto(<winner>)".

        Raises:
            ModelFitError: If the selector has not been fitted.
            ValueError: On an invalid horizon or level.
        """
        check_request(horizon, quantiles)
        if self._model is None:
            raise ModelFitError("auto is not fitted; call fit() first")
        inner = self._model.predict(horizon, quantiles)
        floor = self._warm_floor
        levels = {
            q: np.maximum(values, floor) if floor is not None and q > 0.5 else values
            for q, values in inner.quantiles.items()
        }
        return Prediction(
            start=inner.start,
            step=inner.step,
            mean=inner.mean,
            quantiles=levels,
            model=f"auto({inner.model})",
            backcasts=inner.backcasts,
        )
