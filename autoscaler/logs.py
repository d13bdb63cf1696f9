"""structlog configuration: one JSON object per line in the cluster, readable on a terminal.

Every decision is one event (``decision``) with bound fields, never prose, so operators
can ``kubectl logs | jq`` dry-run decisions. A redaction processor drops anything that
looks like a credential before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("token", "authorization", "password", "secret", "bearer")


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace values of credential-like keys with ``***``."""
    for key in list(event):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = "***"
    return event


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at write time (it may be replaced, e.g. by pytest)."""

    def write(self, text: str) -> int:
        """Write to the current stderr."""
        return sys.stderr.write(text)

    def flush(self) -> None:
        """Flush the current stderr."""
        sys.stderr.flush()


def configure(*, fmt: str = "json", level: str = "info", stream: Any = None) -> None:
    """Configure structlog for the process.

    Args:
        fmt: ``json`` (one object per line) or ``console`` (human-readable).
        level: Minimum level name.
        stream: Output stream (default: the current stderr at each write, keeping stdout
            for command output).
    """
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or _Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    """A bound structlog logger."""
    return structlog.get_logger().bind(**bind)
