"""Shadow scoring: every forecast is scored when the load it predicted has happened.

Operators do not trust a forecaster with their GPUs on a backtest alone; they want to see
how its forecasts fare on live traffic, in dry-run, before enforcing. This module keeps,
per target, the forecasts issued (one per bucket start) and scores each predicted point
when its bucket completes:

* **pinball loss** at the policy quantile and at the median (the loss the model selection
  minimises, so live scores and backtest scores are comparable);
* **interval coverage**: the fraction of points at or below the upper (policy) quantile;
  a well-calibrated P90 covers about 90 %;
* **under-forecast minutes**: bucket minutes in which the load exceeded the upper
  quantile of the forecast that drove the capacity for that bucket (the one issued at
  least a node cold start earlier, since that is when placeholders had to be asked for).

Scores are kept per model over a rolling window, so the automatic selection can demote a
model that keeps under-forecasting (see :meth:`ForecastScorer.under_forecasting`).

:class:`ProvisioningScorer` answers the question dry-run users ask: "how many minutes
would have been under-provisioned with what I run today, and with you?" It counts minutes
in which the observed load exceeded the capacity of the replicas actually ready (the
current, usually reactive, setup) and of the replicas the controller had decided one pod
start-up earlier (what would be ready now had it been enforcing).

Everything here is pure bookkeeping: times are passed in, nothing reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from autoscaler.core.types import Decision, Observation
from models.base import Prediction
from models.evaluation import pinball_loss
from models.series import Series


@dataclass(frozen=True)
class ScoredPoint:
    """One predicted point scored against the load that happened."""

    bucket_start: float
    issued_at: float
    model: str
    actual: float
    median: float
    upper: float
    pinball_upper: float
    pinball_median: float

    @property
    def covered(self) -> bool:
        """The load stayed at or below the upper quantile."""
        return self.actual <= self.upper

    @property
    def lead_seconds(self) -> float:
        """How far ahead the point was forecast."""
        return self.bucket_start - self.issued_at


@dataclass(frozen=True)
class ModelScore:
    """Rolling-window scores of one model."""

    model: str
    points: int
    pinball_upper: float
    pinball_median: float
    coverage: float
    under_forecast_minutes: float


@dataclass(frozen=True)
class _Issued:
    issued_at: float
    model: str
    prediction: Prediction


class ForecastScorer:
    """Scores one target's forecasts as their buckets complete.

    Args:
        quantile: The policy (upper) quantile.
        step: Bucket length in seconds (the forecast resolution).
        lead_seconds: Lead of the forecast that counts for under-forecast minutes (the
            node cold start): placeholders for a bucket had to be asked for this early.
        window_seconds: Scores older than this (by bucket start) leave the rolling window.
    """

    def __init__(self, *, quantile: float, step: float, lead_seconds: float, window_seconds: float = 86400.0) -> None:
        if not 0.0 < quantile < 1.0 or step <= 0 or lead_seconds < 0 or window_seconds <= 0:
            raise ValueError("quantile must be in (0, 1); step and window_seconds > 0; lead_seconds >= 0")
        self.quantile = quantile
        self.step = step
        self.lead_seconds = lead_seconds
        self.window_seconds = window_seconds
        self._pending: dict[float, _Issued] = {}
        #: Per model, one row per bucket of the window (a ring indexed by bucket number):
        #: bucket start, points, pinball sums (upper, median), points covered, minutes under.
        #: Sums per bucket rather than points keep a day at ~14 KB per model.
        self._slots = int(window_seconds // step) + 1
        self._window: dict[str, np.ndarray] = {}
        self._latest: float | None = None
        #: Cumulative counts since start, per model (for Prometheus counters).
        self.total_points: dict[str, int] = {}
        self.total_under_forecast_minutes: dict[str, float] = {}

    def record(self, prediction: Prediction, *, issued_at: float, model: str) -> None:
        """Remember a forecast; a later one with the same start replaces it (a refit within the bucket)."""
        if self.quantile not in prediction.quantiles or 0.5 not in prediction.quantiles:
            raise ValueError(f"the prediction lacks quantile {self.quantile:g} or the median")
        self._pending[prediction.start] = _Issued(issued_at=issued_at, model=model, prediction=prediction)

    def score(self, bucket_start: float, actual: float | None) -> list[ScoredPoint]:
        """Score every pending forecast covering a completed bucket; forget finished ones.

        Args:
            bucket_start: Start of the completed bucket.
            actual: Its mean load; ``None`` or NaN (a gap) scores nothing.

        Returns:
            The points scored (empty for a gap).
        """
        scored: list[ScoredPoint] = []
        if actual is not None and math.isfinite(actual):
            for issued in self._pending.values():
                point = self._score_one(issued, bucket_start, actual)
                if point is not None:
                    scored.append(point)
        self._pending = {
            start: issued
            for start, issued in self._pending.items()
            if start + issued.prediction.horizon * issued.prediction.step > bucket_start + self.step
        }
        if scored:
            under = self._under_forecast_minutes(scored)
            for point in scored:
                self.total_points[point.model] = self.total_points.get(point.model, 0) + 1
            self._add_to_window(scored, under)
        if self._latest is None or bucket_start > self._latest:
            self._latest = bucket_start
        return scored

    def _score_one(self, issued: _Issued, bucket_start: float, actual: float) -> ScoredPoint | None:
        p = issued.prediction
        index = round((bucket_start - p.start) / p.step)
        if index < 0 or index >= p.horizon or abs(p.start + index * p.step - bucket_start) > p.step / 2:
            return None
        upper = float(p.quantiles[self.quantile][index])
        median = float(p.quantiles[0.5][index])
        return ScoredPoint(
            bucket_start=bucket_start,
            issued_at=issued.issued_at,
            model=issued.model,
            actual=actual,
            median=median,
            upper=upper,
            pinball_upper=pinball_loss(actual, upper, self.quantile),
            pinball_median=pinball_loss(actual, median, 0.5),
        )

    def _under_forecast_minutes(self, scored: list[ScoredPoint]) -> tuple[float, ScoredPoint]:
        """Minutes of this bucket under-forecast by the forecast that drove its capacity.

        That forecast is the newest one issued at least ``lead_seconds`` ahead of the
        bucket's end; if none is that old (just started), the oldest one scored.
        """
        bucket_end = scored[0].bucket_start + self.step
        early = [p for p in scored if bucket_end - p.issued_at >= self.lead_seconds]
        driving = max(early, key=lambda p: p.issued_at) if early else min(scored, key=lambda p: p.issued_at)
        return (0.0 if driving.covered else self.step / 60.0), driving

    def _add_to_window(self, scored: list[ScoredPoint], under: tuple[float, ScoredPoint]) -> None:
        minutes, driving = under
        for point in scored:
            counted = minutes if point is driving else 0.0
            ring = self._window.get(point.model)
            if ring is None:
                ring = self._window[point.model] = np.full((self._slots, 6), np.nan)
            row = ring[round(point.bucket_start / self.step) % self._slots]
            if row[0] != point.bucket_start:
                row[:] = (point.bucket_start, 0, 0, 0, 0, 0)
            row[1:] += (1, point.pinball_upper, point.pinball_median, point.covered, counted)
            if counted:
                self.total_under_forecast_minutes[point.model] = (
                    self.total_under_forecast_minutes.get(point.model, 0.0) + counted
                )
            else:
                self.total_under_forecast_minutes.setdefault(point.model, 0.0)

    def scores(self) -> dict[str, ModelScore]:
        """Rolling-window scores per model."""
        out: dict[str, ModelScore] = {}
        if self._latest is None:
            return out
        oldest = self._latest - self.window_seconds
        for model, ring in self._window.items():
            rows = ring[ring[:, 0] >= oldest]  # NaN (never written) rows compare False
            points = int(rows[:, 1].sum())
            if points == 0:
                continue
            out[model] = ModelScore(
                model=model,
                points=points,
                pinball_upper=float(rows[:, 2].sum() / points),
                pinball_median=float(rows[:, 3].sum() / points),
                coverage=float(rows[:, 4].sum() / points),
                under_forecast_minutes=float(rows[:, 5].sum()),
            )
        return out

    def forget(self, model: str) -> None:
        """Drop ``model``'s points from the rolling window (it was just demoted: judge it afresh)."""
        self._window.pop(model, None)

    def under_forecasting(self, model: str, *, min_points: int, tolerance: float) -> bool:
        """Whether ``model`` keeps under-forecasting: coverage below ``quantile - tolerance``.

        Only judged on at least ``min_points`` scored points in the window, so one bad
        hour right after a refit does not condemn a model.
        """
        score = self.scores().get(model)
        return score is not None and score.points >= min_points and score.coverage < self.quantile - tolerance


