"""Mooncake FAST'25 traces (``conversation_trace.jsonl`` and the like).

One JSON object per line with the request's ``timestamp`` in ms from the trace start;
the times are relative, so the trace starts at
:data:`~autoscaler.offline.traces.SYNTHETIC_EPOCH`.
"""

from __future__ import annotations

import io
import json
import math
from typing import Final

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import bin_arrivals
from autoscaler.offline.traces.trace import SYNTHETIC_EPOCH, LoadTrace

_SOURCE_MOONCAKE: Final[str] = "kvcache-ai/Mooncake FAST25-release/traces/{file} (Apache-2.0)"


def load_mooncake(text: str, *, label: str, stem: str, step: float) -> LoadTrace:
    """Mooncake JSONL: one request object per line with ``timestamp`` in ms from the start.

    Args:
        text: file content.
        label: file label for errors.
        stem: file name without suffix, for the trace name and source.
        step: bin width in seconds.

    Returns:
        Requests per second counted per bin, starting at :data:`SYNTHETIC_EPOCH`.

    Raises:
        TraceFormatError: if a line is not a JSON object with a numeric ``timestamp``.
    """
    times: list[float] = []
    for n, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceFormatError(label, f"not valid JSON ({exc.msg})", line=n) from None
        stamp = record.get("timestamp") if isinstance(record, dict) else None
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
            raise TraceFormatError(label, "expected an object with a numeric 'timestamp' (ms)", line=n)
        times.append(stamp / 1000.0)
    first, rates = bin_arrivals(times, step=step, label=label)
    return LoadTrace(
        name=f"mooncake-{stem}",
        start=SYNTHETIC_EPOCH + first,
        step=step,
        rates=rates,
        source=_SOURCE_MOONCAKE.format(file=f"{stem}.jsonl"),
    )
