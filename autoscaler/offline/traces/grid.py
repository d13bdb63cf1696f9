"""Regular time grids: counting arrivals into bins, changing the bin width, bridging gaps.

Every format ends as rates on a regular grid, and the simulator may ask for another bin
width than the file's, so these are shared by :class:`~autoscaler.offline.traces.LoadTrace`
and the format loaders. A NaN rate is a gap (unknown load), never zero: a coarser bin with
data over less than half its width stays a gap, interpolation bridges gaps, and
:func:`drop_partial_edges` turns the near-empty windows beside a collection outage into
gaps as well. Grids are checked against :data:`MAX_TRACE_POINTS` before they are allocated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.traces.errors import TraceFormatError

DEFAULT_BIN: Final[float] = 60.0  # s; bin width for per-request, per-second and QPS input
_MIN_COVERAGE: Final[float] = 0.5  # a coarse bin needs data over half its width, else NaN
#: Most bins a trace may have (160 MB of rates; the per-second NASA trace has 5.4 M). A file
#: whose timestamps are in micro- or nanoseconds would otherwise ask for terabytes.
MAX_TRACE_POINTS: Final[int] = 20_000_000


def check_step(step: float) -> None:
    """Reject a bin width that is not a positive finite number.

    Args:
        step: bin width in seconds.

    Raises:
        ValueError: if step is not a positive finite number.
    """
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive finite number of seconds, got {step}")


def check_points(count: float, step: float, *, label: str) -> None:
    """Refuse a grid of more than :data:`MAX_TRACE_POINTS` bins before allocating it.

    Raises:
        TraceFormatError: naming the file, the span and the step.
    """
    if not count <= MAX_TRACE_POINTS:
        raise TraceFormatError(
            label,
            f"the data would need {count:.3g} bins of {step:g} s (at most {MAX_TRACE_POINTS:,}); "
            "are the timestamps in seconds?",
        )


def _bin_count(duration: float, step: float) -> int:
    """Number of bins of width ``step`` needed to cover ``duration`` (at least one).

    Args:
        duration: seconds to cover.
        step: bin width in seconds.

    Returns:
        The bin count.
    """
    return max(1, math.ceil(duration / step - 1e-9))


def bin_arrivals(times: Iterable[float], *, step: float, label: str) -> tuple[float, NDArray[np.float64]]:
    """Count request arrivals per bin, starting at the first arrival.

    Args:
        times: arrival times in seconds, any order.
        step: bin width in seconds.
        label: file label for errors.

    Returns:
        The first arrival time and the rate per bin (count / step).

    Raises:
        TraceFormatError: if there is no request.
    """
    arrivals = np.fromiter(times, dtype=np.float64)
    if arrivals.size == 0:
        raise TraceFormatError(label, "no requests in the file")
    first = float(arrivals.min())
    check_points((float(arrivals.max()) - first) / step + 1, step, label=label)
    index = np.floor((arrivals - first) / step).astype(np.intp)
    return first, np.bincount(index).astype(np.float64) / step


def interpolate_gaps(rates: NDArray[np.float64], *, name: str) -> NDArray[np.float64]:
    """Linearly interpolate over NaN runs; edge NaNs take the nearest valid value.

    Args:
        rates: rates with NaN gaps.
        name: trace name for the error message.

    Returns:
        A new array without NaN.

    Raises:
        ValueError: if every value is NaN.
    """
    valid = ~np.isnan(rates)
    if not valid.any():
        raise ValueError(f"trace {name!r} is all gaps; there is nothing to interpolate from")
    index = np.arange(rates.size, dtype=np.float64)
    return np.interp(index, index[valid], rates[valid])


def resample_rates(rates: NDArray[np.float64], *, src_step: float, dst_step: float) -> NDArray[np.float64]:
    """Move rates from one bin width to another (see :meth:`LoadTrace.resample`).

    Args:
        rates: rates on the source grid, NaN for gaps.
        src_step: source bin width in seconds.
        dst_step: target bin width in seconds.

    Returns:
        Rates on the target grid, which starts where the source grid starts.
    """
    n = rates.size
    n_new = _bin_count(n * src_step, dst_step)
    check_points(n_new, dst_step, label="resampled trace")
    valid = ~np.isnan(rates)
    if dst_step > src_step:
        # The integral of a step function is piecewise linear, so np.interp of the
        # cumulative sums at the new edges gives exact per-bin areas and coverage.
        old_edges = np.arange(n + 1, dtype=np.float64) * src_step
        new_edges = np.arange(n_new + 1, dtype=np.float64) * dst_step
        area = np.concatenate(([0.0], np.cumsum(np.where(valid, rates, 0.0)) * src_step))
        covered = np.concatenate(([0.0], np.cumsum(valid) * src_step))
        bin_area = np.diff(np.interp(new_edges, old_edges, area))
        bin_covered = np.diff(np.interp(new_edges, old_edges, covered))
        out = np.full(n_new, np.nan)
        enough = bin_covered >= _MIN_COVERAGE * dst_step * (1 - 1e-9)
        out[enough] = bin_area[enough] / bin_covered[enough]
        return out
    if not valid.any():
        return np.full(n_new, np.nan)
    filled = interpolate_gaps(rates, name="")
    old_centres = (np.arange(n, dtype=np.float64) + 0.5) * src_step
    new_centres = (np.arange(n_new, dtype=np.float64) + 0.5) * dst_step
    out = np.interp(new_centres, old_centres, filled)
    parent = np.minimum((new_centres // src_step).astype(np.intp), n - 1)
    out[~valid[parent]] = np.nan
    return out


def drop_partial_edges(rates: NDArray[np.float64], *, context: int = 72, fraction: float = 0.1) -> None:
    """Mark windows beside a gap that hold under ``fraction`` of the local level as gaps, in place.

    ServeGen's collection stops and restarts mid-window, and sometimes trickles for an
    hour around an outage: the windows next to a zero-total gap then hold 0.01-1 % of the
    level around them (m-mid days 9.6-9.7). Read as load, that is a fake drop to zero
    followed by a jump no forecaster could predict. The local level is the median of the
    finite windows within ``context`` windows (12 h at 600 s); repeated until no edge
    window qualifies, so a trickling run is removed whole.
    """
    changed = True
    while changed:
        changed = False
        gap = np.isnan(rates)
        for i in np.flatnonzero(~gap):
            beside_gap = (i > 0 and gap[i - 1]) or (i + 1 < rates.size and gap[i + 1])
            if not beside_gap:
                continue
            near = rates[max(0, i - context) : i + context + 1]
            level = np.nanmedian(near) if np.isfinite(near).any() else np.nan
            if np.isfinite(level) and rates[i] < fraction * level:
                rates[i] = np.nan
                changed = True