@dataclass(frozen=True)
class ProvisioningTotals:
    """Minutes compared over the same span for the current setup and for the controller."""

    observed_minutes: float
    current_under_minutes: float
    predictive_under_minutes: float


class ProvisioningScorer:
    """Under-provisioned minutes: the setup in place (usually a reactive HPA) versus us.

    Each call covers the time since the previous call (capped at ``max_gap_seconds``, so
    a controller outage is not counted as minutes of either). The current setup is
    under-provisioned when its latency breached the SLO, or, with no latency reading,
    when the load exceeded the capacity of its ready replicas. The controller is
    under-provisioned when the load exceeded the capacity of the replicas it had decided
    one pod start-up earlier: what would be ready now had it been enforcing. Intervals
    with unknown load count for neither, and none are counted until a decision old enough
    exists, so both figures cover the same span.
    """

    def __init__(self, *, max_gap_seconds: float) -> None:
        if max_gap_seconds <= 0:
            raise ValueError("max_gap_seconds must be > 0")
        self.max_gap_seconds = max_gap_seconds
        self._last: float | None = None
        self._decisions: deque[tuple[float, int]] = deque()
        self.observed_minutes = 0.0
        self.current_under_minutes = 0.0
        self.predictive_under_minutes = 0.0

    def observe(
        self,
        *,
        now: float,
        load: float | None,
        latency_breached: bool | None,
        ready_replicas: int,
        per_replica_capacity: float,
        decided_replicas: int,
        pod_lead_seconds: float,
    ) -> None:
        """Account the interval since the last call, then remember this cycle's decision."""
        last, self._last = self._last, now
        if last is not None and now < last:
            self._decisions.clear()  # the clock went back: older decisions no longer order
        self._decisions.append((now, decided_replicas))
        ours = self._decided_before(now - pod_lead_seconds)
        if last is None or now <= last or load is None or not math.isfinite(load) or ours is None:
            return
        minutes = min(now - last, self.max_gap_seconds) / 60.0
        self.observed_minutes += minutes
        if latency_breached if latency_breached is not None else load > ready_replicas * per_replica_capacity:
            self.current_under_minutes += minutes
        if load > ours * per_replica_capacity:
            self.predictive_under_minutes += minutes

    def _decided_before(self, when: float) -> int | None:
        """The newest decision taken at or before ``when``; older ones are forgotten."""
        while len(self._decisions) > 1 and self._decisions[1][0] <= when:
            self._decisions.popleft()
        first = self._decisions[0]
        return first[1] if first[0] <= when else None

    def totals(self) -> ProvisioningTotals:
        """The cumulative minutes."""
        return ProvisioningTotals(
            observed_minutes=self.observed_minutes,
            current_under_minutes=self.current_under_minutes,
            predictive_under_minutes=self.predictive_under_minutes,
        )


