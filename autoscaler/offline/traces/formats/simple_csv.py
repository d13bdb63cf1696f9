"""Our own trace CSV: how users bring a trace of theirs to ``autoscaler simulate --trace``.

The bundled traces in ``autoscaler/data/`` are stored in it as well; :func:`save_trace`
writes it and ``load_trace`` reads it::

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
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import check_points
from autoscaler.offline.traces.text import parse_number
from autoscaler.offline.traces.trace import LoadTrace

#: Header line of our CSV format.
CSV_HEADER: Final[str] = "timestamp_seconds,requests_per_second"
_GRID_TOLERANCE: Final[float] = 0.01  # of the step: how far a CSV row may sit off its grid

#: One data row: (line number, timestamp_seconds, requests_per_second or NaN).
_Row = tuple[int, float, float]


def load_simple_csv(text: str, *, label: str, stem: str) -> LoadTrace:
    """Our CSV format (see the module docstring), read from ``text``.

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
    meta, rows = _read_rows(text, label=label, stem=stem)
    if len(rows) < 2:
        raise TraceFormatError(label, "need at least two data rows to know the step")
    start, step, rates = _fit_grid(rows, label=label)
    return LoadTrace(name=meta["name"], start=start, step=step, rates=rates, source=meta["source"])


def _read_rows(text: str, *, label: str, stem: str) -> tuple[dict[str, str], list[_Row]]:
    """Read the comments and the data rows, checking each row and the order of timestamps.

    Args:
        text: file content.
        label: file label for errors; the source unless a ``# source:`` comment gives one.
        stem: file name without suffix; the name unless a ``# name:`` comment gives one.

    Returns:
        The name and source (``# name:``/``# source:`` comments before the header win),
        and the data rows in file order.

    Raises:
        TraceFormatError: naming the line of the first malformed or out-of-order row.
    """
    meta = {"name": stem, "source": label}
    rows: list[_Row] = []
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
    return meta, rows


def _fit_grid(rows: list[_Row], *, label: str) -> tuple[float, float, NDArray[np.float64]]:
    """Find the step of increasing rows and put their rates on that grid.

    Args:
        rows: at least two data rows with increasing timestamps.
        label: file label for errors.

    Returns:
        The start, the step, and the rates with NaN for left-out rows.

    Raises:
        TraceFormatError: if a row is off the grid or two rows share a bin.
    """
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
    return float(stamps[0]), step, rates


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
