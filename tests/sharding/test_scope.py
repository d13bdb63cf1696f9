"""``ShardScope`` against the real API server: labels read, unreadable targets skipped, overlaps resolved.

Why: the scope decides which Deployments a controller may write. It must read the target
Deployments' real labels (and follow a relabel), skip — never guess — a target it cannot
read, and, when two shards claim the same target through their Leases, leave exactly one
of them acting, also after the other one crashes. Leases are written by the real
:class:`LeaseElector` (its metadata callback is how a shard publishes its claims); time
is a fake monotonic clock so liveness and the label cache are checked exactly.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiClient
from structlog.testing import capture_logs

from autoscaler.errors import ClusterUnavailable
from autoscaler.kube.client import KubeApi, from_api_client
from autoscaler.kube.leader import LeaseElector
from autoscaler.kube.sharding import CLAIMS_ANNOTATION, SHARD_ANNOTATION, SHARD_LEASE_LABEL, ShardScope, parse_shard
from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime.service import AlwaysLeader, Service
from autoscaler.runtime.telemetry import Health, Telemetry
from tests.cluster.controlplane import ControlPlane
from tests.fakes import StepClock
from tests.prom.server import free_port

pytestmark = pytest.mark.cluster


def make_deployment(apps: kubernetes.client.AppsV1Api, namespace: str, name: str, labels: dict[str, str]) -> None:
    """A minimal Deployment carrying ``labels`` (its pods never need to run)."""
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "registry.example/x:1"}]}}},
    })


def policy_of(namespace: str, *names: str) -> Policy:
    """A policy listing ``namespace/name`` for each name."""
    return Policy(targets=tuple(Target(namespace=namespace, deployment=n) for n in names))


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The captured log events called ``name``."""
    return [e for e in logs if e["event"] == name]


def test_selector_reads_labels_skips_unreadable_and_follows_a_relabel(
    admin: KubeApi, k8s_client: ApiClient, namespace: str,
) -> None:
    """Labels come from the Deployments; a missing one is skipped and logged; a relabel counts after the TTL."""
    apps = kubernetes.client.AppsV1Api(k8s_client)
    make_deployment(apps, namespace, "mine", {"team": "x"})
    make_deployment(apps, namespace, "theirs", {"team": "y"})
    clock = StepClock()
    shard = parse_shard(None, "team=x")
    assert shard is not None
    scope = ShardScope(shard, admin, label_ttl=60.0, clock=clock)
    policy = policy_of(namespace, "mine", "theirs", "missing")
    with capture_logs() as logs:
        narrowed = scope.select(policy, 1)
    assert [t.deployment for t in narrowed.targets] == ["mine"]
    unreadable = events(logs, "shard_target_unreadable")
    assert [e["target"] for e in unreadable] == [f"{namespace}/missing"] and unreadable[0]["kind"] == "not_found"
    (summary,) = events(logs, "shard_targets")
    assert (summary["owned"], summary["total"], summary["unreadable"]) == (1, 3, 1)

    apps.patch_namespaced_deployment("theirs", namespace, {"metadata": {"labels": {"team": "x"}}})
    clock.advance(30)  # within the TTL: the cached labels still count (no extra reads per cycle)
    assert [t.deployment for t in scope.select(policy, 1).targets] == ["mine"]
    clock.advance(31)
    assert [t.deployment for t in scope.select(policy, 1).targets] == ["mine", "theirs"]


