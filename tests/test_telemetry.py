"""The controller's /metrics follows the Prometheus conventions operators rely on.

Why: a counter exported as a gauge breaks ``rate()``; a load without its unit is read as
requests when it is tokens; without ``*_build_info`` and the process collector a dashboard
cannot say which version runs or how much memory it takes; and a leader metric without its
Lease cannot say which shard of a sharded install has no leader.
"""

from __future__ import annotations

import platform
import re
import time
from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from autoscaler import __version__
from autoscaler.offline.sim.adapters import SimClusterPort, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Capacity, Policy, Target
from autoscaler.runtime.controller import Controller
from autoscaler.runtime.service import AlwaysLeader, Service
from autoscaler.runtime.telemetry import DEPRECATED, Health, Telemetry
from tests.hostile.test_liveness import START, steady_metrics


def _families(telemetry: Telemetry) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(telemetry.render().decode())}


def test_build_info_and_the_process_and_python_collectors_are_served() -> None:
    """``autoscaler_build_info{version}``, ``process_*`` and ``python_*`` are on the served registry."""
    telemetry = Telemetry()
    families = _families(telemetry)
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_info", "python_gc_objects_collected"):
        assert name in families, name
    (info,) = [s for f in text_string_to_metric_families(telemetry.render().decode()) for s in f.samples
               if s.name == "autoscaler_build_info"]  # fmt: skip
    assert info.labels == {"version": __version__, "python": platform.python_version()} and info.value == 1.0


def test_load_carries_its_unit_and_the_leader_its_lease() -> None:
    """A tokens target's load says ``unit="tokens"``; ``autoscaler_leader`` names the Lease."""
    clock = VirtualClock(START)
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=2, now=clock.now())
    target = replace(Target(namespace="llm", deployment="vllm", mode="dry-run"),
                     capacity=replace(Capacity(), unit="tokens"))  # fmt: skip
    policy = Policy(targets=(target,))
    controller = Controller(policy=policy, metrics=steady_metrics(), cluster=SimClusterPort(sim, clock), clock=clock)

    class Source:
        def current(self) -> tuple[Policy, int]:
            return policy, 1

    telemetry = Telemetry()
    health = Health(max_cycle_age=120.0)
    service = Service(controller=controller, policy_source=Source(), elector=AlwaysLeader(), telemetry=telemetry,
                      health=health, log=controller.log, lease="ops/autoscaler-shard-a")  # fmt: skip
    assert service.cycle(scheduled=time.time()) is not None
    load = telemetry.registry.get_sample_value(
        "autoscaler_observed_load", {"namespace": "llm", "deployment": "vllm", "unit": "tokens"}
    )
    assert load is not None and load > 0
    assert telemetry.registry.get_sample_value("autoscaler_leader", {"lease": "ops/autoscaler-shard-a"}) == 1.0


def test_changelog_lists_every_rename() -> None:
    """CHANGELOG.md has a row old -> new for every renamed series."""
    changelog = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    for old, new in DEPRECATED.items():
        assert re.search(rf"`{old}(\{{[^`]*\}})?` \| `{new}(\{{[^`]*\}})?`", changelog), (old, new)