class TargetShadow:
    """One target's shadow scoring, fed by the controller once per cycle.

    The controller calls :meth:`after_forecast` after refreshing the forecast (buckets
    completed since the last call are scored against the forecasts recorded earlier,
    then the current forecast is recorded) and :meth:`after_decision` after deciding.
    History seeded at start-up is not scored: no forecast was issued for it.
    """

    def __init__(self, *, quantile: float, step: float, lead_seconds: float, max_gap_seconds: float) -> None:
        self.forecasts = ForecastScorer(quantile=quantile, step=step, lead_seconds=lead_seconds)
        self.provisioning = ProvisioningScorer(max_gap_seconds=max_gap_seconds)
        self._scored_through: float | None = None
        self._recorded: Prediction | None = None

    def after_forecast(self, series: Series | None, prediction: Prediction | None, *, now: float) -> list[ScoredPoint]:
        """Score newly completed buckets, then record the forecast in force (if new)."""
        scored: list[ScoredPoint] = []
        if series is not None and len(series):
            last = series.end
            if self._scored_through is None or last < self._scored_through:
                self._scored_through = last  # start-up, or a clock that went back: start afresh
            first = round((self._scored_through - series.start) / series.step) + 1
            for index in range(max(first, 0), len(series)):
                value = float(series.values[index])
                scored += self.forecasts.score(series.start + index * series.step, value)
            self._scored_through = last
        if prediction is not None and prediction is not self._recorded:
            self.forecasts.record(prediction, issued_at=now, model=prediction.model)
            self._recorded = prediction
        return scored

    def after_decision(self, decision: Decision, observation: Observation, *, slo_seconds: float, signal: str) -> None:
        """Account under-provisioned minutes: the replicas in place versus this decision's lineage."""
        metrics = observation.metrics
        latency = metrics.latency_mean if signal == "mean" else metrics.latency_quantile
        self.provisioning.observe(
            now=decision.time,
            load=decision.observed_load,
            latency_breached=None if latency is None else latency > slo_seconds,
            ready_replicas=observation.cluster.ready_replicas,
            per_replica_capacity=decision.per_replica_capacity,
            decided_replicas=decision.replicas,
            pod_lead_seconds=decision.pod_horizon_seconds,
        )
