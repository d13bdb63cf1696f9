"""The policy schema: what operators write in the ConfigMap, with units and defaults.

Every field is declared once, with its documentation, unit and bounds (see
:func:`autoscaler.policy.fields.spec`); the loader, the error messages and the generated
policy reference all read these declarations. Defaults describe the seed deployment:
vLLM serving gpt2 on one T4 per replica, ~250 req/s at saturation, a 200 ms mean
latency SLO and a ~15 minute GPU node cold start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from autoscaler.policy.cost import QUANTILE_MAX, QUANTILE_MIN, newsvendor_quantile
from autoscaler.policy.fields import spec


def _model_types() -> frozenset[str]:
    from models.registry import MODEL_TYPES

    return MODEL_TYPES


def _candidate_types() -> frozenset[str]:
    return _model_types() - {"auto"}


SEASONS = {"daily": 86400.0, "weekly": 604800.0}


@dataclass(frozen=True)
class SLO:
    """The latency objective the capacity is sized for."""

    latency_seconds: float = spec(
        0.2,
        doc="Latency objective per request (mean end-to-end by default).",
        unit="s",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=3600.0,
    )
    latency_signal: Literal["mean", "quantile"] = spec(
        "mean",
        doc="Which observed latency the reactive guard compares to the objective.",
    )
    latency_quantile: float = spec(
        0.95,
        doc="Quantile of vllm:e2e_request_latency_seconds used when the signal is 'quantile'.",
        minimum=0.5,
        maximum=0.999,
    )


@dataclass(frozen=True)
class Capacity:
    """How much load one serving replica handles within the SLO."""

    unit: Literal["requests", "tokens"] = spec(
        "requests",
        doc="Load unit: arrival rate in requests/s, or prompt+generated tokens/s.",
    )
    per_replica: float = spec(
        200.0,
        doc="Load one replica serves while meeting the SLO (keep headroom below saturation).",
        unit="unit/s",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1e9,
    )
    learn: bool = spec(
        True,
        doc="Learn per-replica capacity at the SLO from observed, queue-free (per-replica load, latency) "
        "samples; perReplica is the prior until the load has been there.",
    )
    learn_min_samples: int = spec(
        120,
        doc="Samples needed before a learned capacity replaces perReplica.",
        minimum=10,
        maximum=1_000_000,
    )


@dataclass(frozen=True)
class Forecast:
    """Which forecaster predicts load, at which resolution, and how cautiously."""

    model: str = spec(
        "auto",
        doc="Forecaster type; 'auto' picks the best candidate by rolling-origin backtest.",
        choices=_model_types,
    )
    quantile: float = spec(
        0.9,
        doc="Quantile of the peak load over each window capacity is sized for (higher = safer, more "
        "GPU-hours); derived from the target's cost section when that is set.",
        minimum=QUANTILE_MIN,
        maximum=QUANTILE_MAX,
    )
    seasons: tuple[Literal["daily", "weekly"], ...] = spec(
        ("daily", "weekly"),
        doc="Seasonal periods the models may use; a seasonal model (or candidate) needs at least one.",
    )
    candidates: tuple[str, ...] = spec(
        ("naive", "direct", "seasonal_naive", "holt_winters", "stl_arima", "linear_trend"),
        doc="Models 'auto' chooses from (at least one, each once); naive (the last value) keeps the choice "
        "no worse than persistence, direct learns what beats it at each step ahead.",
        choices=_candidate_types,
    )
    resolution_seconds: int = spec(
        300,
        doc="Bucket width of the load series the models are fitted on.",
        unit="s",
        minimum=60,
        maximum=3600,
    )
    refit_interval_seconds: int = spec(
        3600,
        doc="How often parameters are re-estimated; between refits models only update state.",
        unit="s",
        minimum=60,
        maximum=7 * 86400,
    )
    trend_guard_points: int = spec(
        12,
        doc="Also size for a linear trend over this many recent buckets (upper quantiles only); 0 = off.",
        minimum=0,
        maximum=288,
    )
    history_days: float = spec(
        14.0,
        doc="History loaded on start-up and kept for fitting.",
        unit="d",
        minimum=0.05,
        maximum=90.0,
    )

    def check(self) -> list[tuple[str, str]]:
        """Cross-field checks: seasons fit the resolution; models that need a season have one.

        ``candidates`` must name each model once and at least one; a seasonal ``model``
        (or seasonal candidates of ``auto``) with ``seasons: []`` is refused, because it
        would silently run as another model.
        """
        from models.registry import SEASONAL_TYPES

        problems = []
        for i, name in enumerate(self.seasons):
            if SEASONS[name] % self.resolution_seconds:
                problems.append(
                    (f"seasons[{i}]", f"{name} is not a whole number of {self.resolution_seconds} s buckets")
                )
        if len(set(self.seasons)) != len(self.seasons):
            problems.append(("seasons", "duplicate season"))
        if not self.candidates:
            problems.append(("candidates", "at least one model is required"))
        first: dict[str, int] = {}
        for i, model in enumerate(self.candidates):
            if model in first:
                problems.append((f"candidates[{i}]", f"{model} is already listed at candidates[{first[model]}]"))
            first.setdefault(model, i)
        if not self.seasons:
            if self.model in SEASONAL_TYPES:
                problems.append(("seasons", f"model {self.model} needs at least one season (daily or weekly)"))
            elif self.model == "auto":
                seasonal = [c for c in self.candidates if c in SEASONAL_TYPES]
                if seasonal:
                    problems.append((
                        "seasons",
                        f"candidates {', '.join(seasonal)} need at least one season: list a season or "
                        "remove them from candidates",
                    ))  # fmt: skip
        return problems


@dataclass(frozen=True)
class ColdStart:
    """Phases of bringing up a serving replica on a brand-new GPU node (policy defaults).

    Measured lead times replace these once enough samples exist (``learn``).
    """

    node_provision_seconds: float = spec(
        300.0, doc="Cloud VM boot until the OS is up.", unit="s", minimum=0, maximum=7200
    )
    node_services_seconds: float = spec(
        60.0, doc="containerd and kubelet start, node registers.", unit="s", minimum=0, maximum=7200
    )
    gpu_driver_seconds: float = spec(
        180.0,
        doc="GPU operator: driver, toolkit, device plugin; node advertises nvidia.com/gpu.",
        unit="s",
        minimum=0,
        maximum=7200,
    )
    image_pull_seconds: float = spec(
        360.0, doc="Pulling the serving image onto a node that does not have it.", unit="s", minimum=0, maximum=7200
    )
    model_load_seconds: float = spec(
        60.0,
        doc="Container start, model load and readiness probe on a node with the image.",
        unit="s",
        minimum=0,
        maximum=7200,
    )
    cluster_autoscaler_delay_seconds: float = spec(
        10.0, doc="Scan interval before cluster-autoscaler reacts to a pending pod.", unit="s", minimum=0, maximum=600
    )
    learn: bool = spec(True, doc="Replace these phases with measured P90 lead times once enough samples exist.")
    learn_min_samples: int = spec(
        5, doc="Pod start-ups needed before measured lead times are used.", minimum=1, maximum=10000
    )

    @property
    def node_ready_seconds(self) -> float:
        """From a pending pod to a schedulable GPU node."""
        return (
            self.cluster_autoscaler_delay_seconds
            + self.node_provision_seconds
            + self.node_services_seconds
            + self.gpu_driver_seconds
        )

    @property
    def pod_start_on_warm_node_seconds(self) -> float:
        """A replica on a node that already has the image (e.g. after preempting a placeholder)."""
        return self.model_load_seconds

    @property
    def pod_start_on_fresh_node_seconds(self) -> float:
        """A replica on a ready node that must still pull the image."""
        return self.image_pull_seconds + self.model_load_seconds

    @property
    def total_seconds(self) -> float:
        """A replica for which a node must be created."""
        return self.node_ready_seconds + self.pod_start_on_fresh_node_seconds


@dataclass(frozen=True)
class ScalingRule:
    """Rate limit for one direction, as the HPA's behavior policies (most permissive wins)."""

    max_pods: int = spec(4, doc="Replicas that may be added/removed per period.", minimum=0, maximum=100000)
    max_percent: float = spec(
        100.0,
        doc="Percent of the replicas at the period's start that may change per period.",
        unit="%",
        minimum=0,
        maximum=10000,
    )
    period_seconds: float = spec(60.0, doc="Length of the rate-limit period.", unit="s", minimum=1, maximum=86400)


