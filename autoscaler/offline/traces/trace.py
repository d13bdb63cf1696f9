"""The trace type every format is read into: arrival rates on a regular time grid.

A :class:`LoadTrace` is an arrival rate in requests/second per bin, in which NaN marks a
gap in the recording (the load is unknown there; it did not drop to zero), so that the
simulator, the backtest and the forecasters see one shape whatever the dataset. It
validates itself on construction and offers the operations callers apply before a run:
filling gaps, resampling to another bin width, rescaling the peak and slicing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.traces.grid import check_step, interpolate_gaps, resample_rates

#: Start of traces whose timestamps are relative: 2024-01-01T00:00:00Z, a midnight, so
#: that relative t=0 (midnight in ServeGen) keeps its time of day.
SYNTHETIC_EPOCH: Final[float] = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True, eq=False)
class LoadTrace:
    """Arrival rate in requests/second on a regular grid; NaN = gap in the data (unknown, not zero).

    ``rates[i]`` is the mean rate over ``[start + i*step, start + (i+1)*step)``. The array
    is copied on construction and read-only. Instances compare by identity (an array
    field has no single truth value).
    """

    name: str
    start: float
    """Unix seconds at which ``rates[0]`` begins."""
    step: float
    """Bin width in seconds."""
    rates: NDArray[np.float64]
    """Mean arrival rate per bin in requests/second; NaN where the data has a gap."""
    source: str
    """One-line attribution: repository, path, license."""

    def __post_init__(self) -> None:
        """Validate the grid and freeze a float64 copy of the rates.

        Raises:
            ValueError: if start or step is not finite, step is not positive, or the
                rates are not a non-empty 1-D array of non-negative numbers or NaN.
        """
        if not math.isfinite(self.start):
            raise ValueError(f"trace {self.name!r}: start must be finite, got {self.start}")
        check_step(self.step)
        rates = np.array(self.rates, dtype=np.float64)
        if rates.ndim != 1 or rates.size == 0:
            raise ValueError(f"trace {self.name!r}: rates must be a non-empty 1-D array")
        if np.isinf(rates).any() or (rates[~np.isnan(rates)] < 0).any():
            raise ValueError(f"trace {self.name!r}: rates must be non-negative numbers or NaN")
        rates.setflags(write=False)
        object.__setattr__(self, "rates", rates)

    @property
    def duration(self) -> float:
        """Length of the trace in seconds (number of bins times the step)."""
        return self.rates.size * self.step

    def fill_gaps(self) -> LoadTrace:
        """Replace every NaN run by linear interpolation between its neighbours.

        A gap in a dataset is missing data, not a drop in load, so it is bridged rather than
        zeroed. NaN bins before the first or after the last valid bin take the nearest
        valid value.

        Returns:
            A trace without NaN (``self`` when there was none).

        Raises:
            ValueError: if every bin is NaN.
        """
        if not np.isnan(self.rates).any():
            return self
        return replace(self, rates=interpolate_gaps(self.rates, name=self.name))

    def resample(self, step: float) -> LoadTrace:
        """Put the trace on a grid with another bin width, keeping its start.

        Coarser: each new bin is the time-weighted mean of the old bins it overlaps, over
        the parts that have data; it is NaN when data covers less than half of it. Finer:
        the rate is interpolated linearly between old bin centres (piecewise-linear, not
        stairs; before the first and after the last centre it stays flat), and a new bin
        is NaN when the old bin holding its centre is NaN. The last new bin may stick out
        past the end of the old grid.

        Args:
            step: new bin width in seconds.

        Returns:
            The resampled trace (``self`` when the step is unchanged).

        Raises:
            ValueError: if step is not a positive finite number.
        """
        check_step(step)
        if math.isclose(step, self.step, rel_tol=1e-12):
            return self
        return replace(self, step=step, rates=resample_rates(self.rates, src_step=self.step, dst_step=step))

    def rescale_peak(self, peak: float) -> LoadTrace:
        """Multiply every rate by one factor so that the largest rate equals ``peak``.

        Args:
            peak: the wanted maximum rate in requests/second.

        Returns:
            The scaled trace; NaN gaps stay NaN.

        Raises:
            ValueError: if peak is not a positive finite number, or the trace has no
                positive rate to scale.
        """
        if not (math.isfinite(peak) and peak > 0):
            raise ValueError(f"peak must be a positive finite number, got {peak}")
        valid = self.rates[~np.isnan(self.rates)]
        current = float(valid.max()) if valid.size else 0.0
        if current <= 0:
            raise ValueError(f"trace {self.name!r} has no positive rate to rescale")
        return replace(self, rates=self.rates * (peak / current))

    def slice(self, start_offset: float, duration: float) -> LoadTrace:
        """Cut out the bins from ``start_offset`` to ``start_offset + duration``.

        Both are rounded to whole bins.

        Args:
            start_offset: seconds after ``start`` where the cut begins, ``>= 0``.
            duration: length of the cut in seconds, at least half a bin.

        Returns:
            The cut trace, whose start is ``start + first_bin * step``.

        Raises:
            ValueError: if the cut is empty or reaches outside the trace.
        """
        first = round(start_offset / self.step)
        count = round(duration / self.step)
        if first < 0 or count < 1 or first + count > self.rates.size:
            raise ValueError(
                f"slice [{start_offset}, {start_offset + duration}) s is empty or outside "
                f"trace {self.name!r} (duration {self.duration} s, step {self.step} s)"
            )
        return replace(
            self,
            start=self.start + first * self.step,
            rates=self.rates[first : first + count],
        )
