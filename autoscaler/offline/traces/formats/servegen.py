"""ServeGen (alibaba/ServeGen) model directories: per-client rates per 600 s window.

A model is a directory of ``chunk-<client>-trace.csv`` files, one per client, each row
a window start and the client's rate over that window; the load is their sum. The
collection has outages (a zero total) with trickling windows around them, which
:func:`~autoscaler.offline.traces.drop_partial_edges` turns into gaps.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Final

import numpy as np

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import drop_partial_edges
from autoscaler.offline.traces.text import parse_number
from autoscaler.offline.traces.trace import SYNTHETIC_EPOCH, LoadTrace

_SERVEGEN_WINDOW: Final[float] = 600.0  # s; one ServeGen row covers ten minutes
_SOURCE_SERVEGEN: Final[str] = "alibaba/ServeGen data/{category}/{model}/ (Apache-2.0)"


def load_servegen(directory: Path) -> LoadTrace:
    """ServeGen model directory: sum ``rate`` over the client files per 600 s window.

    Args:
        directory: e.g. ``data/language/m-mid`` with ``chunk-<client>-trace.csv`` files.

    Returns:
        Total rate per window from :data:`SYNTHETIC_EPOCH` (t=0 is midnight); windows
        with a zero total, or absent from every file, are NaN.

    Raises:
        TraceFormatError: if there is no trace file or a row is malformed.
    """
    files = sorted(directory.glob("chunk-*-trace.csv"))
    if not files:
        raise TraceFormatError(str(directory), "no ServeGen chunk-*-trace.csv files here")
    windows: list[int] = []
    rates: list[float] = []
    for file in files:
        label = str(file)
        reader = csv.reader(io.StringIO(file.read_text(encoding="utf-8")))
        for row in reader:
            n = reader.line_num
            if not row:
                continue
            if len(row) < 2:
                raise TraceFormatError(label, f"expected window_start_s,rate,..., got {row!r}", line=n)
            start = parse_number(row[0], label=label, line=n, what="window_start_s")
            rate = parse_number(row[1], label=label, line=n, what="rate")
            if start < 0 or not (start / _SERVEGEN_WINDOW).is_integer():
                raise TraceFormatError(label, f"window_start_s must be a multiple of 600 s, got {row[0]!r}", line=n)
            if rate < 0:
                raise TraceFormatError(label, f"rate must be >= 0, got {row[1]!r}", line=n)
            windows.append(int(start // _SERVEGEN_WINDOW))
            rates.append(rate)
    if not windows:
        raise TraceFormatError(str(directory), "the ServeGen trace files are empty")
    index = np.array(windows) - min(windows)
    total = np.bincount(index, weights=np.array(rates)).astype(np.float64)
    total[(total == 0) | (np.bincount(index) == 0)] = np.nan
    drop_partial_edges(total)
    return LoadTrace(
        name=f"servegen-{directory.name}",
        start=SYNTHETIC_EPOCH + min(windows) * _SERVEGEN_WINDOW,
        step=_SERVEGEN_WINDOW,
        rates=total,
        source=_SOURCE_SERVEGEN.format(category=directory.parent.name, model=directory.name),
    )
