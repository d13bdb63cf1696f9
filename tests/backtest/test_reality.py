"""The pure parts of the backtest: the recorded row, the replayed cluster's cold start, the options.

Why: these turn recorded series into the figures an operator compares policies with, so
gaps must stay gaps (left out of SLO attainment, held for replicas, never zero) and the
measured lead times must map onto the simulated cold start without losing time.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from autoscaler.cli.options import instant
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.offline.backtest.recorded import Recorded, recorded_row
from autoscaler.offline.backtest.replay import cluster_phases, latency_model
from autoscaler.policy.schema import SLO, Capacity, ColdStart, Target

NAN = math.nan
TARGET = Target(namespace="llm", deployment="vllm")


def _recorded(
    load: list[float], latency: list[float], spec: list[float], available: list[float] | None = None
) -> Recorded:
    return Recorded(
        target=TARGET,
        start=0.0,
        step=60.0,
        load=np.array(load),
        latency=np.array(latency),
        spec_replicas=np.array(spec),
        available_replicas=np.array(available if available is not None else [NAN] * len(spec)),
    )


def test_recorded_row_leaves_gaps_out_and_holds_replicas() -> None:
    """SLO share over known buckets only; replicas held across a gap; events between known values."""
    rec = _recorded(
        load=[100, 100, 300, NAN, 100, 200],
        latency=[0.1, 0.1, 0.5, NAN, 0.1, NAN],
        spec=[2, 2, 3, NAN, 3, 2],
    )
    row = recorded_row(rec, begin=1, slo_seconds=0.2)
    assert row["slo_attainment_pct"] == pytest.approx(100 * 200 / 500)  # buckets 1, 2, 4 are known
    assert row["replica_hours"] == pytest.approx((2 + 3 + 3 + 3 + 2) / 60, abs=0.005)  # the gap holds 3
    assert row["gpu_node_hours"] == row["replica_hours"]
    assert row["scale_events"] == 2  # 2 -> 3, then 3 -> 2 after the gap
    assert row["coverage_pct"] == pytest.approx(60.0)
    assert row["failed_requests"] is None and row["placeholder_events"] is None
    assert recorded_row(rec, begin=1, slo_seconds=0.2, nodes_per_replica=0.5)["gpu_node_hours"] == pytest.approx(
        row["replica_hours"] / 2, abs=0.01
    )


def test_recorded_row_falls_back_to_available_replicas_and_reports_unknowns() -> None:
    """Without desired replicas the available ones are used; with neither, node-hours are unknown."""
    rec = _recorded(load=[10, 10], latency=[0.1, 0.1], spec=[NAN, NAN], available=[4, 5])
    assert recorded_row(rec, begin=0, slo_seconds=0.2)["replica_hours"] == pytest.approx(9 / 60, abs=0.005)
    none = recorded_row(_recorded([10, 10], [NAN, NAN], [NAN, NAN]), begin=0, slo_seconds=0.2)
    assert none["gpu_node_hours"] is None and none["slo_attainment_pct"] is None and none["scale_events"] is None


def test_trimmed_drops_leading_and_trailing_buckets_without_load() -> None:
    """The data's extent is from the first to the last recorded load; inner gaps stay."""
    rec = _recorded(load=[NAN, 1, NAN, 2, NAN], latency=[NAN] * 5, spec=[1] * 5).trimmed()
    assert rec.start == 60.0 and rec.size == 3 and np.isnan(rec.load[1])


def test_cluster_phases_match_the_measured_lead_times() -> None:
    """The simulated node wait and pod start-ups equal the measured P90s; the policy's split is kept."""
    cold = ColdStart()
    lead = LeadTimes(node_ready=910.0, pod_start_warm=90.0, pod_start_fresh=500.0, source="measured")
    phases = cluster_phases(lead, cold)
    assert phases.scan_interval + phases.node_ready == pytest.approx(910.0)
    assert phases.model_load == 90.0 and phases.image_pull == 410.0
    assert phases.node_provision / phases.gpu_driver == pytest.approx(300 / 180)
    policy = cluster_phases(None, cold)
    assert policy.total == pytest.approx(cold.total_seconds)


def test_latency_model_reaches_the_slo_at_saturation() -> None:
    """Saturation at perReplica / 0.9 and the SLO's latency there (the seed's calibration, rescaled)."""
    target = Target(namespace="llm", deployment="vllm", slo=SLO(latency_seconds=2.0), capacity=Capacity(per_replica=9))
    model = latency_model(target, saturation_rps=None, curve="batching")
    assert model.saturation_rps == pytest.approx(10.0)
    assert model.service_latency(1.0) == pytest.approx(2.0)
    assert model.capacity_at_slo(2.0) == pytest.approx(10.0)


def test_parse_time() -> None:
    """--until takes unix seconds or ISO 8601 (UTC unless an offset is given), from 1970 to 9999."""
    assert instant("1700000000") == 1700000000.0
    assert instant("2024-01-01T00:00:00") == 1704067200.0
    assert instant("2024-01-01T01:00:00+01:00") == 1704067200.0
    for bad in ("yesterday", "1e300", "-5", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            instant(bad)


def test_replayed_rows_split_their_node_hours_on_the_same_scale() -> None:
    """A replayed row carries the cost split, rescaled by nodes per replica like its total."""
    from autoscaler.offline.backtest.replay import simulated_row
    from autoscaler.offline.sim.engine import ATTRIBUTION, Scenario, run_policy
    from autoscaler.offline.traces import LoadTrace
    from autoscaler.policy.schema import Target

    trace = LoadTrace(name="flat", start=1_700_000_000.0, step=60.0, rates=np.full(240, 500.0), source="test")
    result = run_policy("hpa", Scenario(trace=trace, warmup_seconds=3600.0), Target(namespace="a", deployment="b"))
    row = simulated_row(result, oracle_hours=None, dt=10.0, nodes_per_replica=2.0)
    split = [row[f"hours_{k}"] for k in ATTRIBUTION]
    assert sum(split) == pytest.approx(row["gpu_node_hours"], rel=0.02)
    assert row["hours_needed"] == pytest.approx(2.0 * result.attribution["needed"], abs=0.01)
