"""structlog configuration: one JSON object per line in the cluster, readable on a terminal.

Every decision is one event (``decision``) with bound fields, never prose, so operators
can ``kubectl logs | jq`` dry-run decisions. Two processors keep credentials out of the
logs before rendering: :func:`redact` replaces the value of any credential-like key, and
:func:`scrub` (after exceptions are formatted, so tracebacks are covered too) masks
``Bearer <token>`` wherever it appears inside a string value — e.g. in an error message that
echoes a request's headers — as defence in depth behind the adapters, which already never
put tokens in their messages.

The libraries underneath (kubernetes, urllib3, apscheduler) and Python's ``warnings`` log
through the standard library: :func:`configure` installs one root handler that renders their
records with the same processors, so a JSON stream stays one JSON object per line (with the
``logger`` name) and their messages are masked too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("token", "authorization", "password", "secret", "bearer")
#: A bearer credential inside free text: the scheme is kept, the credential masked. 16+ characters
#: (service-account JWTs and random tokens are far longer), so prose like "bearer token file" stays.
_CREDENTIAL = re.compile(r"(?i)\b(bearer)(\s+|%20)[A-Za-z0-9._~+/=-]{16,}")
#: Nesting depth scrubbed inside dicts/lists (decision events nest two levels).
_MAX_DEPTH = 6


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace values of credential-like keys with ``***``."""
    for key in list(event):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = "***"
    return event


def _scrub_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _CREDENTIAL.sub(r"\1\2***", value) if value else value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _scrub_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub_value(v, depth + 1) for v in value)
    return value


def scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask ``Bearer <credential>`` inside string values (nested up to 6 levels)."""
    for key, value in event.items():
        event[key] = _scrub_value(value, 0)
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
    _bridge_stdlib(renderer, level=getattr(logging, level.upper(), logging.INFO), stream=stream or _Stderr())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or _Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


class _Bridge(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler :func:`configure` installs (found again and replaced on reconfiguration)."""


def _bridge_stdlib(renderer: Any, *, level: int, stream: Any) -> None:
    """Render standard-library log records (and ``warnings``) with structlog's processors.

    Replaces a bridge installed earlier, leaves other handlers alone (e.g. pytest's).
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            scrub,
            renderer,
        ],
    )
    handler = _Bridge(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Bridge)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # apscheduler logs two info lines per job run ("Running job", "executed successfully"):
    # the cycle's own events say more; keep its warnings (missed runs) and errors.
    logging.getLogger("apscheduler").setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    # Off, then on: captureWarnings(True) does nothing when it believes it is on already, even
    # if something restored warnings.showwarning meanwhile (a warnings.catch_warnings block).
    logging.captureWarnings(False)
    logging.captureWarnings(True)


def get_logger(**bind: Any) -> Any:
    """A bound structlog logger."""
    return structlog.get_logger().bind(**bind)
