"""The cost knob: which forecast quantile to provision for, from what each mistake costs.

Provisioning for a forecast is a newsvendor problem. Capacity is bought ahead (a GPU node
takes a whole cold start to arrive) against an uncertain load ``D``; each replica of
capacity that turns out to be missing costs ``Cu`` (underage), each replica that turns out
to be idle costs ``Co`` (overage). For a provisioned level ``x`` the expected cost is
``Cu * E[(D - x)+] + Co * E[(x - D)+]``; its derivative is ``-Cu * P(D > x) + Co * P(D <= x)``,
zero where ``P(D <= x) = Cu / (Cu + Co)``. So the expected cost is minimised by
provisioning the forecast quantile (the *critical fractile*)

    q* = Cu / (Cu + Co)

The operator states the two costs in the units they budget in, per replica-hour:

* one replica of capacity **short for an hour** is 60 under-provisioned minutes:
  ``Cu = 60 * under_provisioned_minute_cost``;
* one replica of capacity **idle for an hour** is ``gpus_per_replica`` idle GPU-hours:
  ``Co = gpus_per_replica * idle_gpu_hour_cost``.

Both costs are per the same hour, so only their ratio matters and any currency works.

The result is clamped to ``[QUANTILE_MIN, QUANTILE_MAX]``, the bounds of
``forecast.quantile`` in the policy schema (which reads them from here, so they cannot
drift apart):

* below the median (0.5) the plan would be for less than the typical load and the
  reactive guards would do the sizing; the forecaster always predicts the median anyway,
  and the trend guard only raises quantiles above it;
* above 0.999 the interval tail rests on a handful of forecast errors (see
  ``models/intervals.py``: empirical up to ~0.995, a Gaussian guess beyond), so a higher
  level buys no real extra safety, just a wider guess.

Pure functions, no policy types: the loader, the docs and other tools import them.
"""

from __future__ import annotations

import math

#: Lowest forecast quantile the policy accepts (the median).
QUANTILE_MIN = 0.5
#: Highest forecast quantile the policy accepts.
QUANTILE_MAX = 0.999
#: Under-provisioned minutes in one replica-hour of missing capacity.
MINUTES_PER_HOUR = 60.0


def _check_cost(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return number


def _check_gpus(gpus_per_replica: int) -> int:
    if isinstance(gpus_per_replica, bool) or int(gpus_per_replica) != gpus_per_replica or gpus_per_replica < 1:
        raise ValueError(f"gpus_per_replica must be a whole number >= 1; got {gpus_per_replica!r}")
    return int(gpus_per_replica)


def newsvendor_quantile(
    under_provisioned_minute_cost: float, idle_gpu_hour_cost: float, gpus_per_replica: int = 1
) -> float:
    """The forecast quantile that minimises expected cost (newsvendor critical fractile).

    ``q* = 60 u / (60 u + g c)`` with ``u`` the cost of one under-provisioned minute, ``c``
    the cost of one idle GPU-hour and ``g`` the GPUs per replica; clamped to
    ``[QUANTILE_MIN, QUANTILE_MAX]`` (see the module docstring for why). Pure.

    Args:
        under_provisioned_minute_cost: Cost of one minute with one replica of capacity too
            few (>= 0).
        idle_gpu_hour_cost: Cost of one GPU idle for an hour (>= 0; not both zero).
        gpus_per_replica: GPUs one serving replica holds (>= 1).

    Returns:
        The quantile to provision for, in ``[QUANTILE_MIN, QUANTILE_MAX]``.

    Raises:
        ValueError: On a negative or non-finite cost, both costs zero, or fewer than one GPU.
    """
    u = _check_cost("under_provisioned_minute_cost", under_provisioned_minute_cost)
    c = _check_cost("idle_gpu_hour_cost", idle_gpu_hour_cost)
    g = _check_gpus(gpus_per_replica)
    under = MINUTES_PER_HOUR * u
    over = g * c
    if under + over <= 0:
        raise ValueError("under_provisioned_minute_cost and idle_gpu_hour_cost must not both be zero")
    # 1 / (1 + over / under) rather than under / (under + over): each operation is then
    # monotone in ``under`` under IEEE rounding, so a dearer miss never yields a lower level.
    q = 1.0 / (1.0 + over / under) if under > 0 else 0.0
    return min(max(q, QUANTILE_MIN), QUANTILE_MAX)


def cost_ratio_for_quantile(quantile: float, gpus_per_replica: int = 1) -> float:
    """The ratio ``under_provisioned_minute_cost / idle_gpu_hour_cost`` a quantile implies.

    The inverse of :func:`newsvendor_quantile` inside the clamp: ``u / c = q g / (60 (1 - q))``.
    Useful to read an existing ``forecast.quantile`` as a statement about costs (the
    default 0.9 with one GPU per replica says an under-provisioned minute costs 0.15 idle
    GPU-hours). Pure.

    Args:
        quantile: A forecast quantile in (0, 1).
        gpus_per_replica: GPUs one serving replica holds (>= 1).

    Returns:
        The cost ratio (>= 0).

    Raises:
        ValueError: If ``quantile`` is not in (0, 1) or ``gpus_per_replica`` < 1.
    """
    q = float(quantile)
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1); got {quantile!r}")
    g = _check_gpus(gpus_per_replica)
    return q * g / (MINUTES_PER_HOUR * (1.0 - q))
