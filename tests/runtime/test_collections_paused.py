"""Cyclic garbage collection is paused while the saved fit state is decoded, and resumes after.

Why: at 1,000 targets decoding the saved state allocates hundreds of thousands of
containers that all stay alive, and the full collections they triggered were 0.6 s of
the first cycle after a restart. The controller runs on the shared fakes with a store
holding saved states; ``decode`` (the controller's, wrapped) records whether collection
was enabled while it ran.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence

import pytest

from autoscaler.forecasting import fit_state
from autoscaler.forecasting.fit_state import Decoded, InMemoryFitStore
from autoscaler.policy.schema import Policy, Target
from autoscaler.runtime import controller as controller_module
from autoscaler.runtime.controller import Controller, collections_paused
from tests.fakes import FakeCluster, FakeMetrics, StepClock

START = 1_700_000_000.0


@pytest.fixture
def collecting() -> Iterator[None]:
    """Collection enabled for the test (as in production), whatever the runner's setting."""
    enabled = gc.isenabled()
    gc.enable()
    yield
    if not enabled:
        gc.disable()


def test_the_decode_of_the_saved_state_runs_with_collection_paused(
    monkeypatch: pytest.MonkeyPatch, collecting: None
) -> None:
    """The first cycle decodes the store's parts without collection; it is enabled again after."""
    seen: list[bool] = []

    def recording(parts: Sequence[bytes]) -> Decoded:
        seen.append(gc.isenabled())
        return fit_state.decode(parts)

    monkeypatch.setattr(controller_module, "decode", recording)
    target = Target(namespace="llm", deployment="vllm")
    store = InMemoryFitStore()
    store.save(fit_state.encode({target.key: {"decisions": []}}))
    controller = Controller(
        policy=Policy(targets=(target,)),
        metrics=FakeMetrics(),
        cluster=FakeCluster(),
        clock=StepClock(START),
        fit_store=store,
        monotonic=StepClock(0.0),
        cpu_clock=StepClock(0.0),
    )
    (result,) = controller.reconcile_once().results
    assert result.decision is not None
    assert seen == [False]
    assert gc.isenabled()


def test_collection_resumes_after_the_block_also_when_it_raises(collecting: None) -> None:
    """Paused inside; enabled again on the way out, an exception included."""
    with pytest.raises(RuntimeError), collections_paused():
        assert not gc.isenabled()
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_a_collection_disabled_before_stays_disabled() -> None:
    """The block restores what it found: it does not turn collection on for a caller that had it off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        if enabled:
            gc.enable()
