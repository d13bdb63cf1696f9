"""Suite-wide fixtures: the real Kubernetes control plane is registered once here.

pytest allows ``pytest_plugins`` only in the top-level conftest; registering the cluster
fixtures here gives every directory (cluster, kube, e2e) the same session-scoped control
plane instead of one per directory.
"""

pytest_plugins = ["tests.cluster.fixtures"]
