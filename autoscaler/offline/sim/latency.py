"""Per-replica latency models: load -> mean end-to-end latency, queueing and time-outs.

Calibrated to the seed deployment (gpt2 on a T4 under vLLM): ~250 req/s per replica at
saturation, ~200 ms mean latency at concurrency 50 and ~400 ms at 100 — i.e. past
saturation extra concurrency only queues. Below saturation the service time follows one
of three curves, and results must hold for all of them:

* ``batching``: grows with batch occupancy, ``base + (sat - base) * rho**2``;
* ``flat``: stays at ``base`` until saturation;
* ``steep``: ``base / (1 - rho)``, the M/M/1 shape, capped at ``max_num_seqs /
  saturation_rps`` (Little's law: a full batch of ``max_num_seqs`` sequences served at
  the saturation rate). Latency rising with load is where a fixed ``perReplica`` and a
  latency guard disagree, so the capacity at an SLO is well below saturation.

The queue is a fluid: it grows by (arrivals - capacity) and requests whose expected
wait exceeds the time-out fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Curve = Literal["batching", "flat", "steep"]
CURVES: tuple[Curve, ...] = ("batching", "flat", "steep")


@dataclass(frozen=True)
class LatencyModel:
    """Latency of one replica as a function of utilisation, plus a fluid queue."""

    saturation_rps: float = 250.0
    base_seconds: float = 0.06
    saturation_seconds: float = 0.2
    shape: Curve = "batching"
    exponent: float = 2.0
    timeout_seconds: float = 60.0
    max_num_seqs: int = 256
    """vLLM's default batch size limit; caps the ``steep`` curve."""

    @classmethod
    def preset(cls, curve: str) -> LatencyModel:
        """The curve ``simulate --latency-curve`` names, on the seed's calibration."""
        if curve == "flat":
            return cls(shape="flat", base_seconds=0.1)
        if curve == "steep":
            return cls(shape="steep", base_seconds=0.1)
        if curve == "batching":
            return cls()
        raise ValueError(f"unknown latency curve {curve!r}; expected one of {', '.join(CURVES)}")

    @property
    def ceiling_seconds(self) -> float:
        """The ``steep`` curve's cap: a full batch at the saturation rate."""
        return self.max_num_seqs / self.saturation_rps

    def service_latency(self, utilisation: float) -> float:
        """Mean latency without queueing at utilisation ``rho`` in [0, 1]. Pure."""
        rho = min(max(utilisation, 0.0), 1.0)
        if self.shape == "flat":
            return self.base_seconds
        if self.shape == "steep":
            if rho >= 1.0:
                return self.ceiling_seconds
            return float(min(self.base_seconds / (1.0 - rho), self.ceiling_seconds))
        return float(self.base_seconds + (self.saturation_seconds - self.base_seconds) * rho**self.exponent)

    def step(self, *, arrivals: float, replicas: int, queue: float, dt: float) -> StepOutcome:
        """Advance one step of ``dt`` seconds. Pure.

        Args:
            arrivals: Requests arriving in the step.
            replicas: Ready serving replicas (load is balanced evenly).
            queue: Requests waiting at the start of the step.
            dt: Step length in seconds.

        Returns:
            Latency of this step's requests, how many failed, the new queue and the
            concurrency (requests running plus waiting, what vLLM's gauges report).
        """
        capacity = self.saturation_rps * replicas * dt
        if capacity <= 0:
            # Nothing serves: everything waiting or arriving times out eventually.
            return StepOutcome(
                latency=self.timeout_seconds, failed=arrivals + queue, queue=0.0, served=0.0, concurrency=queue
            )
        backlog = queue + arrivals
        served = min(backlog, capacity)
        new_queue = backlog - served
        rho = min(1.0, (arrivals + queue) / capacity)
        wait = new_queue / (capacity / dt)
        failed = 0.0
        if wait > self.timeout_seconds:
            keep = self.timeout_seconds * capacity / dt
            failed = new_queue - keep
            new_queue = keep
            wait = self.timeout_seconds
        service = self.service_latency(rho)
        # Little's law: the requests in service are the served rate times the service time.
        running = served / dt * service
        return StepOutcome(
            latency=service + wait, failed=failed, queue=new_queue, served=served, concurrency=running + new_queue
        )

    def capacity_at_slo(self, slo_seconds: float) -> float:
        """Highest per-replica load whose mean latency meets ``slo_seconds``. Pure."""
        if self.shape == "flat":
            return self.saturation_rps if slo_seconds >= self.base_seconds else 0.0
        if self.shape == "steep":
            if slo_seconds >= self.ceiling_seconds:
                return self.saturation_rps
            if slo_seconds <= self.base_seconds:
                return 0.0
            return float(self.saturation_rps * (1.0 - self.base_seconds / slo_seconds))
        if slo_seconds >= self.saturation_seconds:
            return self.saturation_rps
        if slo_seconds <= self.base_seconds:
            return 0.0
        frac = (slo_seconds - self.base_seconds) / (self.saturation_seconds - self.base_seconds)
        return float(self.saturation_rps * frac ** (1.0 / self.exponent))


@dataclass(frozen=True)
class StepOutcome:
    """Result of one latency-model step."""

    latency: float
    failed: float
    queue: float
    served: float
    concurrency: float = 0.0
