"""A discrete-time GPU cluster simulator that drives the real controller through its ports.

Nodes go through the cold-start phases, pods pull the image and load the model, a
kube-scheduler model binds pods and preempts placeholders (victim choice as upstream),
a cluster-autoscaler model adds nodes for pending pods and removes idle ones, and a
per-replica latency model turns load into latency, queueing and time-outs. GPU
node-seconds are billed from node creation to removal.
"""
