"""Adapters: the real implementations of the controller's ports.

Only the composition root (the ``run``/``observe``/``backtest`` commands) picks an adapter;
the control loop sees the :mod:`autoscaler.ports` protocols. :mod:`autoscaler.adapters.prometheus`
reads vLLM, DCGM and kube-state-metrics series from Prometheus (the Kubernetes adapters are
:mod:`autoscaler.kube`).
"""
