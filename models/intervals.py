"""Prediction intervals from a model's own h-step-ahead errors (split-conformal style).

Model-based Gaussian intervals are badly calibrated on request load (bursty, heavier
tails, noise growing with the level), and the controller's cost knob may ask for any
level up to ~0.995. So each model hands over its recent h-step errors, normalised by
the load level they were made at, and the quantile offsets are read from them; a
Gaussian is used only where too few errors support the requested tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

MIN_TAIL_ERRORS = 2.0  # errors needed beyond a level before its empirical quantile is used
DEFAULT_RELATIVE_SIGMA = 0.25  # relative one-step spread assumed with no data at all
SCALE_FLOOR_FRACTION = 0.1  # error scale floor as a fraction of the mean recent load


def scale_floor(history: NDArray[np.float64]) -> float:
    """Smallest scale used to normalise errors, so near-zero load keeps a sane width.

    Args:
        history: Recent (gap-filled) load values.

    Returns:
        A positive floor: a fraction of the mean absolute load, at least 1e-6.
    """
    level = float(np.mean(np.abs(history))) if history.size else 0.0
    return max(SCALE_FLOOR_FRACTION * level, 1e-6)


def error_scale(level: NDArray[np.float64], floor: float) -> NDArray[np.float64]:
    """The scale an error made at forecast `level` is divided by (relative errors).

    Args:
        level: Point forecasts.
        floor: Lower bound of the scale, from `scale_floor`.

    Returns:
        max(level, floor), elementwise.
    """
    return np.maximum(level, floor)


def fallback_sigma(history: NDArray[np.float64], floor: float) -> float:
    """Relative one-step spread guessed from the history when a model has no errors yet.

    Args:
        history: Recent (gap-filled) load values.
        floor: The scale floor of the same history.

    Returns:
        The standard deviation of relative first differences, or a default for < 3 points.
    """
    if history.size < 3:
        return DEFAULT_RELATIVE_SIGMA
    rel = np.diff(history) / error_scale(history[:-1], floor)
    return max(float(np.std(rel)), 1e-3)


def relative_offsets(
    errors: NDArray[np.float64], levels: Sequence[float], *, sigma1: float
) -> dict[float, NDArray[np.float64]]:
    """Quantile offsets per level and horizon step, in units of the error scale.

    For step h, level q uses the empirical q-quantile of the finite errors in column h
    (finite-sample adjusted as in split conformal prediction) when at least
    `MIN_TAIL_ERRORS` errors lie beyond it; otherwise a normal quantile with the
    column's mean and standard deviation, or with `sigma1 * sqrt(h)` for < 2 errors.

    Args:
        errors: Shape (n_origins, horizon): (actual - forecast) / scale, NaN if unknown.
        levels: Quantile levels in (0, 1).
        sigma1: One-step relative spread used when a column has almost no errors.

    Returns:
        Level -> offsets of shape (horizon,) to multiply by the forecast's scale and add.
    """
    horizon = errors.shape[1]
    out = {float(q): np.zeros(horizon) for q in levels}
    normal = NormalDist()
    for h in range(horizon):
        column = errors[:, h]
        column = column[np.isfinite(column)]
        n = column.size
        for q, row in out.items():
            tail = min(q, 1.0 - q)
            if n * tail >= MIN_TAIL_ERRORS:
                adjusted = q * (n + 1) / n if q >= 0.5 else 1.0 - (1.0 - q) * (n + 1) / n
                row[h] = float(np.quantile(column, min(max(adjusted, 0.0), 1.0)))
            elif n >= 2:
                row[h] = float(column.mean()) + normal.inv_cdf(q) * float(column.std(ddof=1))
            else:
                row[h] = normal.inv_cdf(q) * sigma1 * math.sqrt(h + 1)
    return out
