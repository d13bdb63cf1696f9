"""deploy/ renders, every object passes schema validation and checkov, and RBAC has one source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .conftest import DEPLOY, REPO, Tools, find

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "monitoring.coreos.com_v1.json"
KUBERNETES_VERSION = "1.32.0"  # the kubectl in the base image; the API is unchanged for these kinds since 1.25
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def write_each(objs: list[dict[str, Any]], directory: Path) -> list[Path]:
    paths = []
    for i, obj in enumerate(objs):
        path = directory / f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj))
        paths.append(path)
    return paths


def test_base_renders_the_whole_install(rendered_base: list[dict[str, Any]]) -> None:
    """`kubectl kustomize deploy/` renders every artifact the install needs."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered_base}
    for expected in [
        ("Namespace", "gpu-autoscaler"),
        ("ServiceAccount", "gpu-autoscaler"),
        ("Deployment", "gpu-autoscaler"),
        ("ConfigMap", "gpu-autoscaler-policy"),
        ("ConfigMap", "gpu-autoscaler-dashboard"),
        ("PriorityClass", "gpu-placeholder"),
        ("Service", "gpu-autoscaler-metrics"),
        ("ServiceMonitor", "gpu-autoscaler"),
        ("PrometheusRule", "gpu-autoscaler"),
        ("PodDisruptionBudget", "gpu-autoscaler"),
        ("NetworkPolicy", "gpu-autoscaler"),
    ]:
        assert expected in kinds, expected