@dataclass(frozen=True)
class Scaling:
    """Bounds, rate limits and stabilisation of serving replicas."""

    min_replicas: int = spec(
        1,
        doc="Never fewer serving replicas; 0 allows scale-to-zero in forecast-idle hours (see idleForecastFraction).",
        minimum=0,
        maximum=100000,
    )
    max_replicas: int = spec(
        12, doc="Never more serving replicas; also caps serving + placeholders.", minimum=1, maximum=100000
    )
    scale_up: ScalingRule = spec(ScalingRule(), doc="Scale-up rate limit.")
    scale_down: ScalingRule = spec(
        ScalingRule(max_pods=2, max_percent=20.0, period_seconds=60.0),
        doc="Scale-down rate limit.",
    )
    scale_down_stabilization_seconds: float = spec(
        600.0,
        doc="Scale down only to the highest recommendation of this window.",
        unit="s",
        minimum=0,
        maximum=86400,
    )
    stale_after_seconds: float = spec(
        180.0,
        doc="Metrics older than this count as missing (no scale-down on them).",
        unit="s",
        minimum=10,
        maximum=86400,
    )
    idle_forecast_fraction: float = spec(
        0.25,
        doc="With minReplicas 0: a forecast quantile at most this fraction of one replica's capacity is idle "
        "(needs no replica, no node); scale to zero needs it over a whole node cold start.",
        minimum=0.0,
        maximum=1.0,
    )
    idle_observed_fraction: float = spec(
        0.01,
        doc="With minReplicas 0: fresh observed load at most this fraction of one replica's capacity counts as "
        "no traffic; scale to zero also needs it and an empty queue.",
        minimum=0.0,
        maximum=1.0,
    )

    def check(self) -> list[tuple[str, str]]:
        """minReplicas must not exceed maxReplicas."""
        if self.min_replicas > self.max_replicas:
            return [("minReplicas", f"must not exceed maxReplicas ({self.max_replicas}); got {self.min_replicas}")]
        return []


