"""Direct regression: persistence when there is nothing to learn, better when there is."""

from __future__ import annotations

import numpy as np
import pytest

from models.direct import DirectRegression
from models.series import Series

DAY = 288


def mae_ratio(values: np.ndarray, *, h: int = 3, train: int = 8 * DAY) -> float:
    """Out-of-sample MAE h steps ahead relative to persistence, fitted once on ``train`` points."""
    model = DirectRegression(horizon=4, season=DAY)
    model.fit(Series(start=0.0, step=300.0, values=values[:train]))
    errors, naive = [], []
    for origin in range(train, values.size - h, 7):
        model.update(Series(start=0.0, step=300.0, values=values[: origin + 1]))
        forecast = model.predict(4, (0.5,)).mean[h - 1]
        errors.append(abs(forecast - values[origin + h]))
        naive.append(abs(values[origin] - values[origin + h]))
    return float(np.mean(errors) / np.mean(naive))


def test_a_random_walk_gets_persistence() -> None:
    """Nothing beats the last value on a random walk; the shrunk fit stays there (within 5 %)."""
    rng = np.random.default_rng(1)
    walk = 1000 + np.cumsum(rng.normal(0, 10, 10 * DAY))
    assert mae_ratio(walk) == pytest.approx(1.0, abs=0.05)


def test_noise_around_a_daily_shape_is_smoothed_and_the_shape_used() -> None:
    """A daily shape under white noise: much better than the last (noisy) value."""
    rng = np.random.default_rng(2)
    t = np.arange(10 * DAY)
    values = 1000 + 400 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 60, t.size)
    assert mae_ratio(values) < 0.8


def test_short_history_fits_without_the_season() -> None:
    """A few hours are enough; yesterday joins once a day and a bit is known."""
    model = DirectRegression(horizon=4, season=DAY)
    model.fit(Series(start=0.0, step=300.0, values=np.linspace(100, 200, 60)))
    assert not model.uses_season
    prediction = model.predict(4, (0.5, 0.9))
    assert prediction.mean[0] == pytest.approx(200, rel=0.1)


@pytest.mark.parametrize(("horizon", "season"), [(0, None), (4, 1)])
def test_bad_arguments_are_refused(horizon: int, season: int | None) -> None:
    with pytest.raises(ValueError, match="must be"):
        DirectRegression(horizon=horizon, season=season)
