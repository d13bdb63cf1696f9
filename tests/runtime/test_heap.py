"""The controller hands freed heap back to the OS once an hour (glibc ``malloc_trim``).

Why: without it, resident memory crept up by fragmentation over a soak while the live
heap stayed flat (see :mod:`autoscaler.runtime.heap`). The controller runs on the shared
fakes for two virtual hours and a half; the trim is recorded instead of run.
"""

from __future__ import annotations

import pytest

from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime import heap
from autoscaler.runtime.controller import Controller
from tests.fakes import FakeCluster, FakeMetrics, StepClock

START = 1_700_000_000.0


def test_the_controller_trims_the_heap_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cycles every 30 s for 2.5 h: trims at 1 h and 2 h after the first cycle, none before."""
    trims: list[float] = []
    now = [START]

    def recording() -> bool:
        trims.append(now[0])
        return True

    monkeypatch.setattr(heap, "trim_heap", recording)
    controller = Controller(
        policy=Policy(targets=(Target(namespace="llm", deployment="vllm"),)),
        metrics=FakeMetrics(),
        cluster=FakeCluster(),
        clock=StepClock(START),
        monotonic=StepClock(0.0),
        cpu_clock=StepClock(0.0),
    )
    for i in range(300):
        now[0] = START + 30.0 * i
        controller.reconcile_once(now[0])
    assert [t - START for t in trims] == [heap.TRIM_INTERVAL_SECONDS, 2 * heap.TRIM_INTERVAL_SECONDS]


def test_trim_heap_runs_on_glibc() -> None:
    """Debian's glibc has malloc_trim: the trim runs (a C library without it returns False)."""
    assert heap.trim_heap() is True


def test_frozen_start_up_objects_leave_later_garbage_collectable() -> None:
    """What exists at the call (the imports) is out of the collector's scans; a reference
    cycle made afterwards is still found and freed by the next collection."""

    class Node:
        partner: object = None

    import gc
    import weakref

    before = gc.get_freeze_count()
    try:
        frozen = heap.freeze_startup_objects()
        assert frozen > before and frozen >= 1_000  # this test process's imports, at least
        a, b = Node(), Node()
        a.partner, b.partner = b, a
        dead = weakref.ref(a)
        del a, b
        gc.collect()
        assert dead() is None, "a cycle made after the freeze is collected"
    finally:
        gc.unfreeze()  # the other tests run with the usual collector
