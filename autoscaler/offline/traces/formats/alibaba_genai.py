"""Alibaba GenAI cluster trace 2026: ``lora_request_trace.csv`` and ``qps.csv``.

The two tables are one dataset with one attribution, read two ways: the LoRA trace
lists requests (binned like the other per-request logs), ``qps.csv`` lists
per-container QPS samples on a shared ~57 s clock (summed per tick). The dataset's
other metric tables (queue sizes, duty cycles) hold no load; ``load_trace`` refuses them.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import DEFAULT_BIN, bin_arrivals, check_points
from autoscaler.offline.traces.text import csv_rows, parse_datetime, parse_number
from autoscaler.offline.traces.trace import LoadTrace

#: Header of ``qps.csv``, lower-cased and without spaces (how the loader is recognised).
QPS_HEADER: Final[str] = "timestamp_anon,value,container_ip,request_type"
_SOURCE_ALIBABA: Final[str] = (
    "alibaba/clusterdata cluster-trace-v2026-GenAI/{file} "
    "(no license file; research/study use only; cite the SoCC'25 paper)"
)


def load_lora(text: str, *, label: str, file: str, step: float) -> LoadTrace:
    """Alibaba GenAI ``lora_request_trace.csv``: one request per row, ``gmt_create`` first.

    Args:
        text: file content.
        label: file label for errors.
        file: file name, for the source.
        step: bin width in seconds.

    Returns:
        Requests per second counted per bin (every status counts: they are arrivals).
    """
    times = [parse_datetime(row[0], label=label, line=n) for n, row in csv_rows(text, label=label)]
    first, rates = bin_arrivals(times, step=step, label=label)
    return LoadTrace(
        name="alibaba-genai-lora-requests",
        start=first,
        step=step,
        rates=rates,
        source=_SOURCE_ALIBABA.format(file=file),
    )


def load_qps(text: str, *, label: str, file: str) -> LoadTrace:
    """Alibaba GenAI ``qps.csv``: per-container QPS samples on a shared clock.

    Args:
        text: file content.
        label: file label for errors.
        file: file name, for the source.

    Returns:
        Total QPS per clock tick (the median spacing of distinct sample times, ~57 s);
        a tick without samples is zero load.

    Raises:
        TraceFormatError: if a row is malformed or the file has no samples.
    """
    times: list[float] = []
    values: list[float] = []
    for n, row in csv_rows(text, label=label):
        times.append(parse_number(row[0], label=label, line=n, what="timestamp_anon"))
        value = parse_number(row[1], label=label, line=n, what="value")
        if value < 0:
            raise TraceFormatError(label, f"value: must be >= 0, got {row[1]!r}", line=n)
        values.append(value)
    if not times:
        raise TraceFormatError(label, "no samples in the file")
    stamps = np.array(times)
    ticks = np.unique(stamps)
    tick = float(np.median(np.diff(ticks))) if ticks.size > 1 else DEFAULT_BIN
    check_points((float(ticks[-1]) - float(ticks[0])) / tick + 1, tick, label=label)
    index = np.rint((stamps - ticks[0]) / tick).astype(np.intp)
    return LoadTrace(
        name="alibaba-genai-qps",
        start=float(ticks[0]),
        step=tick,
        rates=np.bincount(index, weights=np.array(values)).astype(np.float64),
        source=_SOURCE_ALIBABA.format(file=file),
    )
