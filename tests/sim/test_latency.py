"""The per-replica latency model matches the seed's calibration points."""

from __future__ import annotations

import pytest

from autoscaler.offline.sim.latency import LatencyModel


def test_calibration_matches_the_seed_figures() -> None:
    """~250 req/s per replica at saturation with 200 ms: concurrency 50 (Little's law)."""
    model = LatencyModel()
    assert model.service_latency(1.0) == pytest.approx(0.2)
    assert model.saturation_rps * model.service_latency(1.0) == pytest.approx(50.0)
    assert model.capacity_at_slo(0.2) == pytest.approx(250.0)


def test_concurrency_100_means_400ms_because_extra_requests_queue() -> None:
    """Past saturation, a backlog of 50 extra requests adds 200 ms of queueing."""
    model = LatencyModel()
    out = model.step(arrivals=0.0, replicas=1, queue=50.0 + 250.0 * 1.0, dt=1.0)
    assert out.latency == pytest.approx(0.2 + 50.0 / 250.0)


def test_latency_rises_with_occupancy_below_saturation() -> None:
    """The batching curve grows with utilisation; the flat curve does not."""
    batching, flat = LatencyModel(), LatencyModel(shape="flat", base_seconds=0.15)
    assert batching.service_latency(0.2) < batching.service_latency(0.6) < batching.service_latency(0.95)
    assert flat.service_latency(0.2) == flat.service_latency(0.95) == 0.15
    assert flat.capacity_at_slo(0.2) == 250.0


def test_hopeless_queue_times_out_requests() -> None:
    """When the expected wait exceeds the time-out, the excess fails and the queue is capped."""
    model = LatencyModel(timeout_seconds=10.0)
    out = model.step(arrivals=10_000.0, replicas=1, queue=0.0, dt=10.0)
    assert out.failed == pytest.approx(10_000.0 - 2_500.0 - 2_500.0)
    assert out.queue == pytest.approx(2_500.0)
    assert out.latency == pytest.approx(0.2 + 10.0)


def test_no_replica_fails_everything() -> None:
    """With no ready replica every arrival and queued request fails."""
    out = LatencyModel().step(arrivals=100.0, replicas=0, queue=20.0, dt=10.0)
    assert out.failed == 120.0 and out.queue == 0.0


def test_steep_curve_is_base_over_one_minus_rho_capped_by_a_full_batch() -> None:
    """0.1 s / (1 - rho): 0.2 s at 50 %, 1 s at 90 %; capped at max_num_seqs / saturation."""
    steep = LatencyModel.preset("steep")
    assert steep.service_latency(0.5) == pytest.approx(0.2)
    assert steep.service_latency(0.9) == pytest.approx(1.0)
    assert steep.service_latency(1.0) == pytest.approx(256 / 250)
    assert steep.capacity_at_slo(1.0) == pytest.approx(225.0)
    assert steep.capacity_at_slo(0.2) == pytest.approx(125.0)
    assert steep.capacity_at_slo(2.0) == 250.0


def test_concurrency_is_littles_law_plus_the_queue() -> None:
    """Running = served rate x service time; waiting = what is left queued."""
    flat = LatencyModel.preset("flat")
    out = flat.step(arrivals=2000.0, replicas=1, queue=0.0, dt=10.0)
    assert out.concurrency == pytest.approx(200.0 * 0.1)
    over = flat.step(arrivals=3000.0, replicas=1, queue=0.0, dt=10.0)
    assert over.concurrency == pytest.approx(250.0 * 0.1 + 500.0)


def test_unknown_curve_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown latency curve"):
        LatencyModel.preset("wavy")
