"""The Kubernetes side of the autoscaler: the ``Cluster`` port, leader election, policy source.

Why a package of its own: this is the only code that imports the ``kubernetes`` client. Every
module here turns the client's answers into our value objects and its exceptions into
:mod:`autoscaler.errors` (see :mod:`autoscaler.kube.client`), so the control loop never sees
either. The least-privilege RBAC these modules need is ``deploy/rbac.yaml``.
"""

from autoscaler.kube.client import KubeApi, connect, from_api_client
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.events import EventRecorder
from autoscaler.kube.leader import LeaseElector
from autoscaler.kube.policy_source import ConfigMapPolicySource, FilePolicySource

__all__ = [
    "ConfigMapPolicySource",
    "EventRecorder",
    "FilePolicySource",
    "KubeApi",
    "KubeCluster",
    "LeaseElector",
    "connect",
    "from_api_client",
]