def test_unreachable_or_forbidden_reads_skip_targets_and_fail_start_up_only_when_unreachable(
    control_plane: ControlPlane, k8s_client: ApiClient, namespace: str,
) -> None:
    """RBAC denial or a dead API server: nothing is admitted; start-up (strict) fails on the dead server only."""
    core = kubernetes.client.CoreV1Api(k8s_client)
    apps = kubernetes.client.AppsV1Api(k8s_client)
    make_deployment(apps, namespace, "mine", {"team": "x"})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    nobody = from_api_client(control_plane.api_client(control_plane.service_account_token(namespace, "nobody")))
    shard = parse_shard(None, "team=x")
    assert shard is not None
    policy = policy_of(namespace, "mine")
    with capture_logs() as logs:
        assert ShardScope(shard, nobody).select(policy, 1, strict=True).targets == ()
    assert events(logs, "shard_target_unreadable")[0]["kind"] == "forbidden"

    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{free_port()}"
    dead = from_api_client(ApiClient(configuration=cfg), timeout=(1.0, 1.0))
    assert ShardScope(shard, dead).select(policy, 1).targets == ()  # running: skipped this cycle
    with pytest.raises(ClusterUnavailable):
        ShardScope(shard, dead).select(policy, 1, strict=True)
    nobody.close()
    dead.close()


def _shard_member(admin: KubeApi, namespace: str, lease: str, clock: StepClock, *,
                  namespaces: str | None = None, selector: str | None = None) -> tuple[ShardScope, LeaseElector]:
    shard = parse_shard(namespaces, selector)
    assert shard is not None
    scope = ShardScope(shard, admin, lease_namespace=namespace, lease_name=lease, clock=clock)
    elector = LeaseElector(admin, namespace=namespace, name=lease, identity=f"{lease}-0", clock=clock,
                           metadata=scope.lease_metadata)
    return scope, elector


def test_overlapping_shards_leave_exactly_one_writer_until_the_other_is_gone(
    admin: KubeApi, k8s_client: ApiClient, namespace: str,
) -> None:
    """Both claim a target: the first Lease name keeps it; the other yields until that Lease is released or expires."""
    apps = kubernetes.client.AppsV1Api(k8s_client)
    make_deployment(apps, namespace, "shared", {"team": "x"})
    make_deployment(apps, namespace, "only-b", {"team": "y"})
    clock = StepClock()
    a_scope, a_lease = _shard_member(admin, namespace, "shard-a", clock, namespaces=namespace, selector="team=x")
    b_scope, b_lease = _shard_member(admin, namespace, "shard-b", clock, selector="team in (x,y)")
    policy = policy_of(namespace, "shared", "only-b")
    key = f"{namespace}/shared"
    a_scope.select(policy, 1)  # not yet aware of each other: both claim, both publish on renewal
    b_scope.select(policy, 1)
    assert a_lease.step() and b_lease.step()
    stored = kubernetes.client.CoordinationV1Api(k8s_client).read_namespaced_lease("shard-b", namespace)
    assert stored.metadata.labels[SHARD_LEASE_LABEL] == "true"
    assert json.loads(stored.metadata.annotations[CLAIMS_ANNOTATION]) == [f"{namespace}/only-b", key]
    assert json.loads(stored.metadata.annotations[SHARD_ANNOTATION]) == {"namespaces": None,
                                                                        "selector": "team in (x,y)"}
    with capture_logs() as logs:
        assert [t.key for t in a_scope.select(policy, 1).targets] == [key]
        assert [t.key for t in b_scope.select(policy, 1).targets] == [f"{namespace}/only-b"]
    overlaps = {(e["target"], e["action"], tuple(e["other_leases"])) for e in events(logs, "shard_overlap")}
    assert overlaps == {(key, "kept", ("shard-b",)), (key, "yielded", ("shard-a",))}
    assert all(e["log_level"] == "error" for e in events(logs, "shard_overlap"))

    # shard-a crashes (its Lease is left held): b keeps yielding until the record is 15 s old on b's clock.
    a_lease.stop(release=False)
    clock.advance(14)
    assert [t.key for t in b_scope.select(policy, 1).targets] == [f"{namespace}/only-b"]
    clock.advance(2)
    assert [t.key for t in b_scope.select(policy, 1).targets] == [key, f"{namespace}/only-b"]

    # shard-a comes back and renews: the tie-break gives the target back to it at once.
    a_again = LeaseElector(admin, namespace=namespace, name="shard-a", identity="shard-a-0", clock=clock,
                           metadata=a_scope.lease_metadata)
    assert a_again.step()
    assert [t.key for t in b_scope.select(policy, 1).targets] == [f"{namespace}/only-b"]
    # ... and a clean stop releases the Lease: b takes the target on its next cycle, no expiry wait.
    a_again.stop()
    assert [t.key for t in b_scope.select(policy, 1).targets] == [key, f"{namespace}/only-b"]
    b_lease.stop()


