"""The steps ``decide`` runs, each a small pure function (after the HPA's normalisation).

A step takes the frozen :class:`~autoscaler.core.steps.context.Context` of one decision
and the value so far, and returns the new value and, when it has something to say, the
:class:`~autoscaler.core.types.Step` that records why. :func:`run` threads a value through
a tuple of them and keeps the trail. ``serving`` holds the two serving pipelines (the
recommendation, then its normalisation), ``placeholders`` the placeholder one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

from autoscaler.core.steps.context import Context
from autoscaler.core.types import Step

#: One pipeline step: ``(context, value) -> (value, step or None)``. Pure.
StepFn: TypeAlias = Callable[[Context, int], tuple[int, Step | None]]


def run(ctx: Context, value: int, steps: Sequence[StepFn]) -> tuple[int, tuple[Step, ...]]:
    """Thread ``value`` through ``steps`` in order; return the result and the recorded trail. Pure."""
    trail: list[Step] = []
    for step in steps:
        value, recorded = step(ctx, value)
        if recorded is not None:
            trail.append(recorded)
    return value, tuple(trail)
