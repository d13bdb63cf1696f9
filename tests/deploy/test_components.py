"""The kustomize components and the example overlay render, validate, and change only what they say.

Why: a default kube-prometheus-stack selects ServiceMonitors and PrometheusRules by its
``release`` label, so without the component scraping, alerts and the dashboard stay empty
without a word; and a target namespace without its RoleBinding fails every cycle with 403.
The example overlay (``examples/kube-prometheus-stack``) uses both components the way an
install would, and every alert links into docs/runbook.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from .conftest import REPO, Tools, find
from .test_manifests import CRD_KINDS, KUBERNETES_VERSION, SCHEMAS, write_each

RELEASE = "kube-prometheus-stack"
RUNBOOK = REPO / "docs" / "runbook.md"


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def test_example_is_the_base_plus_the_components(
    rendered_base: list[dict[str, Any]], rendered_example: list[dict[str, Any]]
) -> None:
    """The example adds one RoleBinding and labels; every other object is the base's, unchanged."""
    base = {_key(o): o for o in rendered_base}
    example = {_key(o): o for o in rendered_example}
    extra = ("RoleBinding", "vllm-chat", "gpu-autoscaler-extra-target")
    assert set(example) == set(base) | {extra}
    changed = {k for k in base if base[k] != example[k]}
    assert changed == {
        ("ServiceMonitor", "gpu-autoscaler", "gpu-autoscaler"),
        ("PrometheusRule", "gpu-autoscaler", "gpu-autoscaler"),
    }  # the dashboard ConfigMap already carries the sidecar label and folder


def test_prometheus_objects_carry_the_release_label_and_the_dashboard_its_sidecar_keys(
    rendered_example: list[dict[str, Any]],
) -> None:
    """ServiceMonitor and PrometheusRule: ``release``; dashboard: ``grafana_dashboard`` and ``grafana_folder``."""
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert find(rendered_example, kind, "gpu-autoscaler")["metadata"]["labels"]["release"] == RELEASE
    dashboard = find(rendered_example, "ConfigMap", "gpu-autoscaler-dashboard")["metadata"]
    assert dashboard["labels"]["grafana_dashboard"] == "1"
    assert dashboard["annotations"]["grafana_folder"] == "GPU autoscaling"


def test_extra_namespace_binding_grants_the_target_role_to_the_controller(
    rendered_example: list[dict[str, Any]],
) -> None:
    """The generated RoleBinding binds ClusterRole gpu-autoscaler-target to the controller's ServiceAccount."""
    binding = find(rendered_example, "RoleBinding", "gpu-autoscaler-extra-target")
    assert binding["metadata"]["namespace"] == "vllm-chat"
    role = find(rendered_example, "ClusterRole", binding["roleRef"]["name"])
    assert role["metadata"]["name"] == "gpu-autoscaler-target" and binding["roleRef"]["kind"] == "ClusterRole"
    account = find(rendered_example, "ServiceAccount", "gpu-autoscaler")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gpu-autoscaler", "namespace": account["metadata"]["namespace"]}
    ]


def test_example_passes_the_schemas(
    rendered_example: list[dict[str, Any]], deploy_tools: Tools, tmp_path: Path
) -> None:
    """Built-in kinds pass kubernetes-validate --strict; the operator's kinds pass their CRD schema."""
    builtin = [o for o in rendered_example if o["kind"] not in CRD_KINDS]
    proc = subprocess.run(
        [str(deploy_tools.kubernetes_validate), "-k", KUBERNETES_VERSION, "--strict", "--no-warn",
         *map(str, write_each(builtin, tmp_path))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed for resource") == len(builtin), proc.stdout
    crds = [o for o in rendered_example if o["kind"] in CRD_KINDS]
    script = (
        "import json, sys, jsonschema\n"
        "schemas = json.load(open(sys.argv[1]))\n"
        "for obj in json.load(sys.stdin):\n"
        "    jsonschema.validate(obj, dict(schemas[obj['kind']], definitions=schemas['definitions']))\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [str(deploy_tools.lint_python), "-c", script, str(SCHEMAS)],
        input=json.dumps(crds), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_to_its_runbook_section(rendered_base: list[dict[str, Any]]) -> None:
    """Each alert's ``runbook_url`` ends in an anchor of a section of docs/runbook.md named after the alert."""
    anchors = {_anchor(h) for h in re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)}
    rule = find(rendered_base, "PrometheusRule", "gpu-autoscaler")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/runbook.md") and anchor == alert["alert"].lower(), url
        assert anchor in anchors, f"docs/runbook.md has no section {alert['alert']}"
