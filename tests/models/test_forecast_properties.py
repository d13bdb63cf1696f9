"""Property tests: cheap models never return non-finite or negative forecasts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Forecaster, LinearTrend, Naive, SeasonalNaive, Series

SEASON = 6
MODELS: list[Callable[[], Forecaster]] = [Naive, lambda: SeasonalNaive(SEASON), lambda: LinearTrend(8)]

load_values = st.lists(
    st.one_of(st.floats(min_value=0.0, max_value=1e6), st.just(float("nan"))),
    min_size=SEASON + 2,
    max_size=60,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(values=load_values, horizon=st.integers(min_value=1, max_value=12), pick=st.integers(0, 2))
def test_cheap_models_forecast_finite_non_negative(values: list[float], horizon: int, pick: int) -> None:
    """For any non-negative series with gaps, forecasts are finite and >= 0 (or refused)."""
    series = Series(start=0.0, step=60.0, values=np.array(values))
    model = MODELS[pick]()
    if np.isfinite(series.values).sum() < model.min_history():
        return
    prediction = model.fit(series).predict(horizon, (0.05, 0.5, 0.9, 0.995))
    arrays = [prediction.mean, *prediction.quantiles.values()]
    for array in arrays:
        assert array.shape == (horizon,)
        assert np.isfinite(array).all() and (array >= 0).all()
