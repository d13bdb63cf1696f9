"""Forecasting per target: the forecaster, its saved fit state and shadow scoring.

:mod:`~autoscaler.forecasting.forecaster` fits and refits a target's models (from
:mod:`models`), :mod:`~autoscaler.forecasting.fit_state` encodes the fitted state kept across
restarts, and :mod:`~autoscaler.forecasting.shadow` scores every forecast once its buckets
are observed.
"""
