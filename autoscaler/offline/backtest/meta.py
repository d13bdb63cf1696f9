"""The ``meta`` section of a backtest's ``result.json``: the window, the data, the replay's settings.

Why a module of its own: the section is long (what was asked for, what the data held, the
span replayed, the cold start used and where it came from, the policies, the assumptions)
and only describes a run, so :mod:`autoscaler.offline.backtest.replay` reads as the steps
of the run and this module as the record of it. Each part is one function; their keys
appear in ``result.json`` in the order built here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from autoscaler.adapters.prometheus.recorded import window_seconds
from autoscaler.offline.backtest.recorded import Recorded, iso
from autoscaler.offline.experiment import Experiment
from autoscaler.offline.sim.cluster import ClusterPhases
from autoscaler.offline.sim.engine import Scenario
from autoscaler.policy.schema import Target

if TYPE_CHECKING:
    from autoscaler.offline.backtest.replay import BacktestOptions, Policies, Window


def backtest_meta(
    options: BacktestOptions,
    *,
    key: str,
    policies: Policies,
    recorded: Recorded,
    experiment: Experiment,
    warmup_buckets: int,
    window: Window,
    fetch_seconds: float,
    wall_seconds: float,
) -> dict[str, Any]:
    """Everything a reader of ``result.json`` needs to know about how the numbers were made."""
    running = policies.running
    scenario = experiment.scenario
    return {
        "target": key,
        "prometheus_url": options.prometheus.url,
        "window": {
            "start": window.start,
            "end": window.end,
            "start_iso": iso(window.start),
            "end_iso": iso(window.end),
        },
        "data": data_meta(recorded, running),
        "evaluated": evaluated_meta(recorded, scenario, warmup_buckets, initial=experiment.initial_replicas),
        "cold_start": cold_start_meta(recorded, scenario.phases),
        "latency_model": dataclasses.asdict(scenario.latency),
        "slo_seconds": running.slo.latency_seconds,
        "per_replica": running.capacity.per_replica,
        "unit": "tokens/s" if running.capacity.unit == "tokens" else "req/s",
        "nodes_per_replica": options.nodes_per_replica,
        "noise_sigma": scenario.noise_sigma,
        "seed": scenario.seed,
        "policies": policies_meta(policies),
        "assumptions": assumptions(options.nodes_per_replica),
        "fetch_seconds": round(fetch_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
    }


def data_meta(recorded: Recorded, running: Target) -> dict[str, Any]:
    """The recorded data's extent, bucket width, rate window and gaps."""
    end = recorded.start + recorded.size * recorded.step
    return {
        "start": recorded.start,
        "end": end,
        "start_iso": iso(recorded.start),
        "end_iso": iso(end),
        "step_seconds": recorded.step,
        "buckets": recorded.size,
        "rate_window_seconds": window_seconds(running, recorded.step),
        "load_gap_buckets": int(np.isnan(recorded.load).sum()),
        "latency_gap_buckets": int(np.isnan(recorded.latency).sum()),
        "replica_gap_buckets": int(np.isnan(recorded.replicas()).sum()),
    }


def evaluated_meta(
    recorded: Recorded, scenario: Scenario, warmup_buckets: int, *, initial: int | None
) -> dict[str, Any]:
    """The replayed span after the warm-up, its load gaps and the replicas it starts from."""
    return {
        "start": scenario.start,
        "end": scenario.end,
        "start_iso": iso(scenario.start),
        "end_iso": iso(scenario.end),
        "days": round((scenario.end - scenario.start) / 86400.0, 3),
        "warmup_days": round(scenario.warmup_seconds / 86400.0, 3),
        "load_gap_buckets": int(np.isnan(recorded.load[warmup_buckets:]).sum()),
        "initial_replicas": initial,
    }


def cold_start_meta(recorded: Recorded, phases: ClusterPhases) -> dict[str, Any]:
    """The replayed cluster's cold start: measured (and what the learner saw) or the policy's phases."""
    lead = recorded.lead_times
    learned = dict(recorded.learned) if recorded.learned else None
    if learned is not None:
        learned.pop("lead_times", None)
    return {
        "source": lead.source if lead is not None else "policy",
        "node_ready_seconds": round(lead.node_ready if lead else phases.scan_interval + phases.node_ready, 1),
        "pod_start_warm_seconds": round(lead.pod_start_warm if lead else phases.model_load, 1),
        "pod_start_fresh_seconds": round(lead.pod_start_fresh if lead else phases.image_pull + phases.model_load, 1),
        "total_seconds": round(phases.total, 1),
        "phases": dataclasses.asdict(phases),
        "learned": learned,
    }


def policies_meta(policies: Policies) -> dict[str, Any]:
    """Where each replayed predictive policy came from and its main settings."""
    out = {"predictive": _policy_meta(policies.running, policies.running_source)}
    if policies.candidate is not None:
        out["candidate"] = _policy_meta(policies.candidate, policies.candidate_source)
    return out


def _policy_meta(target: Target, source: str | None) -> dict[str, Any]:
    return {
        "source": source,
        "quantile": target.forecast.quantile,
        "model": target.forecast.model,
        "scale_down_stabilization_seconds": target.scaling.scale_down_stabilization_seconds,
    }


def assumptions(nodes_per_replica: float) -> list[str]:
    """What the recorded row and the replays assume, in words (printed in ``report.html``)."""
    return [
        "recorded SLO attainment: share of the recorded load in buckets whose recorded mean e2e latency "
        "is within the SLO; buckets without load or latency (gaps) are left out",
        f"recorded GPU node-hours: desired replicas x {nodes_per_replica:g} node(s) per replica, "
        "held across gaps; provisioning and idle node tails are not visible (a lower bound); replayed "
        "node-hours are billed from node creation to removal, times the same factor",
        "recorded scale events: changes of the desired replicas",
        "replays: recorded load with gaps bridged linearly (never zero) plus sub-minute burst noise, "
        "the measured cold start (else the policy's phases), saturation at perReplica / 0.9",
    ]
