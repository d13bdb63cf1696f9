"""Tests of the Kubernetes adapters (autoscaler.kube) against a real control plane."""
