"""Request-arrival traces for the simulator: public datasets and user CSVs in one shape.

The simulator replays recorded load to judge scaling decisions, and every public trace
ships in its own format: per-request logs (Azure LLM 2023, Mooncake, Alibaba GenAI),
per-client rate tables (ServeGen), per-container QPS samples (Alibaba GenAI) and
per-second counts (NASA HTTP 1995). This package turns each of them into a
:class:`LoadTrace`: an arrival rate in requests/second on a regular time grid, in which
NaN marks a gap in the recording (the load is unknown there; it did not drop to zero).
It also reads and writes this project's own CSV format, which is how users bring their
own trace to ``autoscaler simulate --trace``.

A few small derived traces ship in ``autoscaler/data/`` (see :func:`list_bundled`; their
sources and licenses are in ``NOTICE`` and ``autoscaler/data/README.md``).

This module is the public API; import from here. The package, one concept per module:

* :mod:`.trace` - :class:`LoadTrace` and :data:`SYNTHETIC_EPOCH`;
* :mod:`.load` - :func:`load_trace` (bundled name or path -> format loader) and
  :func:`list_bundled`;
* :mod:`.formats` - one loader per format (``azure``, ``alibaba_genai``, ``mooncake``,
  ``servegen``, ``counts``, and ``simple_csv`` with :func:`save_trace` and
  :data:`CSV_HEADER`);
* :mod:`.grid` - binning, resampling, gap interpolation, :func:`drop_partial_edges` and
  the :data:`MAX_TRACE_POINTS` guard, shared by the type and the loaders;
* :mod:`.text` - reading files and archives, parsing fields with file/line errors;
* :mod:`.errors` - :class:`TraceFormatError`.
"""

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.formats.simple_csv import CSV_HEADER, save_trace
from autoscaler.offline.traces.grid import MAX_TRACE_POINTS, drop_partial_edges
from autoscaler.offline.traces.load import BUNDLED_DIR, list_bundled, load_trace
from autoscaler.offline.traces.trace import SYNTHETIC_EPOCH, LoadTrace

__all__ = [
    "BUNDLED_DIR",
    "CSV_HEADER",
    "MAX_TRACE_POINTS",
    "SYNTHETIC_EPOCH",
    "LoadTrace",
    "TraceFormatError",
    "drop_partial_edges",
    "list_bundled",
    "load_trace",
    "save_trace",
]
