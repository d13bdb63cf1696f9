"""Suite-wide fixtures: the real Kubernetes control plane is registered once here.

pytest allows ``pytest_plugins`` only in the top-level conftest; registering the cluster
fixtures here gives every directory (cluster, kube, e2e) the same session-scoped control
plane instead of one per directory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["tests.cluster.fixtures"]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """A test that configures logging (e.g. by running the CLI in-process) leaves no trace."""
    yield
    structlog.reset_defaults()
