"""How to reach Prometheus: the one set of connection options ``run``, ``observe`` and ``backtest`` share.

Why: the three commands declared the same four options separately, under different flag
names and with separate plumbing into :class:`~autoscaler.adapters.prometheus.source.PrometheusSource`.
This module holds only the value (it imports no client library itself; importing it
loads the package, and with it the client); :func:`autoscaler.cli.options.add_prometheus_options`
declares the flags and :meth:`PrometheusSource.connect` takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PrometheusConnection:
    """Where Prometheus is and how to talk to it."""

    url: str
    """Base URL, e.g. ``https://prometheus.monitoring:9090``."""
    bearer_token_file: Path | None = None
    """File holding a bearer token (re-read when it changes)."""
    ca_file: Path | None = None
    """PEM bundle to verify the server with (instead of the system CAs)."""
    verify_tls: bool = True
    """Verify the server's certificate (keep on outside tests)."""
    timeout_seconds: float = 10.0
    """Per-query timeout: the whole call, however the server trickles its answer."""
