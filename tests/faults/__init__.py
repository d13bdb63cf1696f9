"""The fault matrix: every fault the controller must survive, as rows of one table-driven test.

Real Prometheus and the real test control plane; faults are injected by stopping servers,
through a fault-injecting proxy on loopback, by editing real objects, by killing a real
``autoscaler run`` process, or by moving the controller's clock. See ``test_fault_matrix.py``.
"""
