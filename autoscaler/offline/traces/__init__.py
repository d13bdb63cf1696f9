"""Request-arrival traces for the simulator (public API; the code is being split into modules)."""

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import MAX_TRACE_POINTS, drop_partial_edges
from autoscaler.offline.traces.load import BUNDLED_DIR, list_bundled, load_trace
from autoscaler.offline.traces.trace import CSV_HEADER, SYNTHETIC_EPOCH, LoadTrace, save_trace

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
