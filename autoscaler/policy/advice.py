"""Advice on a valid policy: settings that load fine but will not do what the operator likely wants.

Why: validation (:mod:`autoscaler.policy.loader`) rejects what cannot work; some valid
combinations still quietly lose a feature. The common one is scale-to-zero: at zero replicas
vLLM exports no metrics, so without ``metrics.arrivalRateQuery`` (a gateway's request rate)
nothing reactive can wake the target, only the forecast. Others: a scale-up rate limit of
zero pods and zero percent (scale-up frozen: 40 % SLO attainment in simulation), and a
Deployment name so long that its pods' names are cut short. Advice is reported, never enforced:
``autoscaler validate-policy`` prints it after "valid", and the running controller logs it
(``config_advice``) each time it accepts a policy. Pure: no IO.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.policy.schema import Policy


@dataclass(frozen=True)
class Advice:
    """One piece of advice: where, a machine-readable code, and what to do."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.code})"


#: Longest Deployment name whose pods keep it whole: a ReplicaSet names its pods
#: ``<deployment>-<hash>-<5 characters>`` from a prefix cut at 58 characters, and the
#: pod-template hash takes up to 10.
POD_NAME_SAFE_LENGTH = 58 - len("-") - 10 - len("-")


def advise(policy: Policy) -> list[Advice]:
    """Every piece of advice on ``policy``, in target order."""
    found: list[Advice] = []
    for i, target in enumerate(policy.targets):
        at = f"targets[{i}]"
        up = target.scaling.scale_up
        if up.max_pods == 0 and up.max_percent == 0:
            found.append(
                Advice(
                    f"{at}.scaling.scaleUp",
                    "ScaleUpFrozen",
                    "maxPods and maxPercent are both 0, so no replica can ever be added, whatever the load or "
                    "the forecast (placeholder pods still reserve nodes, but never serve); allow at least one "
                    "pod per period, e.g. maxPods: 1",
                )
            )
        if len(target.deployment) > POD_NAME_SAFE_LENGTH:
            found.append(
                Advice(
                    f"{at}.deployment",
                    "PodNamesTruncated",
                    f"the name is {len(target.deployment)} characters; pod names of a Deployment longer than "
                    f"{POD_NAME_SAFE_LENGTH} may be cut short by its ReplicaSet, and then its vLLM metrics "
                    "(selected by pod name) are not found and every decision holds; use a shorter name",
                )
            )
        if target.scaling.min_replicas != 0:
            continue
        if target.metrics.arrival_rate_query is None:
            found.append(
                Advice(
                    f"{at}.metrics.arrivalRateQuery",
                    "NoReactiveWakeUpAtZero",
                    "minReplicas is 0 but at zero replicas vLLM exports no metrics, so only the forecast can "
                    "wake this target; set arrivalRateQuery to a request rate measured in front of vLLM "
                    "(e.g. the gateway's) for the reactive wake-up on the first request",
                )
            )
        if target.hpa == "coexist":
            found.append(
                Advice(
                    f"{at}.hpa",
                    "HPAFloorKeepsOneReplica",
                    "minReplicas is 0 with hpa: coexist; if an HPA scales this Deployment its minReplicas is "
                    "kept at 1 or more (0 needs the alpha HPAScaleToZero gate), so the target never reaches "
                    "zero; remove the HPA to allow scale-to-zero",
                )
            )
    return found
