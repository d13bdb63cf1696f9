"""Fixtures for the sharding tests: our :class:`KubeApi` over the session's real control plane.

The selector/matcher tests are pure and need no server; ``test_scope.py`` runs
:class:`~autoscaler.kube.sharding.ShardScope` and the Lease claims against the real API server
(the control plane of ``tests/cluster``, registered suite-wide).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autoscaler.kube.client import KubeApi, from_api_client
from tests.cluster.controlplane import ControlPlane


@pytest.fixture
def admin(control_plane: ControlPlane) -> Iterator[KubeApi]:
    """Our :class:`KubeApi` wrapper over an admin client (direct to the API server)."""
    api = from_api_client(control_plane.api_client())
    yield api
    api.close()
