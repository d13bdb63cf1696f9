"""Prediction intervals from a model's own h-step-ahead errors (split-conformal style).

Model-based Gaussian intervals are badly calibrated on request load (bursty, heavier
tails, noise growing with the level), and the controller's cost knob may ask for any
level up to ~0.995. So each model hands over its recent h-step errors, normalised by
the load level they were made at, and the quantile offsets are read from them; a
Gaussian is used only where too few errors support the requested tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def _sorted_quantiles(
    ordered: NDArray[np.float64], counts: NDArray[np.int64], q: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Row-wise quantiles of the first ``counts[h]`` values of each sorted row ``h``.

    The arithmetic is that of `np.quantile`'s default (linear) method, so the result is
    bit-for-bit what calling it on each row's finite values gives.
    """
    rows = np.arange(ordered.shape[0])
    top = np.maximum(counts - 1, 0)
    virtual = top * q
    previous = np.floor(virtual).astype(np.intp)
    above = virtual >= top
    previous = np.where(above, top, previous)
    following = np.where(above, top, np.minimum(previous + 1, top))
    gamma = np.where(above, 0.0, virtual - previous)
    a, b = ordered[rows, previous], ordered[rows, following]
    diff = b - a
    result: NDArray[np.float64] = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return result


def relative_offsets(
    errors: NDArray[np.float64], levels: Sequence[float], *, sigma1: Callable[[], float]
) -> dict[float, NDArray[np.float64]]:
    """Quantile offsets per level and horizon step, in units of the error scale.

    For step h, level q uses the empirical q-quantile of the finite errors in column h
    (finite-sample adjusted as in split conformal prediction) when at least
    `MIN_TAIL_ERRORS` errors lie beyond it; otherwise a normal quantile with the
    column's mean and standard deviation, or with `sigma1 * sqrt(h)` for < 2 errors.

    Every prediction runs this (each target, each bucket), so all columns share one sort
    and the empirical quantiles are read from it with `np.quantile`'s own arithmetic
    (same values, ~10x cheaper than a call per column and level); only the rare columns
    with too few errors take the per-column normal path.

    Args:
        errors: Shape (n_origins, horizon): (actual - forecast) / scale, NaN if unknown.
            Sorted fastest when stored step-major (a transposed C-order array), as
            `ResidualModel` passes them.
        levels: Quantile levels in (0, 1).
        sigma1: The one-step relative spread used when a column has almost no errors
            (e.g. `fallback_sigma`); called only then.

    Returns:
        Level -> offsets of shape (horizon,) to multiply by the forecast's scale and add.
    """
    horizon = errors.shape[1]
    finite = np.isfinite(errors)
    counts = finite.sum(axis=0)
    # Row h holds column h's finite errors in ascending order, then the unknown ones.
    unknown_as_nan = errors if not np.isinf(errors).any() else np.where(finite, errors, np.nan)
    ordered = np.sort(unknown_as_nan.T, axis=1)  # NaN sorts last
    n = counts.astype(np.float64)
    per_point = np.maximum(n, 1.0)
    normal = NormalDist()
    out: dict[float, NDArray[np.float64]] = {}
    for q in (float(level) for level in levels):
        empirical = n * min(q, 1.0 - q) >= MIN_TAIL_ERRORS
        row = np.zeros(horizon)
        if empirical.any():
            adjusted = q * (per_point + 1) / per_point if q >= 0.5 else 1.0 - (1.0 - q) * (per_point + 1) / per_point
            row = np.where(empirical, _sorted_quantiles(ordered, counts, np.clip(adjusted, 0.0, 1.0)), 0.0)
        for h in np.flatnonzero(~empirical):
            if counts[h] >= 2:
                column = errors[finite[:, h], h]
                row[h] = float(column.mean()) + normal.inv_cdf(q) * float(column.std(ddof=1))
            else:
                row[h] = normal.inv_cdf(q) * sigma1() * math.sqrt(h + 1)
        out[q] = row
    return out
