"""Where traces come from: the bundled ones by name, any other file by its content.

:func:`load_trace` is the one entry point (``autoscaler simulate --trace`` and the
backtest call it): it resolves a bundled name to ``autoscaler/data/``, then picks the
format loader from the path (a directory is ServeGen) and the first data line, so users
need not say which dataset a file comes from. :func:`list_bundled` names the traces
that ship with the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.formats.alibaba_genai import QPS_HEADER, load_lora, load_qps
from autoscaler.offline.traces.formats.azure import AZURE_HEADER, load_azure
from autoscaler.offline.traces.formats.counts import load_counts
from autoscaler.offline.traces.formats.mooncake import load_mooncake
from autoscaler.offline.traces.formats.servegen import load_servegen
from autoscaler.offline.traces.formats.simple_csv import CSV_HEADER, load_simple_csv
from autoscaler.offline.traces.grid import DEFAULT_BIN, check_step
from autoscaler.offline.traces.text import first_data_line, read_text
from autoscaler.offline.traces.trace import LoadTrace

#: Directory of the traces that ship with the package.
BUNDLED_DIR: Final[Path] = Path(__file__).resolve().parents[2] / "data"

_ALIASES: Final[dict[str, str]] = {"default": "servegen-m-mid"}


def list_bundled() -> list[str]:
    """Names of the traces that ship with the package, usable as ``load_trace(name)``.

    Returns:
        Sorted names, aliases (``default``) included.
    """
    files = {p.stem for p in BUNDLED_DIR.glob("*.csv")}
    aliases = {alias for alias, target in _ALIASES.items() if target in files}
    return sorted(files | aliases)


def load_trace(path_or_name: str | Path, *, step: float | None = None) -> LoadTrace:
    """Load a bundled trace, one of the public trace formats, or a CSV in our format.

    The format is detected from the path and the content:

    * a bundled name (see :func:`list_bundled`; ``"default"`` is ServeGen m-mid);
    * a directory of ServeGen ``chunk-*-trace.csv`` files: ``rate`` summed over the
      client files per 600 s window; a window whose total is zero is a gap (NaN);
    * Azure LLM 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``; naive timestamps
      read as UTC), Mooncake JSONL (``timestamp`` in ms from the trace start) and
      Alibaba GenAI ``lora_request_trace.csv`` (``gmt_create``, read as UTC): one row per
      request, counted per ``step`` (default 60 s) from the first request;
    * Alibaba GenAI ``qps.csv`` or ``qps.tar.gz``: per-container QPS samples on a shared
      ~57 s clock. The samples at one tick are summed (the file lists only non-zero
      samples, so a tick without rows is zero load), each tick holds until the next, and
      the result is averaged per ``step`` (default 60 s);
    * ``workload.tbz2`` / ``workload.txt``: whitespace-separated requests per second.
      The NASA-HTTP 1995 file is recognised and put on its real timeline (from
      1995-07-01 00:00 EDT) with NaN for the missing end of July and the
      1995-08-01 14:52 - 08-03 04:36 outage; default step 60 s;
    * our CSV format (see :mod:`autoscaler.offline.traces.formats.simple_csv`).

    Relative timestamps (Mooncake, ServeGen, other per-second files) start at
    :data:`SYNTHETIC_EPOCH`.

    Args:
        path_or_name: bundled name, file or directory.
        step: bin width in seconds. Per-request input is counted per ``step``; rate input
            is resampled with :meth:`LoadTrace.resample`. ``None`` keeps the native
            width (600 s for ServeGen and the bundled traces, the row spacing for our
            CSV) or uses 60 s where there is none.

    Returns:
        The trace.

    Raises:
        FileNotFoundError: if the argument is neither a bundled name nor an existing path.
        TraceFormatError: (a ``ValueError``) if the file is malformed or of an unknown
            format; the message names the file and, when it applies, the line.
        ValueError: if step is not a positive finite number.
    """
    if step is not None:
        check_step(step)
    path = _resolve(path_or_name)
    if path.is_dir():
        return _resample_opt(load_servegen(path), step)
    return _load_file(path, step=step)


def _load_file(path: Path, *, step: float | None) -> LoadTrace:
    """Read one file and hand it to the loader its first data line points to.

    Args:
        path: an existing file.
        step: the bin width asked of :func:`load_trace`, or ``None``.

    Returns:
        The trace.

    Raises:
        TraceFormatError: if the file is malformed or of an unknown format.
    """
    text, label = read_text(path)
    first = first_data_line(text)
    header = first.replace(" ", "").lower()
    bin_step = DEFAULT_BIN if step is None else step
    if header == AZURE_HEADER:
        return load_azure(text, label=label, file=path.name, step=bin_step)
    if header.startswith("gmt_create,"):
        return load_lora(text, label=label, file=path.name, step=bin_step)
    if header == QPS_HEADER:
        return _resample_opt(load_qps(text, label=label, file=path.name), bin_step)
    if header.startswith("timestamp_anon,"):
        raise TraceFormatError(label, "an Alibaba GenAI metric without request_type; only qps holds load")
    if header == CSV_HEADER:
        return _resample_opt(load_simple_csv(text, label=label, stem=path.stem), step)
    if first.startswith("{"):
        return load_mooncake(text, label=label, stem=path.stem, step=bin_step)
    if first.replace(" ", "").replace("\t", "").isdigit():
        return load_counts(text, label=label, stem=path.stem, step=bin_step)
    hint = ""
    if path.name.startswith("chunk-") and path.name.endswith("-trace.csv"):
        hint = "; for ServeGen pass the model directory, not one client file"
    raise TraceFormatError(
        label,
        f"unrecognised trace format (first line {first[:80]!r}); expected a ServeGen "
        f"directory, Azure LLM CSV, Mooncake JSONL, Alibaba GenAI lora_request_trace or "
        f"qps, per-second counts, or a CSV with the header {CSV_HEADER!r}{hint}",
    )


def _resample_opt(trace: LoadTrace, step: float | None) -> LoadTrace:
    """Resample when a step was asked for.

    Args:
        trace: the loaded trace.
        step: wanted bin width in seconds, or ``None`` to keep the trace as it is.

    Returns:
        The trace on the wanted grid.
    """
    return trace if step is None else trace.resample(step)


def _resolve(path_or_name: str | Path) -> Path:
    """Turn a bundled name or a path into the file or directory to read.

    Args:
        path_or_name: bundled name, file or directory.

    Returns:
        An existing path.

    Raises:
        FileNotFoundError: if it is neither a bundled name nor an existing path.
    """
    if isinstance(path_or_name, str) and path_or_name in list_bundled():
        return BUNDLED_DIR / f"{_ALIASES.get(path_or_name, path_or_name)}.csv"
    path = Path(path_or_name)
    if not path.exists():
        raise FileNotFoundError(
            f"{path_or_name}: no such trace file or directory, and not a bundled trace ({', '.join(list_bundled())})"
        )
    return path
