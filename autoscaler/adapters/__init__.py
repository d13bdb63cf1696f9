"""Adapters: the real implementations of the controller's ports.

Only the composition root (the ``run``/``observe`` commands) picks an adapter; the control
loop sees the :mod:`autoscaler.ports` protocols. ``PrometheusSource`` reads vLLM, DCGM and
kube-state-metrics series from Prometheus.
"""

from autoscaler.adapters.prometheus import ClusterSignals, DeploymentSignals, GpuNode, LoopStats, PrometheusSource

__all__ = ["ClusterSignals", "DeploymentSignals", "GpuNode", "LoopStats", "PrometheusSource"]
