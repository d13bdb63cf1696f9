"""Whitespace-separated requests per second (``workload.txt``, ``workload.tbz2``).

The NASA-HTTP 1995 logs are published in this shape (via web-service-datasets), with
no timestamps: the file is recognised by its length and total and put back on its real
timeline, with its missing days as gaps. Any other counts file starts at
:data:`~autoscaler.offline.traces.SYNTHETIC_EPOCH`.
"""

from __future__ import annotations

import io
import warnings
from datetime import datetime, timedelta, timezone
from typing import Final

import numpy as np
from numpy.typing import NDArray

from autoscaler.offline.traces.errors import TraceFormatError
from autoscaler.offline.traces.grid import resample_rates
from autoscaler.offline.traces.trace import SYNTHETIC_EPOCH, LoadTrace

_MAX_COUNT: Final[int] = 2**53  # per-second counts above this are corrupt (and inexact floats)
_SOURCE_NASA: Final[str] = (
    "ITA NASA-HTTP Jul+Aug 1995 logs (freely redistributable) via "
    "reconfigurable-ml-pipeline/web-service-datasets dataset/nasa/workload.tbz2"
)

# NASA-HTTP 1995 in workload.tbz2: one count per second, the July log (from
# 1995-07-01 00:00:01 EDT) followed directly by the August log (from 08-01 00:00:01).
# The July log stops at 07-28 13:32:25 and the converter drops each log's last second,
# so July fills the first 2,381,544 entries. The file is recognised by its length and
# total; the July tail it lacks and the Hurricane Erin outage (no accesses logged from
# 08-01 14:52:01 to 08-03 04:36:13, per the ITA page) become NaN on the real timeline.
# Out-of-order log lines make the converter's August run 7 s past 08-31 24:00; those
# seconds are cut so that the trace ends at 09-01 00:00 EDT (62 days).
_EDT: Final[timezone] = timezone(timedelta(hours=-4))
_NASA_SECONDS: Final[int] = 5_059_950
_NASA_REQUESTS: Final[int] = 3_461_610
_NASA_JULY_SECONDS: Final[int] = 2_381_544
_NASA_MIDNIGHT: Final[int] = int(datetime(1995, 7, 1, tzinfo=_EDT).timestamp())
_NASA_AUGUST: Final[int] = int(datetime(1995, 8, 1, 0, 0, 1, tzinfo=_EDT).timestamp())
_NASA_END: Final[int] = int(datetime(1995, 9, 1, tzinfo=_EDT).timestamp())
_NASA_OUTAGE: Final[tuple[int, int]] = (
    int(datetime(1995, 8, 1, 14, 52, 2, tzinfo=_EDT).timestamp()),
    int(datetime(1995, 8, 3, 4, 36, 13, tzinfo=_EDT).timestamp()),
)


def load_counts(text: str, *, label: str, stem: str, step: float) -> LoadTrace:
    """Whitespace-separated requests per second (``workload.txt``), averaged per ``step``.

    Args:
        text: file content.
        label: file label for errors.
        stem: file name without suffix, for the trace name.
        step: bin width in seconds.

    Returns:
        The NASA-HTTP 1995 trace on its real timeline when the file is that one, else a
        trace from :data:`SYNTHETIC_EPOCH`.

    Raises:
        TraceFormatError: naming the line of the first token that is not a count.
    """
    if not text.strip():
        raise TraceFormatError(label, "no counts in the file")
    try:
        with warnings.catch_warnings():
            # NumPy < 2.3 only warns when it stops at a token that is not an integer.
            warnings.simplefilter("error", DeprecationWarning)
            counts = np.fromstring(text, dtype=np.int64, sep=" ")
        valid = bool((counts >= 0).all() and (counts < _MAX_COUNT).all())
    except (ValueError, DeprecationWarning):
        valid = False
    if not valid:
        raise _bad_count(text, label=label)
    if counts.size == _NASA_SECONDS and int(counts.sum()) == _NASA_REQUESTS:
        return _nasa_trace(counts, step=step)
    return LoadTrace(
        name=stem,
        start=SYNTHETIC_EPOCH,
        step=step,
        rates=resample_rates(counts.astype(np.float64), src_step=1.0, dst_step=step),
        source=f"per-second request counts from {label}",
    )


def _bad_count(text: str, *, label: str) -> TraceFormatError:
    """Build the error for the first token of a counts file that is not a valid count.

    Args:
        text: file content.
        label: file label for errors.

    Returns:
        The error, naming the line when the bad token is found.
    """
    for n, line in enumerate(io.StringIO(text), start=1):
        for token in line.split():
            if not (token.isascii() and token.isdigit() and int(token) < _MAX_COUNT):
                return TraceFormatError(label, f"expected a count >= 0, got {token!r}", line=n)
    return TraceFormatError(label, "counts must be whitespace-separated integers >= 0")


def _nasa_trace(counts: NDArray[np.int64], *, step: float) -> LoadTrace:
    """Put the NASA-HTTP 1995 per-second counts on the wall clock (see ``_NASA_*``).

    Args:
        counts: the 5,059,950 counts of ``workload.txt``.
        step: bin width in seconds.

    Returns:
        The trace from 1995-07-01 00:00 EDT, NaN where nothing was logged.
    """
    august = _NASA_AUGUST - _NASA_MIDNIGHT
    end = _NASA_END - _NASA_MIDNIGHT
    seconds = np.full(end, np.nan)
    seconds[1 : 1 + _NASA_JULY_SECONDS] = counts[:_NASA_JULY_SECONDS]
    august_counts = counts[_NASA_JULY_SECONDS:][: end - august]
    seconds[august : august + august_counts.size] = august_counts
    seconds[_NASA_OUTAGE[0] - _NASA_MIDNIGHT : _NASA_OUTAGE[1] - _NASA_MIDNIGHT] = np.nan
    return LoadTrace(
        name="nasa-http-1995",
        start=float(_NASA_MIDNIGHT),
        step=step,
        rates=resample_rates(seconds, src_step=1.0, dst_step=step),
        source=_SOURCE_NASA,
    )
