"""Lease-based leader election against the real API server: one leader, fast hand-over, no overlap.

Why: two controller replicas that both believe they lead would fight over the replicas. The
deterministic test drives two electors step by step on a shared fake clock (expiry is
measured on the standby's own clock, so it can be checked exactly); the threaded test runs
them as the service does, with short durations, through a release and a crash.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import kubernetes.client
import pytest
from kubernetes.client import ApiClient

from autoscaler.kube.client import KubeApi
from autoscaler.kube.leader import LeaseElector
from tests.fakes import StepClock

from .conftest import wait_for

pytestmark = pytest.mark.cluster

LEASE = "gpu-predictive-autoscaler"


def lease(k8s_client: ApiClient, namespace: str) -> kubernetes.client.V1Lease:
    """The Lease as stored."""
    return kubernetes.client.CoordinationV1Api(k8s_client).read_namespaced_lease(LEASE, namespace)


def test_one_leader_and_takeover_after_crash_and_release(admin: KubeApi, k8s_client: ApiClient, namespace: str) -> None:
    """Stepping two electors on a fake clock: one leads; a crash hands over after leaseDuration, a release at once."""
    clock = StepClock()

    def elector(identity: str) -> LeaseElector:
        return LeaseElector(admin, namespace=namespace, name=LEASE, identity=identity, clock=clock)

    a, b = elector("replica-a"), elector("replica-b")
    assert a.step() is True
    assert b.step() is False
    stored = lease(k8s_client, namespace)
    assert stored.spec.holder_identity == "replica-a"
    assert stored.spec.lease_duration_seconds == 15
    assert stored.spec.lease_transitions == 0

    clock.advance(5)  # a renews; b sees a changed record and restarts its expiry timer
    assert a.step() is True
    assert b.step() is False
    # a crashes (no more renewals). It stops claiming leadership after renew_deadline ...
    clock.advance(9.75)
    assert a.is_leader() is True
    clock.advance(0.5)
    assert a.is_leader() is False
    # ... and b takes over only once the lease expired on b's clock (15 s after it last changed).
    clock.advance(4.5)  # 14.75 s since b saw the last renewal
    assert b.step() is False
    clock.advance(0.25)
    assert b.step() is True
    stored = lease(k8s_client, namespace)
    assert stored.spec.holder_identity == "replica-b"
    assert stored.spec.lease_transitions == 1

    # a comes back: it finds b's fresh lease and stays standby.
    assert a.step() is False
    # b stops cleanly: the lease is released and a acquires at its next attempt, no expiry wait.
    b.stop()
    assert lease(k8s_client, namespace).spec.holder_identity is None
    assert a.step() is True
    assert lease(k8s_client, namespace).spec.lease_transitions == 2


#: Durations of the threaded electors. Short, but with room for a loaded CI machine: the leader
#: keeps leading as long as one renewal in RENEW_DEADLINE seconds succeeds (a renewal is two API
#: calls, retried every 0.2 s), and a release must hand over clearly faster than an expiry.
LEASE_DURATION, RENEW_DEADLINE = 6.0, 4.5


@pytest.fixture
def electors(admin: KubeApi, namespace: str) -> Iterator[list[LeaseElector]]:
    """Three threaded electors with short durations (stopped at teardown)."""
    made = [
        LeaseElector(
            admin,
            namespace=namespace,
            name=LEASE,
            identity=f"replica-{i}",
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=0.2,
        )
        for i in range(3)
    ]
    yield made
    for e in made:
        e.stop()


def test_threaded_electors_hand_over_on_stop_and_on_crash(electors: list[LeaseElector]) -> None:
    """Running electors: exactly one leads; after a stop another leads at once; after a crash within the lease."""
    a, b, c = electors
    a.start()
    b.start()
    first = wait_for(lambda: [e for e in (a, b) if e.is_leader()], timeout=10, message="a leader")
    assert len(first) == 1
    leader, standby = (a, b) if first[0] is a else (b, a)
    for _ in range(5):  # stays exactly one over several renewals
        assert [e.is_leader() for e in (leader, standby)] == [True, False]
        time.sleep(0.3)

    leader.stop()  # clean stop: released
    # Without the release the standby would wait the whole lease duration (>= LEASE_DURATION
    # after it last saw a renewal): leading well before that shows the release was used.
    wait_for(standby.is_leader, timeout=LEASE_DURATION - 2.0, message="standby leads right after the release")

    c_started = time.monotonic()
    c.start()
    time.sleep(0.5)
    assert not c.is_leader()
    standby.stop(release=False)  # crash: the lease must expire first
    assert not standby.is_leader()
    wait_for(c.is_leader, timeout=LEASE_DURATION + 10.0, message="takeover once the lease expired after a crash")
    # c measures the expiry on its own clock from when it first saw the last renewal, which
    # was after it started: it cannot lead sooner than LEASE_DURATION after its start.
    assert time.monotonic() - c_started >= LEASE_DURATION


def test_a_stuck_loop_stops_renewing_and_the_standby_takes_over(
    admin: KubeApi, k8s_client: ApiClient, namespace: str
) -> None:
    """The leader's loop stops making progress: it stops leading at once and never renews, so the standby
    acquires once the Lease expired on its own clock; when the loop recovers it renews no more than a standby."""
    clock = StepClock()
    alive = {"a": True}
    a = LeaseElector(admin, namespace=namespace, name=LEASE, identity="replica-a", clock=clock,
                     healthy=lambda: alive["a"])  # fmt: skip
    b = LeaseElector(admin, namespace=namespace, name=LEASE, identity="replica-b", clock=clock)
    assert a.step() is True and b.step() is False
    renewed = lease(k8s_client, namespace).spec.renew_time

    alive["a"] = False  # the loop is stuck (its renewal thread would otherwise go on)
    clock.advance(2)
    assert a.step() is False and a.is_leader() is False  # stops acting at once, well before renew_deadline
    assert lease(k8s_client, namespace).spec.renew_time == renewed, "no renewal while stuck"
    clock.advance(12.9)  # 14.9 s since b saw the last renewal: not expired yet
    assert b.step() is False
    clock.advance(0.2)
    assert b.step() is True
    assert lease(k8s_client, namespace).spec.holder_identity == "replica-b"

    alive["a"] = True  # the loop recovers: a is a standby now, b's Lease is fresh
    clock.advance(2)
    assert b.step() is True
    assert a.step() is False


def test_a_failing_health_check_counts_as_stuck(admin: KubeApi, namespace: str) -> None:
    """A health callback that raises must not leave a replica leading."""

    def broken() -> bool:
        raise RuntimeError("health check bug")

    a = LeaseElector(admin, namespace=namespace, name=LEASE, identity="replica-a", clock=StepClock(), healthy=broken)
    assert a.step() is False and not a.is_leader()
