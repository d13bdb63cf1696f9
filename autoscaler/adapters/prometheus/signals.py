"""Cluster signals: kube-state-metrics' view of the targets' Deployments and the GPU nodes.

Why a module of its own: these are optional extras for ``autoscaler observe`` and backtests
(the Kubernetes API stays authoritative for replica counts), read by their own six queries
for all targets, apart from the per-loop plan the control loop depends on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from autoscaler.adapters.prometheus.answers import Answer
from autoscaler.adapters.prometheus.client import PrometheusClient
from autoscaler.adapters.prometheus.promql import alternation, batch_selector, deployment_of, string
from autoscaler.adapters.prometheus.split import pick
from autoscaler.errors import MetricsEmpty, MetricsError
from autoscaler.policy.schema import Target

# kube-state-metrics (scraped with honor_labels: true, so namespace/pod are the objects')


def cluster_queries(namespaces: Iterable[str]) -> dict[str, str]:
    """Deployment replicas, pending/unschedulable pods and GPU nodes, for all targets. Pure.

    Args:
        namespaces: The targets' namespaces.

    Returns:
        Expressions named ``spec_replicas``, ``ready_replicas``, ``pending_pods``,
        ``unschedulable_pods``, ``node_gpus`` and ``node_ready``.
    """
    namespaces = list(namespaces)
    ns = f"namespace=~{string(alternation(namespaces))}"
    pods = batch_selector(namespaces)
    # kube-state-metrics spells a resource with "_" for "." "/" "-": nvidia.com/gpu, the MIG
    # slices nvidia.com/mig-<profile> and amd.com/gpu; a node's accelerators of every kind.
    gpu = 'resource=~"nvidia_com_gpu|nvidia_com_mig_.+|amd_com_gpu"'
    return {
        "spec_replicas": f"max by (namespace, deployment) (kube_deployment_spec_replicas{{{ns}}})",
        "ready_replicas": f"max by (namespace, deployment) (kube_deployment_status_replicas_ready{{{ns}}})",
        "pending_pods": f'max by (namespace, pod) (kube_pod_status_phase{{{pods}, phase="Pending"}}) == 1',
        "unschedulable_pods": f"max by (namespace, pod) (kube_pod_status_unschedulable{{{pods}}}) == 1",
        "node_gpus": f"sum by (node) (max by (node, resource) (kube_node_status_allocatable{{{gpu}}}))",
        "node_ready": 'max by (node) (kube_node_status_condition{condition="Ready", status="true"})',
    }


def count_pods(target: Target, answer: Answer) -> int:
    """How many of the target's pods a per-pod ``== 1`` answer lists. Pure.

    Raises:
        MetricsError: the query's own error.
    """
    if isinstance(answer, MetricsError):
        raise type(answer)(str(answer)) from answer
    return len(
        {
            s.labels.get("pod")
            for s in answer
            if s.labels.get("namespace") == target.namespace
            and deployment_of(s.labels.get("pod", "")) == target.deployment
        }
    )


@dataclass(frozen=True)
class DeploymentSignals:
    """kube-state-metrics about one target's Deployment (``None`` = unknown)."""

    spec_replicas: int | None = None
    ready_replicas: int | None = None
    pending_pods: int | None = None
    unschedulable_pods: int | None = None
    problems: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuNode:
    """A node's allocatable accelerators (GPUs, MIG slices, AMD GPUs) and its Ready condition (``None`` = unknown)."""

    allocatable_gpus: float
    ready: bool | None


@dataclass(frozen=True)
class ClusterSignals:
    """Per-target Deployment signals and the cluster's GPU nodes."""

    deployments: dict[str, DeploymentSignals]
    gpu_nodes: dict[str, GpuNode]
    problems: dict[str, str] = field(default_factory=dict)


def cluster_signals(client: PrometheusClient, targets: Sequence[Target], now: float) -> ClusterSignals:
    """kube-state-metrics' view: replicas, pending/unschedulable pods, GPU nodes.

    Optional extras for ``autoscaler observe`` and backtests; the Kubernetes API stays
    authoritative for replica counts. Six queries for all targets.

    Args:
        client: Runs the queries.
        targets: The targets whose Deployments to report.
        now: Evaluation time (unix seconds; a past time works for backtests).

    Returns:
        Per-target :class:`DeploymentSignals` (pod counts only for Deployments that
        kube-state-metrics reports, else ``None``, never 0) and the GPU nodes.
        Never raises: failures are in the ``problems`` maps.
    """
    answers: dict[str, Answer] = {}
    for name, expr in cluster_queries(t.namespace for t in targets).items():
        try:
            answers[name] = client.instant(name, expr, at=now)
        except MetricsError as exc:
            answers[name] = exc
    deployments = {}
    for target in targets:
        counts: dict[str, int | None] = {}
        problems: dict[str, str] = {}
        for name in ("spec_replicas", "ready_replicas", "pending_pods", "unschedulable_pods"):
            try:
                if not name.endswith("_pods"):
                    counts[name] = int(pick(target, answers[name], signal=name, how="max"))
                elif counts["spec_replicas"] is None:
                    raise MetricsEmpty("kube-state-metrics does not report the Deployment")
                else:
                    counts[name] = count_pods(target, answers[name])
            except MetricsError as exc:
                counts[name], problems[name] = None, exc.kind
        deployments[target.key] = DeploymentSignals(**counts, problems=problems)
    nodes: dict[str, GpuNode] = {}
    gpus, ready = answers["node_gpus"], answers["node_ready"]
    if isinstance(gpus, MetricsError):
        return ClusterSignals(deployments=deployments, gpu_nodes=nodes, problems={"gpu_nodes": gpus.kind})
    up = {} if isinstance(ready, MetricsError) else {s.labels.get("node", ""): s.value == 1 for s in ready}
    for s in gpus:
        node = s.labels.get("node", "")
        nodes[node] = GpuNode(allocatable_gpus=s.value, ready=up.get(node))
    return ClusterSignals(deployments=deployments, gpu_nodes=nodes)
