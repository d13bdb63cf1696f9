"""What ``decide`` needs from a forecast: the peak of a quantile over a time window.

The core does not care which model produced the numbers, nor how: a fitted model's
prediction, the simulator's perfect-foresight oracle and test tables all implement
:class:`ForecastView`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.base import Prediction


class ForecastView(Protocol):
    """A forecast the decision core can query."""

    @property
    def model(self) -> str:
        """Name of the model behind the numbers (for logs and metrics)."""
        ...

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """Highest predicted load at ``quantile`` over ``[start, end]``; ``None`` if uncovered."""
        ...


class PredictionView:
    """A :class:`ForecastView` over a model's :class:`~models.base.Prediction`.

    Each predicted point is the mean load of the bucket ``[t, t + step)``; a window
    covers every bucket it intersects. Windows that start before the prediction use its
    first bucket (the prediction starts at the end of the last complete bucket).

    When the prediction carries calibrated peaks (`models.peaks`), a window's peak is
    the quantile of the highest load from the prediction's start to the window's end:
    what capacity must cover, rather than the highest bucket mean. A window starting
    later than the first bucket (a prediction a bucket old) still reads the peak from
    the start, which can only be higher.
    """

    def __init__(self, prediction: Prediction) -> None:
        self.prediction = prediction

    @property
    def model(self) -> str:
        """Name of the model that made the prediction."""
        return self.prediction.model

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """Pure. See :class:`ForecastView`."""
        p = self.prediction
        n = len(p.mean)
        if n == 0:
            return None
        first = max(0, int(np.floor((start - p.start) / p.step)))
        last = int(np.floor((end - p.start) / p.step))
        if last < 0 or first >= n:
            return None
        last = min(last, n - 1)
        peaks = p.peak(quantile if p.peak_level is None else p.peak_level)
        if peaks is not None:
            return float(peaks[last])
        values = p.quantile(quantile)[first : last + 1]
        if values.size == 0 or not np.all(np.isfinite(values)):
            return None
        return float(np.max(values))


class ConstantForecast:
    """A flat forecast (tests and the static-provisioning baseline)."""

    def __init__(self, load: float, *, model: str = "constant") -> None:
        self.load = load
        self._model = model

    @property
    def model(self) -> str:
        """The label given at construction."""
        return self._model

    def peak(self, *, quantile: float, start: float, end: float) -> float | None:
        """The constant, whatever the window and quantile."""
        return self.load
