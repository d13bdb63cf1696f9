"""Load forecasters behind one fit/update/predict interface."""

from models.auto import AutoSelector
from models.base import Forecaster, Prediction
from models.errors import ForecastError, InsufficientHistory, ModelFitError
from models.evaluation import (
    BacktestResult,
    interval_coverage,
    pinball_loss,
    rolling_origin_backtest,
)
from models.gaps import fill_gaps
from models.holt_winters import HoltWinters
from models.linear import LinearTrend
from models.naive import Naive, SeasonalNaive
from models.registry import MODEL_TYPES, build_forecaster
from models.series import Series, resample
from models.stl_arima import StlArima

__all__ = [
    "MODEL_TYPES",
    "AutoSelector",
    "BacktestResult",
    "ForecastError",
    "Forecaster",
    "HoltWinters",
    "InsufficientHistory",
    "LinearTrend",
    "ModelFitError",
    "Naive",
    "Prediction",
    "SeasonalNaive",
    "Series",
    "StlArima",
    "build_forecaster",
    "fill_gaps",
    "interval_coverage",
    "pinball_loss",
    "resample",
    "rolling_origin_backtest",
]
