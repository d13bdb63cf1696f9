"""The shipped policy ConfigMaps are valid, the documented example, and differ only where intended."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy import load_policy

from .conftest import REPO, find

EXAMPLE = REPO / "autoscaler" / "policy" / "example-gpt2.yaml"


def _policy_text(objs: list[dict[str, Any]]) -> str:
    data = find(objs, "ConfigMap", "gpu-autoscaler-policy")["data"]
    assert set(data) == {"policy.yaml"}  # the controller's --policy-key
    return str(data["policy.yaml"])


def test_base_policy_is_valid_and_dry_run(rendered_base: list[dict[str, Any]]) -> None:
    """The base ConfigMap's policy loads and every target is in dry-run."""
    policy = load_policy(_policy_text(rendered_base))
    assert policy.targets and all(t.mode == "dry-run" for t in policy.targets)


def test_enforce_policy_is_valid_and_enforcing(rendered_enforce: list[dict[str, Any]]) -> None:
    """The enforce overlay's policy loads and every target enforces."""
    policy = load_policy(_policy_text(rendered_enforce))
    assert policy.targets and all(t.mode == "enforce" for t in policy.targets)


def test_base_policy_is_the_documented_example(rendered_base: list[dict[str, Any]]) -> None:
    """The shipped policy is example-gpt2.yaml with only the target namespace changed (to the RBAC's)."""
    shipped = yaml.safe_load(_policy_text(rendered_base))
    example = yaml.safe_load(EXAMPLE.read_text())
    assert [t.pop("namespace") for t in shipped["targets"]] == ["vllm"]
    for t in example["targets"]:
        t.pop("namespace")
    assert shipped == example


def test_enforce_differs_from_base_only_in_mode(
    rendered_base: list[dict[str, Any]], rendered_enforce: list[dict[str, Any]]
) -> None:
    """Both ConfigMaps hold the same policy except mode, and the same metadata."""
    base = yaml.safe_load(_policy_text(rendered_base))
    enforce = yaml.safe_load(_policy_text(rendered_enforce))
    for t in enforce["targets"]:
        assert t.pop("mode") == "enforce"
    for t in base["targets"]:
        assert t.pop("mode") == "dry-run"
    assert base == enforce
    assert (
        find(rendered_base, "ConfigMap", "gpu-autoscaler-policy")["metadata"]
        == find(rendered_enforce, "ConfigMap", "gpu-autoscaler-policy")["metadata"]
    )


def test_validate_policy_cli_accepts_both(
    rendered_base: list[dict[str, Any]], rendered_enforce: list[dict[str, Any]], tmp_path: Path
) -> None:
    """`autoscaler validate-policy` exits 0 on the policies exactly as the ConfigMaps hold them."""
    exe = shutil.which("autoscaler", path=str(REPO / ".venv" / "bin")) or shutil.which("autoscaler")
    assert exe, "the autoscaler console script is not installed"
    for name, objs in (("base", rendered_base), ("enforce", rendered_enforce)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(_policy_text(objs))
        proc = subprocess.run(
            [exe, "validate-policy", str(path)], capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
