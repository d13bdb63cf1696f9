"""Exception types of the forecasters, so callers can fall back without catching everything."""

from __future__ import annotations


class ForecastError(Exception):
    """Base class of every error raised by the models package."""


class InsufficientHistory(ForecastError):
    """Raised when a series has fewer finite points than a model needs to fit."""


class ModelFitError(ForecastError):
    """Raised when estimation fails or a model is used before it was fitted."""
