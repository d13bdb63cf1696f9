"""Offline tools: the cluster simulator, ``autoscaler simulate`` and ``autoscaler backtest``.

They run the real controller (:mod:`autoscaler.runtime.controller`) against the simulated
cluster of :mod:`autoscaler.offline.sim`, on bundled or recorded load
(:mod:`autoscaler.offline.traces`, :mod:`autoscaler.offline.backtest`). Both commands run
their policies through one pipeline, :mod:`autoscaler.offline.experiment`.
"""
