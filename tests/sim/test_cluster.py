"""Simulated cluster on hand-computed cases: billing, preemption, victim choice, node removal."""

from __future__ import annotations

import gc

import pytest

from autoscaler.offline.sim.cluster import PLACEHOLDER, SERVING, ClusterPhases, Node, SimCluster

PHASES = ClusterPhases()  # 300 + 60 + 180 = 540 s to a ready node, 360 s pull, 60 s load


def run_until(cluster: SimCluster, start: float, end: float, dt: float = 10.0) -> None:
    """Advance the cluster in ``dt`` steps from ``start`` to ``end`` inclusive."""
    t = start
    while t <= end + 1e-9:
        cluster.advance(t)
        t += dt


def test_node_hours_bill_from_creation_to_removal() -> None:
    """Two bootstrapped nodes for one hour bill exactly two node-hours."""
    cluster = SimCluster(phases=PHASES)
    cluster.bootstrap(serving=2, now=0.0)
    run_until(cluster, 0.0, 3600.0)
    assert cluster.node_seconds(3600.0) == pytest.approx(2 * 3600.0)


def test_new_replica_on_new_node_takes_the_full_cold_start() -> None:
    """A replica that needs a new node is ready after scan + node + pull + load (~16 min)."""
    cluster = SimCluster(phases=PHASES)
    cluster.bootstrap(serving=1, now=0.0)
    cluster.scale(SERVING, 2, 0.0)
    ready_at = None
    t = 0.0
    while t < 3000 and ready_at is None:
        cluster.advance(t)
        if cluster.ready(SERVING, t) == 2:
            ready_at = t
        t += 10.0
    # CA scans at t=0 (node created at 0), node ready at 540, pull 360, load 60 -> 960.
    assert ready_at == pytest.approx(960.0, abs=10.0)


def test_preempting_a_warm_placeholder_needs_only_model_load() -> None:
    """A serving pod that preempts a warm placeholder is ready one model load later."""
    cluster = SimCluster(phases=PHASES)
    cluster.bootstrap(serving=1, now=0.0)
    cluster.scale(PLACEHOLDER, 1, 0.0)
    run_until(cluster, 0.0, 1000.0)
    assert cluster.ready(PLACEHOLDER, 1000.0) == 1  # warm: image pulled
    nodes_before = len(cluster.nodes)
    cluster.scale(SERVING, 2, 1000.0)
    cluster.advance(1000.0)
    assert cluster.preemptions == 1
    assert cluster.ready(SERVING, 1050.0) == 1
    assert cluster.ready(SERVING, 1060.0) == 2
    assert len(cluster.nodes) == nodes_before, "no new node was needed for the serving pod"
    cluster.advance(1010.0)
    assert cluster.pending(PLACEHOLDER) == 1, "the placeholder's replacement waits for a node"
    assert cluster.nodes_provisioning(1010.0) == 1, "and cluster-autoscaler adds one for it"


def test_scheduler_preempts_the_most_recently_started_placeholder() -> None:
    """Among equal-priority victims the newest one goes, even if it is still pulling the image."""
    cluster = SimCluster(phases=PHASES)
    cluster.bootstrap(serving=1, now=0.0)
    cluster.scale(PLACEHOLDER, 1, 0.0)
    run_until(cluster, 0.0, 1000.0)  # first placeholder warm
    cluster.scale(PLACEHOLDER, 2, 1000.0)
    run_until(cluster, 1000.0, 1600.0)  # second node ready at ~1540, pulling until ~1900
    assert cluster.ready(PLACEHOLDER, 1600.0) == 1 and cluster.bound_not_ready(PLACEHOLDER, 1600.0) == 1
    cluster.scale(SERVING, 2, 1600.0)
    cluster.advance(1600.0)
    new = max(cluster.pods[SERVING], key=lambda p: p.created)
    assert new.node is not None and new.node.pull_started is not None
    assert new.node.pull_started > 1000.0, "landed on the node that is still pulling"
    assert new.ready_at == pytest.approx(new.node.pull_started + PHASES.image_pull + PHASES.model_load)
    assert cluster.ready(PLACEHOLDER, 1600.0) == 1, "the warm placeholder was left alone"


