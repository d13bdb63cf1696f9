"""When each slice of the fitted state is encoded: one save spread over its interval.

Why: encoding every target's state at once cost 0.6-1.0 s of CPU at 1,000 targets, in a
single cycle that also ran its decide pass (~0.6 s there), so every save interval a
cycle went over its 1-s budget or starved the forecasts of that cycle. The targets are
split into *groups* by a stable hash of their key, and a cycle encodes at most one group
that is due: a save costs a group's share per cycle, and each group is encoded again
once per interval. The store is then handed the whole set (the latest encoding of every
group), so what it holds is always complete; the ConfigMap store writes only the parts
that changed, one per cycle that saves.

Pure bookkeeping: the controller encodes and writes, this decides which group and when.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

#: Targets per group: ~0.1 s of encoding each (0.6-1.0 s per 1,000 targets).
GROUP_TARGETS = 125
#: Most groups; with one part per group at most 8 parts, the ConfigMap store's names.
MAX_GROUPS = 8


def group_count(targets: int, *, interval: float, loop: float) -> int:
    """Groups for ``targets``: one per `GROUP_TARGETS`, at most `MAX_GROUPS`, and at most
    one per cycle of the interval (so each group is still encoded once per interval)."""
    per_interval = int(interval // loop) if loop > 0 else MAX_GROUPS
    return max(1, min(MAX_GROUPS, math.ceil(targets / GROUP_TARGETS), per_interval))


def group_of(key: str, groups: int) -> int:
    """The group of target ``key``: stable across restarts and processes (CRC-32, not ``hash``)."""
    return zlib.crc32(key.encode()) % groups


@dataclass
class SaveRounds:
    """The groups, when each is due, and each group's latest encoding.

    Attributes:
        interval: Seconds between two encodings of the same group (the save interval).
        groups: Groups now (0 before the first `plan`).
        due: When each group is next due.
        encoded: Each group's latest parts, and the number of targets in them.
    """

    interval: float = 0.0
    groups: int = 0
    due: list[float] = field(default_factory=list)
    encoded: dict[int, tuple[list[bytes], int]] = field(default_factory=dict)

    def plan(self, targets: int, *, interval: float, loop: float, now: float) -> None:
        """Regroup when the group count or the interval changes (the first call too).

        The groups are then staggered over one interval from ``now`` and all encoded
        again before the next save: an encoding of the old grouping would put a target
        in two groups, or in none.
        """
        groups = group_count(targets, interval=interval, loop=loop)
        if groups == self.groups and interval == self.interval:
            return
        self.groups, self.interval = groups, interval
        self.encoded = {}
        self.due = [now + (i + 1) * self.interval / groups for i in range(groups)]

    def next_due(self, now: float) -> int | None:
        """The most overdue group, or ``None`` when no group is due at ``now``."""
        if not self.due:
            return None
        group = min(range(self.groups), key=self.due.__getitem__)
        return group if self.due[group] <= now else None

    def record(self, group: int, parts: list[bytes], targets: int, now: float) -> None:
        """``group`` was encoded at ``now`` into ``parts`` holding ``targets`` states."""
        self.encoded[group] = (parts, targets)
        self.due[group] = now + self.interval

    def complete(self) -> tuple[list[bytes], int] | None:
        """Every group's latest parts in group order and the targets in them; ``None``
        until each group of the current grouping has been encoded once."""
        if len(self.encoded) < self.groups:
            return None
        parts = [part for group in range(self.groups) for part in self.encoded[group][0]]
        return parts, sum(count for _, count in self.encoded.values())
