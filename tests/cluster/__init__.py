"""Cluster tests: a real Kubernetes control plane plus a fake node layer (see conftest)."""
