"""The in-cluster controller: the control loop, the service around it and its telemetry.

:mod:`~autoscaler.runtime.controller` is the one copy of the control loop, behind the
:mod:`autoscaler.ports` protocols (the simulator drives it too);
:mod:`~autoscaler.runtime.service` adds leader election and the policy source,
:mod:`~autoscaler.runtime.telemetry` the metrics and health endpoints, and
:mod:`~autoscaler.runtime.wiring` is the composition root of ``autoscaler run``.
"""
