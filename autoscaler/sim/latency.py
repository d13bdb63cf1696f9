"""Per-replica latency models: load -> mean end-to-end latency, queueing and time-outs.

Calibrated to the seed deployment (gpt2 on a T4 under vLLM): ~250 req/s per replica at
saturation, ~200 ms mean latency at concurrency 50 and ~400 ms at 100 — i.e. past
saturation extra concurrency only queues. Below saturation latency grows with batch
occupancy (``batching``) or stays flat until saturation (``flat``); results must hold
for both. The queue is a fluid: it grows by (arrivals - capacity) and requests whose
expected wait exceeds the time-out fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LatencyModel:
    """Latency of one replica as a function of utilisation, plus a fluid queue."""

    saturation_rps: float = 250.0
    base_seconds: float = 0.06
    saturation_seconds: float = 0.2
    shape: Literal["batching", "flat"] = "batching"
    exponent: float = 2.0
    timeout_seconds: float = 60.0

    def service_latency(self, utilisation: float) -> float:
        """Mean latency without queueing at utilisation ``rho`` in [0, 1]. Pure."""
        rho = min(max(utilisation, 0.0), 1.0)
        if self.shape == "flat":
            return self.base_seconds
        return float(self.base_seconds + (self.saturation_seconds - self.base_seconds) * rho**self.exponent)

    def step(self, *, arrivals: float, replicas: int, queue: float, dt: float) -> StepOutcome:
        """Advance one step of ``dt`` seconds. Pure.

        Args:
            arrivals: Requests arriving in the step.
            replicas: Ready serving replicas (load is balanced evenly).
            queue: Requests waiting at the start of the step.
            dt: Step length in seconds.

        Returns:
            Latency of this step's requests, how many failed, and the new queue.
        """
        capacity = self.saturation_rps * replicas * dt
        if capacity <= 0:
            # Nothing serves: everything waiting or arriving times out eventually.
            return StepOutcome(latency=self.timeout_seconds, failed=arrivals + queue, queue=0.0, served=0.0)
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
        latency = self.service_latency(rho) + wait
        return StepOutcome(latency=latency, failed=failed, queue=new_queue, served=served)

    def capacity_at_slo(self, slo_seconds: float) -> float:
        """Highest per-replica load whose mean latency meets ``slo_seconds``. Pure."""
        if self.shape == "flat":
            return self.saturation_rps if slo_seconds >= self.base_seconds else 0.0
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
