"""The parts of autoscaler.kube that need no API server: file policy source, selectors, HPA clamp, pods.

Why: these rules (keep the last good file policy, select exactly the serving pods, never
raise an HPA's maxReplicas, count placeholders warm/cold/pending) are cheap to pin down
exhaustively without a control plane; the cluster tests cover them end to end once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from autoscaler.errors import ConfigError, PolicyRejected
from autoscaler.kube.cluster import label_selector
from autoscaler.kube.hpa import HpaInfo, clamp_min_replicas, find_hpa
from autoscaler.kube.placeholders import PodCounts, classify, desired_deployment, template_hash
from autoscaler.kube.policy_source import FilePolicySource

from .conftest import make_target, serving_deployment

GOOD = "targets:\n  - namespace: llm\n    deployment: web\n    scaling: {minReplicas: %d}\n"


def _touch_later(path: Path, text: str, *, bump_ns: int) -> None:
    """Write ``text`` and move the mtime forward (coarse file-system clocks must not hide the change)."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


def test_file_source_keeps_last_good_policy(tmp_path: Path) -> None:
    """A changed file starts a generation; an invalid or missing one is reported and the old policy kept."""
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD % 1)
    rejected: list[PolicyRejected] = []
    source = FilePolicySource(path, on_rejected=rejected.append)
    assert source.current()[1] == 1

    _touch_later(path, GOOD % 2, bump_ns=1_000_000_000)
    policy, generation = source.current()
    assert generation == 2 and policy.targets[0].scaling.min_replicas == 2
    assert source.current()[1] == 2  # unchanged file: nothing re-read

    _touch_later(path, GOOD % -1, bump_ns=2_000_000_000)
    assert source.current() == (policy, 2)
    assert [e.path for e in rejected[0].errors] == ["targets[0].scaling.minReplicas"]

    path.unlink()
    assert source.current() == (policy, 2)
    assert len(rejected) == 2 and "cannot read" in rejected[1].errors[0].reason
    _touch_later(path, GOOD % 3, bump_ns=3_000_000_000)
    assert source.current()[1] == 3


def test_file_source_start_up_errors(tmp_path: Path) -> None:
    """A missing or invalid file at start-up is a ConfigError (the CLI exits non-zero)."""
    with pytest.raises(ConfigError, match="cannot read"):
        FilePolicySource(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: []\n")
    with pytest.raises(PolicyRejected):
        FilePolicySource(bad)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"matchLabels": {"app": "vllm", "tier": "gpu"}}, "app=vllm,tier=gpu"),
        (
            {
                "matchLabels": {"app": "vllm"},
                "matchExpressions": [
                    {"key": "model", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "zone", "operator": "NotIn", "values": ["x"]},
                    {"key": "gpu", "operator": "Exists"},
                ],
            },
            "app=vllm,model in (a,b),!canary,zone notin (x),gpu",
        ),
    ],
)
def test_label_selector(selector: dict[str, Any], expected: str) -> None:
    """Deployment selectors become list selectors with the same meaning."""
    assert label_selector(selector) == expected


def test_empty_selector_is_refused() -> None:
    """An empty selector would count every pod of the namespace: refused."""
    with pytest.raises(ValueError, match="empty selector"):
        label_selector({})


def test_hpa_found_by_scale_target_and_clamped() -> None:
    """The HPA on the Deployment is found; minReplicas stays within [1, maxReplicas] with a note."""
    def hpa(name: str, target: str, kind: str = "Deployment", api: str = "apps/v1") -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "llm", "resourceVersion": "7"},
            "spec": {"scaleTargetRef": {"kind": kind, "name": target, "apiVersion": api}, "maxReplicas": 5},
        }

    items = [hpa("other", "chat"), hpa("rs", "web", kind="ReplicaSet"), hpa("old", "web", api="extensions/v1beta1")]
    found = find_hpa(items, "web")
    assert found == HpaInfo(name="old", namespace="llm", min_replicas=1, max_replicas=5, resource_version="7")
    assert find_hpa(items[:2], "web") is None
    assert clamp_min_replicas(3, found) == (3, None)
    value, note = clamp_min_replicas(9, found)
    assert value == 5 and note is not None and "maxReplicas 5" in note
    assert clamp_min_replicas(0, found)[0] == 1


def test_placeholder_pods_classified() -> None:
    """Ready = warm, bound but not ready = cold, unbound = pending; terminating pods do not count."""
    def pod(node: str | None, phase: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
        return {
            "metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z" if deleting else None},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }

    pods = [
        pod("n1", "Running", True),
        pod("n2", "Pending", False),
        pod("n3", "Running", False),
        pod(None, "Pending", False),
        pod("n1", "Running", True, deleting=True),
        pod("n4", "Failed", False),
    ]
    assert classify(pods) == PodCounts(warm=1, cold=2, pending=1)


def test_placeholder_template_follows_policy_image_and_hash_is_stable() -> None:
    """With placeholders.image the image's own entrypoint runs; the template hash changes only with the template."""
    serving = serving_deployment("web", 1)
    serving["metadata"]["uid"] = "u-1"
    target = make_target("llm")
    default = desired_deployment(target, serving, replicas=2)
    assert default["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "infinity"]
    custom = desired_deployment(
        make_target("llm", placeholders={"image": "registry.k8s.io/pause:3.9"}), serving, replicas=2
    )
    container = custom["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.k8s.io/pause:3.9" and "command" not in container
    again = desired_deployment(target, serving, replicas=5)
    assert template_hash(default["spec"]["template"]) == template_hash(again["spec"]["template"])
    assert template_hash(default["spec"]["template"]) != template_hash(custom["spec"]["template"])
