"""The saved fit state: versioned, split under the object size limit, ignored (never a crash) when incompatible."""

from __future__ import annotations

import dataclasses
import functools
import gc
import gzip
import json
from typing import Any

import numpy as np
import pytest
from statsmodels.tsa.arima.model import ARIMA

from autoscaler.core.types import DecisionRecord
from autoscaler.forecasting.fit_state import (
    MAX_PART_BYTES,
    STATE_VERSION,
    InMemoryFitStore,
    decision_records,
    decision_rows,
    decode,
    encode,
    export_peaks,
)
from autoscaler.forecasting.forecaster import TargetForecaster
from autoscaler.offline.sim.adapters import SimClusterPort, SimMetrics, TrafficRecord, VirtualClock
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster
from autoscaler.policy.schema import Forecast, Policy, Target
from autoscaler.runtime import controller as controller_module
from autoscaler.runtime.controller import Controller
from models.peaks import PeakModel
from models.series import Series

DAY = 86400.0
START = 1_700_006_400.0


def history(days: float = 7.0, seed: int = 1) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(int(days * 288)) * 300.0
    return Series(
        start=START - days * DAY,
        step=300.0,
        values=1000 + 400 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 30, t.size),
    )


@functools.cache
def fitted() -> TargetForecaster:
    """One target fitted once for the module (a selection costs ~0.5 s); tests only read it."""
    fc = TargetForecaster(Target(namespace="llm", deployment="d"), horizon_seconds=1500)
    fc.seed(history())
    fc.refresh(START, allow_fit=True)
    return fc


def test_a_state_round_trips_and_restores_the_same_forecast() -> None:
    fc = fitted()
    state = fc.export_state()
    assert state is not None and state["selection"]["selected"] == "holt_winters"
    restored_state = decode(encode({"llm/d": state})).states["llm/d"]
    other = TargetForecaster(fc.target, horizon_seconds=1500)
    other.seed(history())
    assert other.restore_state(restored_state) is None
    other.refresh(START, allow_fit=False)
    assert other.prediction is not None and fc.prediction is not None
    assert other.prediction.model == fc.prediction.model == "auto(holt_winters)+trend"
    assert other.last_fit == fc.last_fit
    assert not other.fit_due(START + 60.0)  # the cadence goes on from the saved fit
    np.testing.assert_allclose(other.prediction.quantile(0.9), fc.prediction.quantile(0.9), rtol=1e-9)
    assert other.prediction.peaks is not None and fc.prediction.peaks is not None
    np.testing.assert_allclose(other.prediction.peaks[0.9], fc.prediction.peaks[0.9], rtol=1e-9)


def test_a_restore_without_known_history_is_queued_but_not_owed() -> None:
    """A saved state waits while the target's metrics are missing (all history unknown): it is
    queued, but not owed, so the controller's saves, which yield to owed restores, go on."""
    state = fitted().export_state()
    assert state is not None
    fc = TargetForecaster(fitted().target, horizon_seconds=1500)
    empty = history()
    fc.seed(Series(start=empty.start, step=empty.step, values=np.full(len(empty), np.nan)))
    assert fc.restore_state(state) is None
    fc.refresh(START, allow_fit=False)
    assert fc.restoring and not fc.restore_owed and fc.prediction is None
    known = TargetForecaster(fitted().target, horizon_seconds=1500)
    known.seed(history())
    assert known.restore_state(state) is None
    assert known.restoring and known.restore_owed
    known.refresh(START, allow_fit=False)
    assert not known.restoring and not known.restore_owed and known.prediction is not None


def test_a_state_from_other_settings_or_version_is_ignored_with_a_reason() -> None:
    state = fitted().export_state()
    assert state is not None
    changed = Target(namespace="llm", deployment="d", forecast=dataclasses.replace(Forecast(), quantile=0.95))
    fc = TargetForecaster(changed, horizon_seconds=1500)
    fc.seed(history())
    assert "settings changed" in (fc.restore_state(state) or "")
    assert "version" in (fc.restore_state({**state, "version": STATE_VERSION + 1}) or "")
    assert "malformed" in (
        TargetForecaster(Target(namespace="llm", deployment="d"), horizon_seconds=1500).restore_state(
            {**state, "last_fit": "x"}
        )
        or ""
    )