def test_cluster_autoscaler_removes_nodes_empty_for_ten_minutes() -> None:
    """An emptied node is removed after 10 unneeded minutes (and not before)."""
    cluster = SimCluster(phases=ClusterPhases(delay_after_add_seconds=0.0))
    cluster.bootstrap(serving=3, now=0.0)
    cluster.scale(SERVING, 1, 100.0)
    run_until(cluster, 100.0, 690.0)
    assert len(cluster.nodes) == 3
    run_until(cluster, 700.0, 720.0)
    assert len(cluster.nodes) == 1
    assert cluster.node_seconds(720.0) == pytest.approx(720.0 + 2 * 700.0)


def _live_nodes() -> int:
    """Node objects alive in the process (after a collection)."""
    gc.collect()
    return sum(isinstance(o, Node) for o in gc.get_objects())


def test_node_churn_keeps_no_removed_node() -> None:
    """110 hours of churn keep no removed node alive; their node-hours are still billed.

    The 14-day soak runs a simulated cluster per target, ~1,000 nodes made and removed a
    day at 100 targets: kept, they were part of the resident-memory growth it reports.
    """
    cluster = SimCluster(phases=ClusterPhases(delay_after_add_seconds=0.0))
    cluster.bootstrap(serving=1, now=0.0)
    hour = 3600.0

    def churn(hours: range) -> None:
        """Each hour: 4 replicas for half an hour (3 new nodes), then 1 until the nodes are removed."""
        for h in hours:
            cluster.scale(SERVING, 4, h * hour)
            run_until(cluster, h * hour, h * hour + 1800.0, dt=30.0)
            cluster.scale(SERVING, 1, h * hour + 1800.0)
            run_until(cluster, h * hour + 1800.0, (h + 1) * hour - 30.0, dt=30.0)

    churn(range(10))
    before = _live_nodes()
    churn(range(10, 110))
    assert len(cluster.nodes) == 1
    # 300 nodes made and removed in these 100 hours: all 300 were still alive when kept.
    assert _live_nodes() - before < 10
    # The bootstrapped node all along, and 3 nodes from each hour's scan until removal.
    billed = cluster.node_seconds(110 * hour)
    assert billed > 110 * hour + 110 * 3 * 1800.0


def test_placeholders_never_preempt_serving_pods() -> None:
    """A pending placeholder waits for a node; it never evicts a serving pod."""
    cluster = SimCluster(phases=PHASES)
    cluster.bootstrap(serving=2, now=0.0)
    cluster.scale(PLACEHOLDER, 1, 0.0)
    cluster.advance(0.0)
    assert cluster.preemptions == 0 and cluster.ready(SERVING, 0.0) == 2
    assert cluster.pending(PLACEHOLDER) == 1 and cluster.nodes_provisioning(0.0) == 1


def test_a_capacity_buffer_holds_a_node_without_pulling_or_preemption() -> None:
    """CapacityBuffer backend: the reserved node is there early, but the serving pod still pulls the image."""
    cluster = SimCluster(phases=PHASES, placeholder_backend="capacityBuffer")
    cluster.bootstrap(serving=1, now=0.0)
    cluster.scale(PLACEHOLDER, 1, 0.0)
    run_until(cluster, 0.0, 1000.0)
    reserved = next(n for n in cluster.nodes if any(p.kind == PLACEHOLDER for p in n.pods))
    assert reserved.pull_started is None, "a reservation runs nothing, so nothing is pulled"
    run_until(cluster, 1010.0, 3000.0)
    assert reserved in cluster.nodes, "cluster-autoscaler keeps the reserved node"
    cluster.scale(SERVING, 2, 3000.0)
    cluster.advance(3000.0)
    assert cluster.preemptions == 0
    assert cluster.ready(SERVING, 3000.0 + 360.0 + 50.0) == 1
    assert cluster.ready(SERVING, 3000.0 + 360.0 + 60.0) == 2  # pull + model load
    cluster.advance(3010.0)
    assert cluster.pending(PLACEHOLDER) == 1, "the buffer asks for its capacity again"


def test_unknown_placeholder_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown placeholder backend"):
        SimCluster(phases=PHASES, placeholder_backend="magic")
