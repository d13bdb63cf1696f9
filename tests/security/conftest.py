"""Fixtures for the security checks: real servers only (Prometheus, the control plane).

The self-signed certificate and the Prometheus binary fixtures are the ones of
``tests/adapters`` (imported, not copied). Every test here runs ``autoscaler run`` as a
subprocess, the way an operator runs it, so the checks cover the whole process (logging
configuration included), not one adapter.
"""

from __future__ import annotations

from tests.adapters.conftest import prometheus_bin, self_signed

__all__ = ["prometheus_bin", "self_signed"]
