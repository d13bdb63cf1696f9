"""Policy schema and loader (what operators put in the ConfigMap)."""

from autoscaler.policy.loader import build_policy, load_policy, load_policy_file
from autoscaler.policy.schema import (
    SLO,
    Capacity,
    ColdStart,
    Cost,
    Forecast,
    Metrics,
    Placeholders,
    Policy,
    Scaling,
    ScalingRule,
    Target,
)

__all__ = [
    "SLO",
    "Capacity",
    "ColdStart",
    "Cost",
    "Forecast",
    "Metrics",
    "Placeholders",
    "Policy",
    "Scaling",
    "ScalingRule",
    "Target",
    "build_policy",
    "load_policy",
    "load_policy_file",
]