def test_two_shard_definitions_on_one_lease_are_reported(admin: KubeApi, namespace: str) -> None:
    """A copied Deployment that kept another shard's --lease-name is named in an error."""
    clock = StepClock()
    _, holder = _shard_member(admin, namespace, "shard-x", clock, namespaces="team-x")
    other_scope, _ = _shard_member(admin, namespace, "shard-x", clock, namespaces="team-y")
    other_scope.select(policy_of(namespace, "a"), 1)  # no Lease yet: nothing to report
    assert holder.step()
    with capture_logs() as logs:
        other_scope.select(policy_of(namespace, "a"), 1)
    (shared,) = events(logs, "shard_lease_shared")
    assert shared["lease"] == "shard-x" and '"team-x"' in shared["theirs"] and '"team-y"' in shared["ours"]
    holder.stop()


def test_a_failing_metadata_callback_never_costs_the_lease(admin: KubeApi, namespace: str) -> None:
    """The elector keeps leading (and renewing) when the metadata callback raises; it logs the failure."""
    def broken() -> tuple[dict[str, str], dict[str, str]]:
        raise RuntimeError("bug")

    with capture_logs() as logs:
        elector = LeaseElector(admin, namespace=namespace, name="l", identity="me", metadata=broken)
        assert elector.step() and elector.step()
    assert events(logs, "lease_metadata_failed")
    elector.stop()


class _RecordingController:
    """Stands in for the Controller in :meth:`Service.follow_policy`: records every policy applied."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.applied: list[Policy] = []

    def set_policy(self, policy: Policy) -> None:
        """Record and switch."""
        self.policy = policy
        self.applied.append(policy)


class _FixedSource:
    """A policy source whose policy never changes (generation 1)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def current(self) -> tuple[Policy, int]:
        """Always the same policy and generation."""
        return self.policy, 1


def test_service_follows_membership_changes_without_a_new_generation(
    admin: KubeApi, k8s_client: ApiClient, namespace: str,
) -> None:
    """A relabelled Deployment joins the shard on a later cycle although the policy generation is unchanged."""
    apps = kubernetes.client.AppsV1Api(k8s_client)
    make_deployment(apps, namespace, "one", {"team": "x"})
    make_deployment(apps, namespace, "two", {"team": "y"})
    clock = StepClock()
    shard = parse_shard(None, "team=x")
    assert shard is not None
    scope = ShardScope(shard, admin, label_ttl=10.0, clock=clock)
    policy = policy_of(namespace, "one", "two")
    controller = _RecordingController(scope.select(policy, 1))
    service = Service(controller=controller, policy_source=_FixedSource(policy), elector=AlwaysLeader(),
                      telemetry=Telemetry(), health=Health(max_cycle_age=60), log=_Quiet(), scope=scope)
    service.follow_policy()
    service.follow_policy()
    assert [[t.deployment for t in p.targets] for p in controller.applied] == [["one"]]  # once: first generation
    apps.patch_namespaced_deployment("two", namespace, {"metadata": {"labels": {"team": "x"}}})
    clock.advance(11)
    service.follow_policy()
    assert [t.deployment for t in controller.applied[-1].targets] == ["one", "two"]
    assert len(controller.applied) == 2


class _Quiet:
    """A logger that drops everything."""

    def info(self, *_: Any, **__: Any) -> None:
        """Drop."""