@dataclass(frozen=True)
class Placeholders:
    """Capacity held ahead of demand so the node autoscaler adds GPU nodes early.

    Two backends hold it (``backend``); the amount, bounds and stabilisation are the same
    for both, so switching the backend changes how nodes are held, not how many.
    """

    enabled: bool = spec(True, doc="Request GPU nodes ahead of demand with placeholder pods.")
    backend: Literal["pods", "capacityBuffer"] = spec(
        "pods",
        doc="How the capacity is held: pods (a low-priority Deployment <deployment>-capacity whose pods "
        "pre-pull the serving image and are preempted) or capacityBuffer (a cluster-autoscaler CapacityBuffer "
        "autoscaling.x-k8s.io/v1beta1 with its PodTemplate: nodes held without pods, no preemption, no "
        "pre-pull; needs the CRD and CA's --capacity-buffer-* flags or Karpenter).",
    )
    max: int = spec(8, doc="Most placeholder pods at once.", minimum=0, maximum=100000)
    priority_class: str = spec(
        "gpu-placeholder", doc="PriorityClass of the placeholder pods (created if missing).", format="priority-class"
    )
    priority: int = spec(
        -10,
        doc="Value of that PriorityClass; serving pods (priority 0) preempt them.",
        minimum=-1_000_000_000,
        maximum=-1,
    )
    gpus_per_pod: int = spec(
        1,
        doc="Serving replicas' worth of accelerators per placeholder pod: each accelerator resource a "
        "serving pod requests (nvidia.com/gpu, a MIG slice such as nvidia.com/mig-1g.10gb, amd.com/gpu; "
        "nvidia.com/gpu: 1 if none) times this.",
        minimum=1,
        maximum=64,
    )
    scale_down_stabilization_seconds: float = spec(
        900.0,
        doc="Release placeholder capacity only to the highest total of this window.",
        unit="s",
        minimum=0,
        maximum=86400,
    )
    image: str | None = spec(
        None, doc="Image of the placeholder pods; null = the target's own image, so it is pre-pulled.", format="image"
    )


@dataclass(frozen=True)
class Metrics:
    """Per-target overrides for the metrics source."""

    arrival_rate_query: str | None = spec(
        None,
        doc="PromQL returning one series: the arrival rate (e.g. a gateway's request counter rate).",
        format="promql",
    )
    rate_window: str = spec(
        "2m",
        doc="Range of rate() windows (at least 2x the scrape interval).",
        format="duration",
        minimum=5,
        maximum=3600,
    )
    accelerator: Literal["nvidia", "nvidia-mig", "amd"] = spec(
        "nvidia",
        doc="Accelerator kind of the serving pods, which decides the GPU signals read: nvidia (whole GPUs: DCGM "
        "GPU_UTIL and GR_ENGINE_ACTIVE), nvidia-mig (MIG slices, nvidia.com/mig-*: DCGM reports GR_ENGINE_ACTIVE "
        "per GPU instance and no GPU_UTIL, so gpu_utilization is not applicable) or amd (amd.com/gpu: no DCGM, "
        "no GPU query). Match the resource the pod template requests.",
    )


@dataclass(frozen=True)
class Cost:
    """The cost knob: what a missing minute and an idle GPU-hour cost (see ``autoscaler.policy.cost``).

    Only the ratio matters; the defaults (0.15 and 1) give the default quantile 0.9 with one
    GPU per replica, so an empty ``cost: {}`` changes nothing until a value is stated.
    """

    under_provisioned_minute: float = spec(
        0.15,
        doc="Cost of one minute with one replica of capacity too few (requests at risk of missing the SLO).",
        unit="cost/min",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1e9,
    )
    idle_gpu_hour: float = spec(
        1.0,
        doc="Cost of one GPU-hour provisioned but idle, in the same currency.",
        unit="cost/GPU-h",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1e9,
    )

    def quantile(self, gpus_per_replica: int) -> float:
        """The forecast quantile these costs ask for: the clamped newsvendor critical fractile."""
        return newsvendor_quantile(self.under_provisioned_minute, self.idle_gpu_hour, gpus_per_replica)


