"""A refit leaves the peak calibration's refit to a fit of its own, so no single fit holds both."""

from __future__ import annotations

import numpy as np

from autoscaler.forecasting.forecaster import TargetForecaster
from autoscaler.policy.schema import Target
from models.series import Series

STEP = 300.0
T0 = 1_700_006_400.0


def calibrated() -> TargetForecaster:
    """Three days of daily load: the stand-in fits the peak regression, then the configured model fits."""
    fc = TargetForecaster(Target(namespace="ns", deployment="d"), horizon_seconds=1800.0)
    t = np.arange(3 * 288) * STEP
    rng = np.random.default_rng(3)
    values = 100 + 50 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 5, t.size)
    fc.seed(Series(start=T0 - len(t) * STEP, step=STEP, values=values))
    fc.refresh(T0, allow_fit=False)  # the stand-in, with the first peak calibration
    assert fc.peak_model is not None and fc.peak_model.coefficients
    fc.refresh(T0 + 30, allow_fit=True)  # the configured model
    return fc


def test_the_peak_calibration_is_due_right_after_the_models_refit_and_selects_nothing() -> None:
    fc = calibrated()
    assert fc.calibration_due and fc.fit_due(T0 + 60) and not fc.next_fit_selects()
    assert fc.prediction is not None and fc.prediction.peaks is not None, "priced by the previous calibration"
    last_fit = fc.last_fit
    fc.refresh(T0 + 60, allow_fit=True)
    assert not fc.calibration_due and not fc.fit_due(T0 + 90)
    assert fc.last_fit == last_fit, "the model's cadence is unchanged"
    assert fc.fit_seconds.get(False) is not None, "its cost is budgeted as a refit's"


def test_a_calibration_waiting_for_budget_keeps_the_forecast_served() -> None:
    fc = calibrated()
    before = fc.prediction
    fc.refresh(T0 + 60, allow_fit=False)
    assert fc.calibration_due and fc.fit_deferred
    assert fc.prediction is before


def test_a_restored_targets_model_refit_keeps_the_known_cost_for_its_calibration() -> None:
    """The cheap model-only refit after a restore must not lower what the calibration is admitted by."""
    fc = calibrated()
    fc.refresh(T0 + 60, allow_fit=True)  # the calibration
    restored = TargetForecaster(fc.target, horizon_seconds=1800.0)
    assert fc.series is not None
    restored.seed(fc.series)
    state = fc.export_state()
    assert state is not None
    state["fit_seconds"] = [5.0, None]  # a saved refit cost far above any real one
    assert restored.restore_state(state) is None
    restored.refresh(T0 + 90, allow_fit=False)  # installs the saved fit
    restored.refresh(T0 + 90 + 3600, allow_fit=True)  # the model's refit alone
    assert restored.calibration_due
    assert restored.fit_seconds[False] == 5.0
