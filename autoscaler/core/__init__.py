"""The pure decision core: value objects, capacity math and ``decide``.

Nothing in this package performs IO, logs, or reads a clock: inputs (including ``now``)
are passed in and a :class:`~autoscaler.core.types.Decision` comes out. That is what lets
the same code run in the cluster, in the simulator and in table-driven tests.
"""