def test_enforce_overlay_renders_only_the_policy(rendered_enforce: list[dict[str, Any]]) -> None:
    """`kubectl kustomize deploy/overlays/enforce` renders the policy ConfigMap under the base's name."""
    assert [(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in rendered_enforce] == [
        ("ConfigMap", "gpu-autoscaler-policy", "gpu-autoscaler")
    ]


def test_builtin_kinds_pass_kubernetes_validate(
    rendered_base: list[dict[str, Any]], rendered_enforce: list[dict[str, Any]], deploy_tools: Tools, tmp_path: Path
) -> None:
    """Every built-in object validates strictly against the Kubernetes OpenAPI schemas (offline)."""
    builtin = [o for o in rendered_base + rendered_enforce if o["kind"] not in CRD_KINDS]
    paths = write_each(builtin, tmp_path)
    proc = subprocess.run(
        [str(deploy_tools.kubernetes_validate), "-k", KUBERNETES_VERSION, "--strict", "--no-warn", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed for resource") == len(builtin), proc.stdout


def test_crd_objects_pass_their_schema(rendered_base: list[dict[str, Any]], deploy_tools: Tools) -> None:
    """ServiceMonitor and PrometheusRule validate against the vendored strict subset of the operator CRDs."""
    crds = [o for o in rendered_base if o["kind"] in CRD_KINDS]
    assert {o["kind"] for o in crds} == CRD_KINDS
    script = (
        "import json, sys, jsonschema\n"
        "schemas = json.load(open(sys.argv[1]))\n"
        "objs = json.load(sys.stdin)\n"
        "for obj in objs:\n"
        "    schema = dict(schemas[obj['kind']], definitions=schemas['definitions'])\n"
        "    jsonschema.validate(obj, schema)\n"
        "print('ok', len(objs))\n"
    )
    proc = subprocess.run(
        [str(deploy_tools.lint_python), "-c", script, str(SCHEMAS)],
        input=json.dumps(crds),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"ok {len(crds)}", proc.stdout + proc.stderr


def test_checkov_reports_no_failed_checks(
    rendered_base_text: str, rendered_base: list[dict[str, Any]], deploy_tools: Tools, tmp_path: Path
) -> None:
    """checkov finds no failed Kubernetes check; each skip is an annotation that states its reason."""
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered_base_text)
    proc = subprocess.run(
        [str(deploy_tools.checkov), "-f", str(manifest), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(proc.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results.get("failed_checks", [])]
    assert failed == [], failed
    assert report["summary"]["passed"] > 50 and report["summary"]["parsing_errors"] == 0
    annotated = {}
    for obj in rendered_base:
        for key, value in (obj["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check_id, _, reason = value.partition("=")
                assert len(reason) > 40, f"{key} on {obj['kind']}/{obj['metadata']['name']} needs a reason"
                annotated[check_id] = reason
    skipped = {c["check_id"] for c in results.get("skipped_checks", [])}
    assert skipped == set(annotated), (skipped, set(annotated))


def test_hadolint_has_no_findings(deploy_tools: Tools) -> None:
    """hadolint reports nothing on the Dockerfile, not even info-level findings."""
    proc = subprocess.run(
        [str(deploy_tools.hadolint), "--failure-threshold", "info", "--no-color", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_dockerfile_keeps_the_contract() -> None:
    """The image runs `autoscaler run` as a numeric non-root user, without a shell form."""
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    assert 'ENTRYPOINT ["autoscaler"]' in lines
    assert 'CMD ["run"]' in lines
    assert "USER 65532:65532" in lines
    assert sum(line.startswith("FROM ") for line in lines) >= 2


def test_rendered_rbac_is_exactly_rbac_yaml(rendered_base: list[dict[str, Any]]) -> None:
    """The RBAC objects kustomize renders are the objects of deploy/rbac.yaml, untouched."""
    source = [o for o in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if o]
    rbac_kinds = {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    rendered = [o for o in rendered_base if o["kind"] in rbac_kinds]

    def key(o: dict[str, Any]) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    assert sorted(rendered, key=key) == sorted(source, key=key)
    rendered_text = {key(o): yaml.safe_dump(o, sort_keys=True) for o in rendered}
    assert rendered_text == {key(o): yaml.safe_dump(o, sort_keys=True) for o in source}


def test_controller_wiring_matches_rbac(rendered_base: list[dict[str, Any]]) -> None:
    """The Deployment's service account, ConfigMap, Lease and PriorityClass are the names RBAC grants."""
    rbac_objs = [o for o in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if o]
    rbac = {(o["kind"], o["metadata"]["name"]): o for o in rbac_objs}
    granted = {
        name
        for rule in rbac[("Role", "gpu-autoscaler")]["rules"] + rbac[("ClusterRole", "gpu-autoscaler-cluster")]["rules"]
        for name in rule.get("resourceNames", [])
    }
    deployment = find(rendered_base, "Deployment", "gpu-autoscaler")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rbac[("ServiceAccount", "gpu-autoscaler")]["metadata"]["name"]
    args = pod["containers"][0]["args"]
    assert "--policy-configmap=gpu-autoscaler/gpu-autoscaler-policy" in args
    assert "--lease-name=gpu-predictive-autoscaler" in args
    assert {"gpu-autoscaler-policy", "gpu-predictive-autoscaler", "gpu-placeholder"} <= granted
    policy_cm = find(rendered_base, "ConfigMap", "gpu-autoscaler-policy")
    assert policy_cm["metadata"]["namespace"] == rbac[("Role", "gpu-autoscaler")]["metadata"]["namespace"]
    bound = {
        o["metadata"]["namespace"]
        for o in rbac_objs
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "gpu-autoscaler-target"
    }
    targets = yaml.safe_load(policy_cm["data"]["policy.yaml"])["targets"]
    assert {t["namespace"] for t in targets} <= bound, "every target namespace needs its RoleBinding"


def test_deployment_args_parse_with_the_real_cli(rendered_base: list[dict[str, Any]]) -> None:
    """The container args are accepted by `autoscaler run`'s argument parser."""
    import argparse

    from autoscaler.runtime.wiring import configure_parser

    args = find(rendered_base, "Deployment", "gpu-autoscaler")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "run"
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    parsed = parser.parse_args(args[1:])
    assert parsed.leader_election is True
    assert parsed.dry_run is False  # dry-run comes from the policy's mode, see deploy/deployment.yaml
    assert parsed.listen == ("0.0.0.0", 8080)  # noqa: S104  # the documented default: all interfaces


def test_pod_is_restricted_and_hardened(rendered_base: list[dict[str, Any]]) -> None:
    """The controller pod meets the restricted Pod Security Standard with a read-only root FS."""
    deployment = find(rendered_base, "Deployment", "gpu-autoscaler")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert {e["name"] for e in container["env"]} >= {"POD_NAME"}
    pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    ns = find(rendered_base, "Namespace", "gpu-autoscaler")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_placeholder_priority_class(rendered_base: list[dict[str, Any]]) -> None:
    """The placeholder PriorityClass is -10 and never preempts, as the policy example expects."""
    pc = find(rendered_base, "PriorityClass", "gpu-placeholder")
    assert (pc["value"], pc["preemptionPolicy"], pc["globalDefault"]) == (-10, "Never", False)
    target = yaml.safe_load(find(rendered_base, "ConfigMap", "gpu-autoscaler-policy")["data"]["policy.yaml"])
    placeholders = target["targets"][0]["placeholders"]
    assert (placeholders["priorityClass"], placeholders["priority"]) == ("gpu-placeholder", pc["value"])


def test_metrics_are_scraped_with_target_labels(rendered_base: list[dict[str, Any]]) -> None:
    """The ServiceMonitor selects the metrics Service's port and keeps the controller's namespace labels."""
    svc = find(rendered_base, "Service", "gpu-autoscaler-metrics")
    sm = find(rendered_base, "ServiceMonitor", "gpu-autoscaler")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["honorLabels"] is True
    pod_labels = find(rendered_base, "Deployment", "gpu-autoscaler")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
