"""Advice on valid policies: scale-to-zero without a wake-up signal, or held at one by an HPA.

Why: both load fine and silently lose the feature the operator asked for; the advice must
name the field and reach the operator through ``validate-policy`` and the controller's log.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoscaler.cli.main import main
from autoscaler.kube.policy_source import FilePolicySource
from autoscaler.policy import load_policy
from autoscaler.policy.advice import advise
from tests.kube.test_policy_source import RecordingLog

HEAD = "targets:\n"
WEB = "  - namespace: llm\n    deployment: web\n"


def _policy(*targets: str) -> str:
    return HEAD + "".join(targets)


@pytest.mark.parametrize(
    ("extra", "codes"),
    [
        ("", []),
        ("    scaling: {minReplicas: 2}\n", []),
        ("    scaling: {minReplicas: 0}\n", ["NoReactiveWakeUpAtZero", "HPAFloorKeepsOneReplica"]),
        ("    scaling: {minReplicas: 0}\n    hpa: refuse\n", ["NoReactiveWakeUpAtZero"]),
        (
            "    scaling: {minReplicas: 0}\n    hpa: refuse\n    metrics: {arrivalRateQuery: 'sum(rate(gw[1m]))'}\n",
            [],
        ),
        (
            "    scaling: {minReplicas: 0}\n    metrics: {arrivalRateQuery: 'sum(rate(gw[1m]))'}\n",
            ["HPAFloorKeepsOneReplica"],
        ),
        ("    scaling: {scaleUp: {maxPods: 0, maxPercent: 0}}\n", ["ScaleUpFrozen"]),
        ("    scaling: {scaleUp: {maxPods: 0, maxPercent: 10}}\n", []),  # 10 % of a few replicas rounds up
        ("    scaling: {scaleUp: {maxPods: 1, maxPercent: 0}}\n", []),
        ("    scaling: {scaleDown: {maxPods: 0, maxPercent: 0}}\n", []),  # never scaling down is a choice
    ],
)
def test_advice_codes(extra: str, codes: list[str]) -> None:
    """Each rule fires exactly when its settings combine, and names the field to change."""
    found = advise(load_policy(_policy(WEB + extra)))
    assert [a.code for a in found] == codes
    paths = {
        "NoReactiveWakeUpAtZero": "targets[0].metrics.arrivalRateQuery",
        "HPAFloorKeepsOneReplica": "targets[0].hpa",
        "ScaleUpFrozen": "targets[0].scaling.scaleUp",
    }
    assert [a.path for a in found] == [paths[c] for c in codes]


def test_advice_follows_defaults_and_names_the_target_index() -> None:
    """minReplicas 0 set under ``defaults`` is advised on every target it reaches, at that target's index."""
    text = (
        "defaults:\n  scaling: {minReplicas: 0}\n  hpa: refuse\n"
        + HEAD
        + WEB
        + "  - namespace: llm\n    deployment: chat\n    metrics: {arrivalRateQuery: 'sum(rate(gw[1m]))'}\n"
        + "  - namespace: llm\n    deployment: batch\n    scaling: {minReplicas: 1}\n"
    )
    assert [a.path for a in advise(load_policy(text))] == ["targets[0].metrics.arrivalRateQuery"]


def test_validate_policy_prints_advice_and_still_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Advice is printed after "valid", one line each; it never fails validation."""
    path = tmp_path / "p.yaml"
    path.write_text(_policy(WEB + "    scaling: {minReplicas: 0}\n    hpa: refuse\n"))
    assert main(["validate-policy", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("valid (1 target(s): llm/web)")
    assert len(out) == 2 and out[1].startswith("advice: targets[0].metrics.arrivalRateQuery: minReplicas is 0")
    assert out[1].endswith("(NoReactiveWakeUpAtZero)")


def test_controller_logs_advice_for_each_accepted_policy(tmp_path: Path) -> None:
    """The policy source logs ``config_advice`` with the path and code for each generation it accepts."""
    path = tmp_path / "p.yaml"
    path.write_text(_policy(WEB + "    scaling: {minReplicas: 0}\n    hpa: refuse\n"))
    log = RecordingLog()
    source = FilePolicySource(path, log=log)
    assert source.current()[1] == 1
    (advice,) = log.named("config_advice")
    assert advice["path"] == "targets[0].metrics.arrivalRateQuery" and advice["code"] == "NoReactiveWakeUpAtZero"
    assert advice["generation"] == 1

    path.write_text(_policy(WEB + "    scaling: {minReplicas: 1}\n"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert source.current()[1] == 2
    assert len(log.named("config_accepted")) == 2 and len(log.named("config_advice")) == 1


def test_long_deployment_names_are_advised() -> None:
    """A name longer than 46 characters loads (the API server accepts it) but its pods' names may be cut."""
    ok = "d" * 46
    long = "d" * 47
    assert advise(load_policy(_policy(f"  - namespace: llm\n    deployment: {ok}\n"))) == []
    (advice,) = advise(load_policy(_policy(f"  - namespace: llm\n    deployment: {long}\n")))
    assert advice.code == "PodNamesTruncated" and advice.path == "targets[0].deployment"
