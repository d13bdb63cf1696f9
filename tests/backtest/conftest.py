"""Fixtures for the backtest tests: the real Prometheus binaries from the shared harness.

Why: the backtest must be judged on what a real Prometheus answers for days of history
(range queries, rate extrapolation, gaps), so the harness in ``tests/prom`` is reused as is;
its installer fixture fails loudly (never skips) when Prometheus cannot be installed.
"""

from __future__ import annotations

from tests.prom.conftest import prometheus_binaries

__all__ = ["prometheus_binaries"]