@dataclass(frozen=True)
class Target:
    """One vLLM Deployment the controller scales."""

    namespace: str = spec(doc="Namespace of the Deployment.", format="dns-label")
    deployment: str = spec(doc="Name of the serving Deployment.", format="deployment-name")
    model_name: str | None = spec(
        None, doc="vLLM --served-model-name to filter metrics by; null = all.", format="model-name"
    )
    mode: Literal["dry-run", "enforce"] = spec(
        "dry-run",
        doc="dry-run logs every decision and changes nothing but the status annotation (and undoes "
        "what enforce left: the HPA's own minReplicas, placeholders to 0).",
    )
    hpa: Literal["coexist", "refuse"] = spec(
        "coexist",
        doc="With an HPA on the same Deployment: raise its minReplicas (coexist; a KEDA ScaledObject "
        "owning it gets its minReplicaCount raised instead) or write nothing (refuse).",
    )
    slo: SLO = spec(SLO(), doc="Latency objective.")
    capacity: Capacity = spec(Capacity(), doc="Per-replica capacity.")
    forecast: Forecast = spec(Forecast(), doc="Forecaster settings.")
    cost: Cost | None = spec(
        None,
        doc="Cost knob: sets forecast.quantile to the newsvendor quantile 60u / (60u + g c) (u = "
        "underProvisionedMinute, c = idleGpuHour, g = placeholders.gpusPerPod), clamped to [0.5, 0.999], "
        "and, once a day of history is known, sizes at the peak quantile whose replay of the target's last "
        "week costs least (idle GPU-hours plus missed requests at these prices); "
        "null = use forecast.quantile. Setting both in one place is rejected.",
    )
    cold_start: ColdStart = spec(ColdStart(), doc="Cold-start phases.")
    scaling: Scaling = spec(Scaling(), doc="Replica bounds and limits.")
    placeholders: Placeholders = spec(Placeholders(), doc="Placeholder pods.")
    metrics: Metrics = spec(Metrics(), doc="Metric query overrides.")

    def __post_init__(self) -> None:
        # The cost knob is applied here, once, so everything downstream (decide, the
        # forecaster, the simulator) keeps reading ``forecast.quantile`` and needs no change;
        # ``cost`` stays on the target for logs and docs.
        if self.cost is not None:
            quantile = self.cost.quantile(self.placeholders.gpus_per_pod)
            if quantile != self.forecast.quantile:
                object.__setattr__(self, "forecast", dataclasses.replace(self.forecast, quantile=quantile))

    @property
    def key(self) -> str:
        """``namespace/deployment``: the target's identity everywhere."""
        return f"{self.namespace}/{self.deployment}"


@dataclass(frozen=True)
class Policy:
    """The whole document: loop settings and the list of targets."""

    targets: tuple[Target, ...] = spec(doc="Deployments to scale.")
    loop_interval_seconds: float = spec(30.0, doc="Seconds between control cycles.", unit="s", minimum=5, maximum=3600)
    fit_budget_seconds: float = spec(
        1.0,
        doc="CPU seconds per cycle, the whole cycle counted: forecasting gets what reading metrics, seeding, "
        "deciding and saving the fitted state leave. Owed work comes first (updates on completed buckets, "
        "then restores of saved fits and seasonal-naive stand-ins for targets without a forecast; these may "
        "bring the cycle to at least 1 s, and an update is never deferred past its bucket); what is left goes "
        "to due fits (never-fitted targets, then peak calibrations owed since their model's refit, then the "
        "most overdue), each only if its expected cost fits with a fifth of the budget to spare for what no "
        "estimate foresees (a garbage collection, a larger decide pass). Refits that do not fit "
        "wait for the next cycles, and targets without a model use the seasonal-naive fallback meanwhile. "
        "0 disables refits, not forecasting.",
        unit="s",
        minimum=0.0,
        maximum=3600,
    )

    def check(self) -> list[tuple[str, str]]:
        """At least one target, and no Deployment listed twice."""
        problems: list[tuple[str, str]] = []
        if not self.targets:
            problems.append(("targets", "at least one target is required"))
        seen: dict[str, int] = {}
        for i, target in enumerate(self.targets):
            if target.key in seen:
                problems.append((f"targets[{i}]", f"{target.key} is already listed at targets[{seen[target.key]}]"))
            seen.setdefault(target.key, i)
        return problems

    def target(self, key: str) -> Target:
        """The target with identity ``namespace/deployment``; KeyError if absent."""
        for target in self.targets:
            if target.key == key:
                return target
        raise KeyError(key)

