"""The rendered built-in objects are accepted by the real test API server (server-side dry-run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

# The test control plane is Kubernetes 1.20: it has no policy/v1 PodDisruptionBudget (1.21+),
# and no Prometheus Operator CRDs. Those objects are validated by kubernetes-validate (1.32
# schemas) and the vendored CRD schema in test_manifests.py instead.
NOT_ON_1_20 = {"PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"}
OUR_NAMESPACES = {"gpu-autoscaler", "vllm"}


def _into(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object with our namespaces (and subjects') mapped to the test's namespace."""
    obj = yaml.safe_load(yaml.safe_dump(obj))
    meta = obj["metadata"]
    if obj["kind"] == "Namespace":
        meta["name"] = namespace
        meta.pop("labels", None)
    if meta.get("namespace") in OUR_NAMESPACES:
        meta["namespace"] = namespace
    for subject in obj.get("subjects", []):
        if subject.get("namespace") in OUR_NAMESPACES:
            subject["namespace"] = namespace
    return obj


def test_server_side_dry_run_accepts_every_builtin_object(
    rendered_base: list[dict[str, Any]],
    rendered_enforce: list[dict[str, Any]],
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
) -> None:
    """`kubectl apply --dry-run=server` accepts each object (both namespaces mapped to a test namespace)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH"
    objs = [_into(o, namespace) for o in rendered_base + rendered_enforce if o["kind"] not in NOT_ON_1_20]
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    proc = subprocess.run(
        [kubectl, "--kubeconfig", str(control_plane.kubeconfig_path), "apply", "--dry-run=server", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("(server dry run)") == len(objs), proc.stdout
