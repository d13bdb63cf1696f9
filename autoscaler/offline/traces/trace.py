"""Request-arrival traces for the simulator: public datasets and user CSVs in one shape.

The simulator replays recorded load to judge scaling decisions, and every public trace
ships in its own format: per-request logs (Azure LLM 2023, Mooncake, Alibaba GenAI),
per-client rate tables (ServeGen), per-container QPS samples (Alibaba GenAI) and
per-second counts (NASA HTTP 1995). This module turns each of them into a
:class:`LoadTrace`: an arrival rate in requests/second on a regular time grid, in which
NaN marks a gap in the recording (the load is unknown there; it did not drop to zero).

It also reads and writes this project's own CSV format, which is how users bring their
own trace to ``autoscaler simulate --trace``::

    # Lines starting with '#' are comments. "# name: ..." and "# source: ..." set the
    # trace name and its one-line attribution; other comments are ignored.
    timestamp_seconds,requests_per_second
    1704067200,12.5
    1704067800,
    1704068400,nan
    1704069000,13.25

``timestamp_seconds`` is the Unix time (s) at which a bin starts (relative times that
start at 0 also work; they read as starting at 1970-01-01T00:00Z, a midnight).
Rows are increasing and evenly spaced; the bin width is the smallest spacing, and a row
left out is a gap. ``requests_per_second`` is the mean arrival rate over the bin; an
empty field or ``nan`` marks a gap.

A few small derived traces ship in ``autoscaler/data/`` (see :func:`list_bundled`; their
sources and licenses are in ``NOTICE`` and ``autoscaler/data/README.md``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import (
    check_points,
    check_step,
    interpolate_gaps,
    resample_rates,
)
from autoscaler.offline.traces.text import parse_number

#: Start of traces whose timestamps are relative: 2024-01-01T00:00:00Z, a midnight, so
#: that relative t=0 (midnight in ServeGen) keeps its time of day.
SYNTHETIC_EPOCH: Final[float] = datetime(2024, 1, 1, tzinfo=UTC).timestamp()

#: Header line of our CSV format.
CSV_HEADER: Final[str] = "timestamp_seconds,requests_per_second"

_GRID_TOLERANCE: Final[float] = 0.01  # of the step: how far a CSV row may sit off its grid


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


def save_trace(
    trace: LoadTrace,
    path: str | Path,
    *,
    digits: int | None = None,
    comments: Sequence[str] = (),
) -> None:
    """Write a trace in our CSV format, readable by :func:`load_trace`.

    Args:
        trace: the trace to write.
        path: the output file.
        digits: significant digits per rate; ``None`` writes the shortest text that
            reads back as the same float.
        comments: extra ``#`` lines written before the name and source.
    """
    lines = [_comment(text) for text in comments]
    lines += [_comment(f"name: {trace.name}"), _comment(f"source: {trace.source}"), CSV_HEADER]
    for i, rate in enumerate(trace.rates.tolist()):
        ts = _format_number(trace.start + i * trace.step, digits=None)
        value = "" if math.isnan(rate) else _format_number(rate, digits=digits)
        lines.append(f"{ts},{value}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _comment(text: str) -> str:
    """Format one ``#`` comment line, folding any newline into a space.

    Args:
        text: comment text.

    Returns:
        The line without a trailing newline.
    """
    return "# " + " ".join(text.splitlines())


def _format_number(value: float, *, digits: int | None) -> str:
    """Short text for a float: integers without ``.0``, else ``repr`` or ``digits``.

    Args:
        value: a finite float.
        digits: significant digits, or ``None`` for an exact round trip.

    Returns:
        The text.
    """
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if digits is None else f"{value:.{digits}g}"


def load_simple_csv(text: str, *, label: str, stem: str) -> LoadTrace:
    """Our CSV format (see the module docstring).

    Args:
        text: file content.
        label: file label for errors.
        stem: file name without suffix; the name unless a ``# name:`` comment gives one.

    Returns:
        The trace on the grid of its rows, NaN for empty/``nan`` rates and left-out rows.

    Raises:
        TraceFormatError: naming the line of the first malformed row, or if the rows
            are not increasing and evenly spaced.
    """
    meta = {"name": stem, "source": label}
    rows: list[tuple[int, float, float]] = []
    header_seen = False
    for n, raw in enumerate(io.StringIO(text), start=1):
        line = raw.strip()
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip().lower() in meta and not header_seen:
                meta[key.strip().lower()] = value.strip()
            continue
        if not line:
            continue
        if not header_seen:
            header_seen = True
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 2:
            raise TraceFormatError(
                label, f"expected 2 fields (timestamp_seconds,requests_per_second), got {line!r}", line=n
            )
        ts = parse_number(fields[0], label=label, line=n, what="timestamp_seconds")
        if fields[1].lower() in ("", "nan"):
            rate = math.nan
        else:
            rate = parse_number(fields[1], label=label, line=n, what="requests_per_second")
            if rate < 0:
                raise TraceFormatError(label, f"requests_per_second must be >= 0, got {rate}", line=n)
        if rows and ts <= rows[-1][1]:
            raise TraceFormatError(
                label, f"timestamp {fields[0]} is not after the previous row's {rows[-1][1]!r}", line=n
            )
        rows.append((n, ts, rate))
    if len(rows) < 2:
        raise TraceFormatError(label, "need at least two data rows to know the step")
    stamps = np.array([row[1] for row in rows])
    offsets = stamps - stamps[0]
    # The smallest spacing is the step; when the whole span is a whole number of such
    # steps, dividing the span evens out rounding noise in the timestamps.
    rough = float(np.min(np.diff(stamps)))
    whole = round(offsets[-1] / rough)
    consistent = abs(offsets[-1] - whole * rough) <= _GRID_TOLERANCE * rough
    step = float(offsets[-1] / whole) if consistent else rough
    check_points(offsets[-1] / step + 1, step, label=label)
    slots = np.rint(offsets / step).astype(np.intp)
    off_grid = np.abs(offsets - slots * step) > _GRID_TOLERANCE * step
    repeated = np.concatenate(([False], np.diff(slots) == 0))
    bad = np.flatnonzero(off_grid | repeated)
    if bad.size:
        n, ts, _ = rows[int(bad[0])]
        raise TraceFormatError(
            label,
            f"timestamp {ts!r} is not on the {step:g} s grid starting at {float(stamps[0])!r}; "
            "rows must be evenly spaced (a left-out row is a gap)",
            line=n,
        )
    rates = np.full(int(slots[-1]) + 1, np.nan)
    rates[slots] = [row[2] for row in rows]
    return LoadTrace(name=meta["name"], start=float(stamps[0]), step=step, rates=rates, source=meta["source"])