def test_a_state_that_does_not_rebuild_falls_back_to_the_stand_in() -> None:
    state = fitted().export_state()
    assert state is not None
    broken = {**state, "selection": {**state["selection"], "selected": "prophet"}}
    fc = TargetForecaster(Target(namespace="llm", deployment="d"), horizon_seconds=1500)
    fc.seed(history())
    assert fc.restore_state(broken) is None
    fc.refresh(START, allow_fit=False)
    assert fc.prediction is not None and fc.prediction.model.startswith("seasonal_naive")
    assert "does not rebuild" in (fc.restore_ignored or "")


def test_parts_stay_under_the_limit_and_hold_every_target() -> None:
    rng = np.random.default_rng(2)
    states = {f"ns/t{i}": {"weights": rng.normal(size=100).tolist()} for i in range(120)}
    parts = encode(states, max_part_bytes=16 * 1024)
    assert len(parts) > 1 and all(len(p) <= 16 * 1024 for p in parts)
    assert decode(parts).states == states
    assert encode(states) == encode(dict(reversed(states.items())))  # deterministic
    assert all(len(p) <= MAX_PART_BYTES for p in encode(states))


def test_a_target_too_large_or_not_finite_is_left_out_not_fatal() -> None:
    states = {
        "ns/big": {"w": np.random.default_rng(3).normal(size=20000).tolist()},
        "ns/nan": {"w": [float("nan")]},
        "ns/ok": {"w": [1.0]},
    }
    assert decode(encode(states, max_part_bytes=4096)).states == {"ns/ok": {"w": [1.0]}}


def test_unreadable_or_foreign_parts_are_ignored_with_reasons() -> None:
    good = encode({"ns/a": {"x": 1}})
    future = gzip.compress(json.dumps({"version": STATE_VERSION + 1, "targets": {"ns/b": {}}}).encode())
    bomb = gzip.compress(b"[" * 10_000 + b"]" * 10_000)
    out = decode([b"not gzip", future, bomb, gzip.compress(b'{"targets": 3}'), *good])
    assert out.states == {"ns/a": {"x": 1}}
    assert len(out.ignored) == 4
    assert any("version" in r for r in out.ignored)


@functools.cache
def fitted_stl_arima() -> TargetForecaster:
    """One STL-ARIMA target fitted once for the module; tests only read it."""
    target = Target(namespace="llm", deployment="d", forecast=dataclasses.replace(Forecast(), model="stl_arima"))
    fc = TargetForecaster(target, horizon_seconds=1500)
    fc.seed(history())
    fc.refresh(START, allow_fit=True)
    return fc


def test_an_stl_arima_state_restores_its_coefficients_without_the_estimation(monkeypatch: Any) -> None:
    """The ARIMA estimation is most of an STL-ARIMA fit: a restore installs the saved coefficients."""
    fc = fitted_stl_arima()
    state = fc.export_state()
    assert state is not None and fc.prediction is not None and fc.prediction.model.startswith("stl_arima")
    assert state["arima"]["order"] == [1, 1, 1] and len(state["arima"]["ar"]) == 1
    estimations = []
    real_fit = ARIMA.fit

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        estimations.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(ARIMA, "fit", counted)  # the class stl_arima fits with
    other = TargetForecaster(fc.target, horizon_seconds=1500)
    other.seed(history())
    assert other.restore_state(decode(encode({"llm/d": state})).states["llm/d"]) is None
    other.refresh(START, allow_fit=False)
    assert estimations == []
    assert other.prediction is not None and other.prediction.model == fc.prediction.model
    np.testing.assert_allclose(other.prediction.quantile(0.9), fc.prediction.quantile(0.9), rtol=1e-9)
    np.testing.assert_allclose(other.prediction.mean, fc.prediction.mean, rtol=1e-9)


