"""The one error of the trace package, so that every module can raise it without a cycle.

:class:`TraceFormatError` is a ``ValueError`` (callers that validate input catch that) and
an :class:`~autoscaler.errors.AutoscalerError` (the command line turns it into a one-line
message instead of a traceback).
"""

from __future__ import annotations

from autoscaler.errors import AutoscalerError


class TraceFormatError(AutoscalerError, ValueError):
    """A trace file could not be read; names the file and, when known, the line."""

    def __init__(self, path: str, reason: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
