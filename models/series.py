"""Regularly spaced load series, the one input type of every forecaster.

Prometheus returns irregular samples with holes; the models need a fixed step and an
explicit marker for "unknown". NaN is that marker: a gap is never read as zero load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, eq=False)
class Series:
    """A regularly spaced load series. NaN marks a gap (unknown), never zero load.

    Attributes:
        start: Unix seconds of values[0].
        step: Seconds between points (> 0).
        values: Load per point as a read-only 1-D float64 array.
    """

    start: float
    step: float
    values: NDArray[np.float64]

    def __post_init__(self) -> None:
        """Validate the grid and freeze the values as float64.

        An array the caller could still write to is copied; a read-only float64 array
        (another Series' values or a slice of them) is shared, so `tail` and the
        controller's bucket appends do not copy a long history twice.

        Raises:
            ValueError: If start or step is not finite, step <= 0, or values is not 1-D.
        """
        if not math.isfinite(self.start):
            raise ValueError(f"Series.start must be finite, got {self.start!r}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"Series.step must be finite and > 0, got {self.step!r}")
        values = np.asarray(self.values, dtype=np.float64)
        if values is self.values and values.flags.writeable:
            values = values.copy()
        if values.ndim != 1:
            raise ValueError(f"Series.values must be 1-D, got shape {values.shape}")
        values.flags.writeable = False
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "step", float(self.step))
        object.__setattr__(self, "values", values)

    @property
    def end(self) -> float:
        """Timestamp of the last point; `start - step` for an empty series."""
        return self.start + (len(self.values) - 1) * self.step

    def timestamps(self) -> NDArray[np.float64]:
        """Unix timestamps of every point.

        Returns:
            An array of len(self) timestamps, `step` apart.
        """
        return self.start + self.step * np.arange(len(self.values), dtype=np.float64)

    def tail(self, n: int) -> Series:
        """The last `n` points (all of them if the series is shorter).

        Args:
            n: Number of points to keep; 0 or less gives an empty series ending here.

        Returns:
            A Series on the same grid that ends at the same timestamp.
        """
        keep = max(0, min(n, len(self.values)))
        first = len(self.values) - keep
        return Series(start=self.start + first * self.step, step=self.step, values=self.values[first:])

    def __len__(self) -> int:
        """Number of points, gaps included."""
        return len(self.values)


def resample(
    timestamps: ArrayLike,
    values: ArrayLike,
    *,
    step: float,
    start: float | None = None,
    end: float | None = None,
) -> Series:
    """Bucket irregular samples into regular bins by their mean.

    Bin i covers [start + i*step, start + (i+1)*step) and is labelled by its left edge.
    Samples whose value or timestamp is not finite are ignored; bins left without a
    finite sample are NaN (a gap), never 0.

    Args:
        timestamps: Unix seconds of the samples, any order.
        values: Sample values, same length as timestamps.
        step: Bin width in seconds (> 0).
        start: Left edge of the first bin; default the earliest finite timestamp.
        end: A timestamp the last bin must contain; default the latest finite timestamp.

    Returns:
        The regular Series; empty (start 0.0 unless given) when there is nothing to bin.

    Raises:
        ValueError: On a non-positive step, mismatched lengths, or end < start.
    """
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be finite and > 0, got {step!r}")
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    vs = np.asarray(values, dtype=np.float64).ravel()
    if ts.shape != vs.shape:
        raise ValueError(f"timestamps and values differ in length: {ts.size} != {vs.size}")
    known = np.isfinite(ts)
    if start is None:
        if not known.any():
            return Series(start=0.0, step=step, values=np.empty(0))
        start = float(ts[known].min())
    if end is None:
        end = float(ts[known].max()) if known.any() else start
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    # A small tolerance keeps samples sitting exactly on a bin edge in that bin.
    n_bins = math.floor((end - start) / step + 1e-9) + 1
    position = np.floor((ts - start) / step + 1e-9)
    usable = known & np.isfinite(vs) & (position >= 0) & (position < n_bins)
    index = position[usable].astype(np.int64)
    sums = np.bincount(index, weights=vs[usable], minlength=n_bins)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Series(start=start, step=step, values=means)
