"""Load -> replicas, and learning the per-replica capacity from observed samples.

The policy states how much load one replica serves within the SLO. When ``learn`` is on,
:class:`LearnedCapacity` estimates it from (per-replica load, latency) pairs the controller
sees each cycle: the highest load bin whose mean latency still meets the SLO. The estimate
is only trusted with enough samples, and never moves more than a factor of two away from
the policy value, so one odd hour cannot halve or double a fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Tolerance that keeps float noise (e.g. 400.0000001 / 200) from adding a replica.
_EPS = 1e-9


def replicas_for(load: float, per_replica: float) -> int:
    """Replicas needed to serve ``load`` when each serves ``per_replica``. Pure.

    Args:
        load: Load in the capacity unit per second (>= 0).
        per_replica: Load one replica serves within the SLO (> 0).

    Returns:
        ``ceil(load / per_replica)``, 0 for no load.
    """
    if load <= 0:
        return 0
    return max(0, math.ceil(load / per_replica - _EPS))


@dataclass
class LearnedCapacity:
    """Per-replica capacity estimated from observed samples (state kept by the controller).

    Samples are binned by per-replica load (``bin_width`` as a fraction of the policy
    value); the estimate is the upper edge of the highest bin, among bins with enough
    samples, whose mean latency meets the SLO while every lower bin also meets it.
    """

    policy_value: float
    slo_seconds: float
    min_samples: int
    bin_fraction: float = 0.1
    max_bins: int = 40
    _sums: dict[int, list[float]] = field(default_factory=dict)

    def add(self, *, per_replica_load: float, latency: float) -> None:
        """Record one sample (ignored if not finite or non-positive)."""
        if not (math.isfinite(per_replica_load) and math.isfinite(latency)):
            return
        if per_replica_load <= 0 or latency <= 0:
            return
        width = self.policy_value * self.bin_fraction
        index = min(int(per_replica_load / width), self.max_bins - 1)
        acc = self._sums.setdefault(index, [0.0, 0.0])
        acc[0] += latency
        acc[1] += 1.0

    @property
    def samples(self) -> int:
        """Number of samples recorded."""
        return int(sum(acc[1] for acc in self._sums.values()))

    def estimate(self) -> float | None:
        """The learned capacity, or ``None`` while there is not enough evidence. Pure."""
        if self.samples < self.min_samples:
            return None
        per_bin = max(3, self.min_samples // 20)
        width = self.policy_value * self.bin_fraction
        best: float | None = None
        for index in sorted(self._sums):
            total, count = self._sums[index]
            if count < per_bin:
                continue
            if total / count > self.slo_seconds:
                break
            best = (index + 1) * width
        if best is None:
            return None
        return min(max(best, self.policy_value / 2), self.policy_value * 2)