@pytest.mark.parametrize(
    "arima",
    [
        {"order": [2, 1, 1], "ar": [0.1, 0.2], "ma": [0.3], "mean": 0.0},  # another order
        {"order": [1, 1, 1], "ar": [], "ma": [0.3], "mean": 0.0},  # too few coefficients
        {"order": [1, 1, 1], "ar": [1e400], "ma": [0.3], "mean": 0.0},  # not finite (inf from JSON)
        {"order": [1, 1, 1], "ar": ["x"], "ma": [0.3], "mean": 0.0},
        {"order": [1, 1, 1], "ar": [0.1], "ma": [0.3], "mean": "0"},
        {"order": [1, 1, 1], "ar": [0.1], "ma": [0.3]},
        "1,1,1",
    ],
)
def test_malformed_arima_coefficients_fall_back_to_the_stand_in_then_a_fit(arima: object) -> None:
    state = fitted_stl_arima().export_state()
    assert state is not None
    fc = TargetForecaster(fitted_stl_arima().target, horizon_seconds=1500)
    fc.seed(history())
    assert fc.restore_state({**state, "arima": arima}) is None
    fc.refresh(START, allow_fit=False)
    assert fc.prediction is not None and not fc.prediction.model.startswith("stl_arima")
    assert "does not rebuild" in (fc.restore_ignored or "")
    fc.refresh(START + 300.0, allow_fit=True)
    assert fc.prediction is not None and fc.prediction.model.startswith("stl_arima")


def test_a_save_encodes_without_cyclic_garbage_collection(monkeypatch: Any) -> None:
    """The export's containers are freed by reference counting; collections of the whole heap on
    the way cost a third of a save at 1,000 targets. Collection is back on after, also on an error."""
    c = Controller(
        policy=Policy(targets=(Target(namespace="llm", deployment="d"),)),
        metrics=SimMetrics(
            traffic=TrafficRecord(
                start=START, dt=10.0, arrivals=np.ones(1), latency=np.ones(1), queue=np.zeros(1), count=1
            ),
            history=history(),
        ),
        cluster=SimClusterPort(SimCluster(phases=ClusterPhases()), VirtualClock(START)),
        clock=VirtualClock(START),
        fit_store=InMemoryFitStore(),
    )
    seen: list[bool] = []

    def recording(states: Any, **kwargs: Any) -> list[bytes]:
        seen.append(gc.isenabled())
        return encode(states, **kwargs)

    monkeypatch.setattr(controller_module, "encode", recording)
    assert gc.isenabled()
    c.save_fit_state(START)
    assert seen == [False] and gc.isenabled()

    def failing(states: Any, **kwargs: Any) -> list[bytes]:
        raise RuntimeError("boom")

    monkeypatch.setattr(controller_module, "encode", failing)
    with pytest.raises(RuntimeError):
        c.save_fit_state(START)
    assert gc.isenabled()


def test_pending_peaks_are_saved_to_six_significant_digits_as_before() -> None:
    """The vectorised rounding writes the same numbers as formatting each with ``.6g``."""
    rng = np.random.default_rng(4)
    model = PeakModel(levels=(0.5, 0.9))
    model.coefficients[(0, 0.5)] = (("forecast",), np.array([0.1, 1.0]))
    values = np.concatenate([10.0 ** rng.uniform(-8, 9, 300) * rng.choice([-1, 1], 300), [0.0, 5e-320, 1e308]])
    for i, chunk in enumerate(np.array_split(values, 12)):
        model.pending[START + 300.0 * i] = {0.5: chunk, 0.9: chunk[::-1].copy()}
    saved = export_peaks(model)["pending"]
    expected = [
        [start, [[q, [float(f"{v:.6g}") for v in served[q]]] for q in sorted(served)]]
        for start, served in sorted(model.pending.items())
    ]
    assert saved == expected
    assert json.dumps(saved) == json.dumps(expected)


def test_saved_decisions_round_trip_up_to_now() -> None:
    """Rows as saved come back as the same records; records after ``now`` make the list empty."""
    records = [DecisionRecord(START, 2, 3, 2, 1), DecisionRecord(START + 30.0, 3, 3, 3, 0)]
    rows = decision_rows(records)
    assert rows == [[START, 2, 3, 2, 1], [START + 30.0, 3, 3, 3, 0]]
    assert decision_records(json.loads(json.dumps(rows)), START + 30.0) == records
    assert decision_records(rows, START + 29.0) == []


@pytest.mark.parametrize(
    "saved",
    [None, {"a": 1}, [[START, 1, 1, 1]], [[START, 1, 1, 1, "1"]], [[START, 1, 1, -1, 0]], [[START, 1, 1, 1, 0], "x"]],
    ids=["missing", "not a list", "short row", "not a number", "negative", "one bad row"],
)
def test_malformed_saved_decisions_are_dropped_whole(saved: Any) -> None:
    assert decision_records(saved, START) == []
