"""Azure LLM inference trace 2023 (``AzureLLMInferenceTrace_{code,conv}.csv``).

One row per request with its arrival time first; the token columns are not load for
this simulator (it counts requests), so only the arrivals are binned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from autoscaler.offline.traces.grid import bin_arrivals
from autoscaler.offline.traces.text import csv_rows, parse_datetime
from autoscaler.offline.traces.trace import LoadTrace

#: The file's header, lower-cased and without spaces (how the loader is recognised).
AZURE_HEADER: Final[str] = "timestamp,contexttokens,generatedtokens"
_SOURCE_AZURE: Final[str] = "Azure/AzurePublicDataset data/{file} (CC-BY-4.0)"


def load_azure(text: str, *, label: str, file: str, step: float) -> LoadTrace:
    """Azure LLM inference trace: one request per row, ``TIMESTAMP`` first.

    Args:
        text: file content.
        label: file label for errors.
        file: file name, for the trace name and source.
        step: bin width in seconds.

    Returns:
        Requests per second counted per bin.
    """
    times = [parse_datetime(row[0], label=label, line=n) for n, row in csv_rows(text, label=label)]
    first, rates = bin_arrivals(times, step=step, label=label)
    year = datetime.fromtimestamp(first, tz=UTC).year
    kind = Path(file).stem.rsplit("_", 1)[-1].lower()
    return LoadTrace(
        name=f"azure-llm-{year}-{kind}",
        start=first,
        step=step,
        rates=rates,
        source=_SOURCE_AZURE.format(file=file),
    )
