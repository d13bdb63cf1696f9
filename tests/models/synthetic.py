"""Seeded synthetic request-load series for the forecaster tests and benchmarks.

Real traces cannot ship with the repository, so the tests need a generator whose shape
(daily cycle, slow growth, load-dependent noise) is close enough to vLLM request load.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from models.series import Series

DAY = 86400.0
T0 = 1_700_000_000.0  # a fixed, midnight-aligned epoch keeps runs reproducible


def load_curve(
    t: NDArray[np.float64],
    *,
    base: float = 40.0,
    amplitude: float = 25.0,
    trend_per_day: float = 1.0,
    weekly: float = 0.0,
) -> NDArray[np.float64]:
    """Noise-free expected load (req/s) at unix times `t`.

    Args:
        t: Unix timestamps.
        base: Mean load at T0.
        amplitude: Height of the daily cycle (peak minus mean).
        trend_per_day: Linear growth of the mean, req/s per day.
        weekly: Fractional dip on the last two days of each week (0 = none).

    Returns:
        The expected load, always > 0 for the default arguments.
    """
    days = (t - T0) / DAY
    phase = 2.0 * np.pi * days
    daily = np.sin(phase - np.pi / 2.0) + 0.35 * np.sin(2.0 * phase + 0.4)
    level = base + trend_per_day * days
    weekend = np.where(np.floor(days) % 7 >= 5, 1.0 - weekly, 1.0)
    return np.maximum((level + amplitude * daily / 1.35) * weekend, 0.5)


def synthetic_series(
    *,
    days: float,
    step: float = 300.0,
    seed: int = 0,
    noise: float = 0.08,
    base: float = 40.0,
    amplitude: float = 25.0,
    trend_per_day: float = 1.0,
    weekly: float = 0.0,
) -> Series:
    """A noisy load series: trend + daily season + level-dependent Gaussian noise.

    Args:
        days: Length of the series in days.
        step: Seconds between points.
        seed: Seed of the noise generator.
        noise: Noise standard deviation as a fraction of the expected load.
        base: Mean load at the start.
        amplitude: Height of the daily cycle.
        trend_per_day: Linear growth in req/s per day.
        weekly: Fractional weekend dip (0 = no weekly pattern).

    Returns:
        A Series starting at T0 with `days * 86400 / step` points, clipped at 0.
    """
    n = round(days * DAY / step)
    t = T0 + step * np.arange(n, dtype=np.float64)
    mean = load_curve(t, base=base, amplitude=amplitude, trend_per_day=trend_per_day, weekly=weekly)
    rng = np.random.default_rng(seed)
    values = np.maximum(mean * (1.0 + noise * rng.standard_normal(n)), 0.0)
    return Series(start=T0, step=step, values=values)
