"""Gap filling: models need complete inputs, and a missing scrape must never look like zero load.

A gap is filled with the value one season back shifted by the level difference seen
around the gap (so a gap at the daily peak is filled with a peak), else by linear
interpolation, else by carrying the last known value forward.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from models.errors import InsufficientHistory

_ANCHOR_POINTS = 6  # points averaged to estimate the level shift on each side of a gap


def _runs(missing: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Half-open [start, end) index ranges of consecutive True values."""
    edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _level_shift(y: NDArray[np.float64], lo: int, hi: int, season: int) -> float | None:
    """Mean of y[t] - y[t - season] over finite pairs with lo <= t < hi, if any."""
    lo = max(lo, season)
    if hi <= lo:
        return None
    diff = y[lo:hi] - y[lo - season : hi - season]
    diff = diff[np.isfinite(diff)]
    return float(diff.mean()) if diff.size else None


def _fill_seasonal(y: NDArray[np.float64], start: int, end: int, season: int) -> bool:
    """Fill y[start:end] from one season back plus a blended level shift; False if impossible."""
    if start < season:
        return False
    left = _level_shift(y, start - _ANCHOR_POINTS, start, season)
    right = None
    if end < y.size and end - season < start:
        right = _level_shift(y, end, min(end + _ANCHOR_POINTS, y.size), season)
    if left is None:
        left = 0.0 if right is None else right
    if right is None:
        right = left
    weight = (np.arange(start, end) - (start - 1)) / (end - start + 1)
    shift = left + (right - left) * weight
    for chunk in range(start, end, season):  # a gap longer than a season reuses filled values
        stop = min(chunk + season, end)
        y[chunk:stop] = y[chunk - season : stop - season] + shift[chunk - start : stop - start]
    return True


def fill_gaps(values: NDArray[np.float64], *, season: int | None = None) -> NDArray[np.float64]:
    """`values` with every NaN (or inf) replaced by a plausible load value.

    Gaps are filled in time order, each one: from one season back plus the level shift
    measured next to the gap (when `season` is given and a season of data precedes it),
    else by linear interpolation between its neighbours, else with the nearest known
    value (leading or trailing gaps). Filled values are clipped at 0.

    Args:
        values: The raw series.
        season: Season length in points, or None for non-seasonal filling.

    Returns:
        A finite float64 array of the same length: `values` itself when it is a float64
        array without a gap (models share their history window instead of copying it;
        do not write to the result), else a filled copy.

    Raises:
        InsufficientHistory: If `values` has no finite value at all.
    """
    y = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(y)
    if not missing.any():
        return y
    y = y.copy()
    if missing.all():
        raise InsufficientHistory("the series has no finite value")
    y[missing] = np.nan
    for start, end in _runs(missing):
        if season is not None and season >= 1 and _fill_seasonal(y, start, end, season):
            y[start:end] = np.maximum(y[start:end], 0.0)
        elif start == 0:
            y[start:end] = y[end]
        elif end == y.size:
            y[start:end] = y[start - 1]
        else:
            weight = (np.arange(start, end) - (start - 1)) / (end - start + 1)
            y[start:end] = y[start - 1] + (y[end] - y[start - 1]) * weight
    return y
