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


class AppendBuffer:
    """The last ``capacity`` values of a sequence that grows at its end, handed out as read-only views.

    A controller appends one bucket per target every few minutes to a history of
    thousands. Building a new array per append cost a copy of the whole history each
    time, and, because each model keeps a view of the series it last saw, two copies
    per target until every model had updated: a third of a thousand targets' memory at
    each bucket. Here values are written into spare room after the end, so the views
    handed out before stay valid (a position once handed out is never written again)
    and share the same array; only when the room runs out are the last ``capacity``
    values moved to a new array (once every ``slack`` appends).
    """

    def __init__(self, capacity: int, slack: int) -> None:
        """Create an empty buffer.

        Args:
            capacity: Most values kept (older ones are dropped from the front).
            slack: Spare room after the end of a new array: appends between two copies.

        Raises:
            ValueError: If capacity or slack is < 1.
        """
        if capacity < 1 or slack < 1:
            raise ValueError(f"capacity and slack must be >= 1, got {capacity} and {slack}")
        self.capacity, self.slack = capacity, slack
        self._data: NDArray[np.float64] = np.empty(0)
        self._lo = self._hi = 0
        #: Positions below this were handed out (or may have been): never written again.
        self._written = 0

    @property
    def values(self) -> NDArray[np.float64]:
        """The kept values, oldest first: a read-only view that later appends do not change."""
        view = self._data[self._lo : self._hi]
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        """Number of values kept."""
        return self._hi - self._lo

    def replace(self, values: ArrayLike, *, room: int | None = None) -> None:
        """Keep the last ``capacity`` of ``values`` (copied) instead of the current ones.

        Args:
            values: The new contents.
            room: Spare room after them in the new array (default ``slack``): buffers
                filled together and given different rooms do not all move in the
                same append.
        """
        self._fill(np.empty(0), np.asarray(values, dtype=np.float64).ravel(), self.slack if room is None else room)

    def extend(self, values: ArrayLike) -> None:
        """Append ``values`` at the end, dropping the oldest beyond ``capacity``."""
        new = np.asarray(values, dtype=np.float64).ravel()
        k = new.size
        if k == 0:
            return
        if self._hi == self._written and self._hi + k <= self._data.size:
            self._data[self._hi : self._hi + k] = new
            self._hi += k
            self._written = self._hi
            self._lo = max(self._lo, self._hi - self.capacity)
            return
        keep = max(0, min(len(self), self.capacity - k))
        self._fill(self._data[self._hi - keep : self._hi], new, self.slack)

    def _fill(self, kept: NDArray[np.float64], new: NDArray[np.float64], room: int) -> None:
        """Move ``kept`` then the last of ``new`` (``capacity`` in all) to a new array with ``room`` after them."""
        new = new[max(0, new.size - (self.capacity - kept.size)) :]
        size = kept.size + new.size
        data = np.empty(size + max(1, room))
        data[: kept.size] = kept
        data[kept.size : size] = new
        self._data, self._lo, self._hi, self._written = data, 0, size, size

    def truncate(self, size: int) -> None:
        """Keep only the first ``size`` values; the next append moves them to a new array."""
        self._hi = self._lo + max(0, min(size, len(self)))


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
