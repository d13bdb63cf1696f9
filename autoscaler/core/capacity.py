"""Load -> replicas, and learning the per-replica capacity from observed samples.

The policy states how much load one replica serves within the SLO. When ``learn`` is on,
:class:`LearnedCapacity` estimates it from (per-replica load, latency) pairs the controller
sees each cycle: the highest load bin whose mean latency still meets the SLO. The estimate
is only trusted with enough samples, and never moves more than a factor of two away from
the policy value, so one odd hour cannot halve or double a fleet. :func:`learner_for` and
:func:`learn_from` are the learner's life in the controller (made, kept across policy
changes, fed a cycle's metrics), here so that they are tested without one. No IO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from autoscaler.core.types import MetricsSnapshot
from autoscaler.policy.schema import Target

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


#: Queued requests per ready replica below which a sample shows the service-time curve.
#: With a queue, latency also holds the wait for earlier overload (it stays high while
#: the backlog drains at a load the replica serves well), so it says nothing about the
#: capacity at the load seen now.
QUEUE_FREE_PER_REPLICA = 1.0
#: A sample's latency counts at most this many SLOs in its bin's mean. On bursty load a
#: burst shorter than the 1-minute rate window queues (latency of seconds to a minute)
#: while the averaged rate it is recorded at looks ordinary, and the queue may be gone by
#: the time the gauge is read; unclipped, a few such samples condemn a bin whose load
#: replicas serve well most of the time (on Alibaba lora the estimate fell to half the
#: prior for two days, then stayed 20 % under it). Clipped at two SLOs, with the other
#: samples near the SLO or below, a bin is bad about when most of its samples are: a
#: robust verdict in place of the mean, without a per-sample store.
LATENCY_CLIP_SLOS = 2.0


@dataclass
class LearnedCapacity:
    """Per-replica capacity at the SLO, estimated from observed samples (state kept by the controller).

    Queue-free samples are binned by per-replica load (``bin_fraction`` of the policy
    value per bin). A bin is good when it has enough samples and their mean latency (each
    clipped at `LATENCY_CLIP_SLOS` SLOs, so a few burst-queued samples cannot outvote the
    rest) meets the SLO; the estimate is the highest per-replica load observed in the highest good bin
    below the first bad one. So it is never more than what was seen to work: the policy
    value stands until the load has been there (a prior, not a guess), and a curve whose
    latency rises with load (the SLO met at 60 % of saturation, say) pulls it down to
    where the reactive guard and the sizing aim at the same number.
    """

    policy_value: float
    slo_seconds: float
    min_samples: int
    bin_fraction: float = 0.05
    max_bins: int = 80
    #: Bin index -> [latency sum, count, highest per-replica load seen].
    _bins: dict[int, list[float]] = field(default_factory=dict)

    def add(self, *, per_replica_load: float, latency: float, waiting_per_replica: float = 0.0) -> None:
        """Record one sample (ignored if not finite, non-positive or taken with a queue)."""
        if not (math.isfinite(per_replica_load) and math.isfinite(latency) and math.isfinite(waiting_per_replica)):
            return
        if per_replica_load <= 0 or latency <= 0 or waiting_per_replica > QUEUE_FREE_PER_REPLICA:
            return
        width = self.policy_value * self.bin_fraction
        index = min(int(per_replica_load / width), self.max_bins - 1)
        acc = self._bins.setdefault(index, [0.0, 0.0, 0.0])
        acc[0] += min(latency, LATENCY_CLIP_SLOS * self.slo_seconds)
        acc[1] += 1.0
        acc[2] = max(acc[2], per_replica_load)

    @property
    def samples(self) -> int:
        """Number of samples recorded."""
        return int(sum(acc[1] for acc in self._bins.values()))

    def estimate(self) -> float | None:
        """The learned capacity, or ``None`` while there is not enough evidence. Pure."""
        if self.samples < self.min_samples:
            return None
        per_bin = max(3, self.min_samples // 20)
        best: float | None = None
        for index in sorted(self._bins):
            total, count, highest = self._bins[index]
            if count < per_bin:
                continue
            if total / count > self.slo_seconds:
                break
            best = highest
        if best is None:
            return None
        return min(max(best, self.policy_value / 2), self.policy_value * 2)

    def export_bins(self) -> list[list[float]]:
        """The samples as ``[bin, latency sum, count, highest load]`` rows, to survive a restart."""
        return [[float(i), *acc] for i, acc in sorted(self._bins.items())]

    def restore_bins(self, rows: object) -> bool:
        """Replace the samples with rows from `export_bins`; False (nothing changed) if malformed."""
        if not isinstance(rows, list):
            return False
        bins: dict[int, list[float]] = {}
        for row in rows:
            if not (isinstance(row, list) and len(row) == 4 and all(isinstance(v, int | float) for v in row)):
                return False
            index, total, count, highest = (float(v) for v in row)
            if not all(math.isfinite(v) and v >= 0 for v in row) or not 0 <= index < self.max_bins:
                return False
            bins[int(index)] = [total, count, highest]
        self._bins = bins
        return True


def learner_for(target: Target, current: LearnedCapacity | None = None) -> LearnedCapacity | None:
    """The capacity learner ``target`` keeps: ``current`` while learning stays on.

    A new learner when learning is on and there is none yet; ``None`` when it is off. A
    learner is kept as it is (its samples, and the policy value and SLO it was made
    with) across any other change of the target's policy, so a policy reload does not
    throw away what was learnt.
    """
    if not target.capacity.learn:
        return None
    if current is not None:
        return current
    return LearnedCapacity(
        policy_value=target.capacity.per_replica,
        slo_seconds=target.slo.latency_seconds,
        min_samples=target.capacity.learn_min_samples,
    )


def learn_from(
    capacity: LearnedCapacity, snapshot: MetricsSnapshot, *, ready: int, signal: Literal["mean", "quantile"]
) -> None:
    """Add a cycle's (fresh) metrics as one sample: the load and queue per ready replica, the ``signal`` latency.

    Skipped without a load, a latency, the queue gauge or a ready replica: without the
    queue a sample cannot be told apart from a backlog draining.
    """
    latency = snapshot.latency_mean if signal == "mean" else snapshot.latency_quantile
    if snapshot.load is None or latency is None or snapshot.waiting is None or ready <= 0:
        return
    capacity.add(per_replica_load=snapshot.load / ready, latency=latency, waiting_per_replica=snapshot.waiting / ready)
