"""The PrometheusRule and dashboard PromQL is valid, fires as intended, and matches the controller's metrics."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from autoscaler.runtime.telemetry import Health, Telemetry, serve
from tests.prom.server import PrometheusError, PrometheusServer, ScrapeJob, ScrapeTarget, free_port

from .conftest import REPO, find

HERE = Path(__file__).resolve().parent
JOB = "gpu-autoscaler-metrics"  # the metrics Service's name = the ServiceMonitor's job label
# Dashboard variables as Grafana would expand them with "All" selected.
DASHBOARD_VARS = {"$__rate_interval": "1m", "$job": ".+", "$namespace": ".+", "$deployment": ".+", "$slo": "0.2"}

pytestmark = pytest.mark.prometheus


def _groups(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = find(objs, "PrometheusRule", "gpu-autoscaler")["spec"]["groups"]
    return groups


def _rule_exprs(objs: list[dict[str, Any]]) -> dict[str, str]:
    return {r.get("alert") or r["record"]: str(r["expr"]) for g in _groups(objs) for r in g["rules"]}


def _dashboard(objs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = find(objs, "ConfigMap", "gpu-autoscaler-dashboard")
    (text,) = cm["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def _dashboard_exprs(objs: list[dict[str, Any]]) -> dict[str, str]:
    exprs = {}
    for panel in _dashboard(objs)["panels"]:
        for target in panel.get("targets", []):  # a row has none
            expr = target["expr"]
            for var, value in DASHBOARD_VARS.items():
                expr = expr.replace(var, value)
            exprs[f"{panel['title']} / {target['refId']}"] = expr
    return exprs


def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run scripts/install-prometheus.sh", pytrace=False)
    return exe


def test_rules_pass_promtool_check(rendered_base: list[dict[str, Any]], tmp_path: Path) -> None:
    """`promtool check rules --lint=all --lint-fatal` accepts the PrometheusRule's groups (PromQL and templates)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _groups(rendered_base)}))
    proc = subprocess.run(
        [_promtool(), "check", "rules", "--lint=all", "--lint-fatal", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alerts_fire_as_intended(rendered_base: list[dict[str, Any]], tmp_path: Path) -> None:
    """`promtool test rules`: each alert fires on its failure and stays quiet on a healthy controller."""
    groups = copy.deepcopy(_groups(rendered_base))
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(HERE / "prometheusrule_test.yaml", tmp_path / "test.yaml")
    proc = subprocess.run(
        [_promtool(), "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", (HERE / "prometheusrule_test.yaml").read_text()))
    alerts = {r["alert"] for g in _groups(rendered_base) for r in g["rules"] if "alert" in r}
    assert alerts == tested, f"alerts without a unit test: {alerts - tested}"


def test_dashboard_is_a_grafana_sidecar_dashboard(rendered_base: list[dict[str, Any]]) -> None:
    """The dashboard ConfigMap carries the sidecar label and the panels operators need."""
    cm = find(rendered_base, "ConfigMap", "gpu-autoscaler-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = _dashboard(rendered_base)
    assert dashboard["uid"] and dashboard["title"]
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in (
        "Load vs forecast",
        "Replicas, placeholders, ready",
        "Latency vs SLO",
        "Decisions by reason",
        "Forecast error (5 min ahead)",
        "Lead times (learned cold-start horizons)",
        "Under-provisioned share: setup in place vs our decisions",
        "Forecast coverage of the upper quantile (last day)",
        "Dry-run: replicas it would set vs in place",
        "Errors: targets, status writes, policy rejections, paused",
    ):
        assert needed in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert json.loads((REPO / "deploy" / "dashboard.json").read_text()) == dashboard


def test_every_autoscaler_series_on_the_dashboard_is_selected_by_job(rendered_base: list[dict[str, Any]]) -> None:
    """A ``job`` variable (from autoscaler_build_info) filters every autoscaler_* selector: two installs apart."""
    dashboard = _dashboard(rendered_base)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["job"]["definition"] == "label_values(autoscaler_build_info, job)"
    assert 'job=~"$job"' in variables["namespace"]["definition"]
    assert 'job=~"$job"' in variables["deployment"]["definition"]
    raw = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    selectors = [sel for expr in raw for sel in _selectors(expr)]
    assert len(selectors) > 20
    assert [sel for sel in selectors if 'job=~"$job"' not in sel] == []


def _controller_telemetry() -> Telemetry:
    """A Telemetry filled by hand the way a leader with one target fills it."""
    t = Telemetry()
    ns, dep = "vllm", "vllm-gpt2"
    for horizon in ("pod", "node"):
        for stat, value in (("mean", 180.0), ("quantile", 230.0)):
            t.forecast.labels(ns, dep, horizon, stat, "requests").set(value)
    t.observed_load.labels(ns, dep, "requests").set(175.0)
    t.desired_replicas.labels(ns, dep).set(2)
    t.current_replicas.labels(ns, dep).set(1)
    t.desired_placeholders.labels(ns, dep).set(1)
    t.horizon.labels(ns, dep, "pod").set(130)
    t.horizon.labels(ns, dep, "node").set(960)
    for reason in ("PredictedLoad", "MissingDataHold"):
        t.decisions.labels(ns, dep, reason).inc()
        t.steps.labels(ns, dep, reason).inc()
    t.dry_run.labels(ns, dep).set(1)
    t.writes.labels(ns, dep, "replicas").inc()
    t.errors.labels("metrics_unavailable").inc()
    t.target_errors.labels(ns, dep, "metrics_unavailable").inc()
    t.loop_duration.observe(0.3)
    t.loop_lateness.set(0.01)
    t.last_cycle.set(time.time())
    t.leader.labels("gpu-autoscaler/gpu-predictive-autoscaler").set(1)
    t.policy_generation.set(1)
    t.policy_rejected.inc()
    t.forecast_model.labels(ns, dep, "seasonal_naive").set(1)
    t.underprovisioned.labels(ns, dep, "current").inc(600)
    t.underprovisioned.labels(ns, dep, "predictive").inc(30)
    t.shadow_observed.labels(ns, dep).inc(3600)
    t.shadow_coverage.labels(ns, dep, "seasonal_naive").set(0.88)
    t.shadow_under_forecast.labels(ns, dep, "seasonal_naive").inc(120)
    t.status_errors.labels(ns, dep, "forbidden").inc()
    t.paused.labels(ns, dep).set(0)
    return t


class _TextExposition:
    """Serves a registry in the text format through :func:`serve` (prometheus_client's own server
    would negotiate OpenMetrics, which rewrites the ``vllm:`` colons)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def _cluster_registry() -> CollectorRegistry:
    """kube-state-metrics and vLLM series the alerts and dashboard also read."""
    r = CollectorRegistry()
    ready = Gauge("kube_deployment_status_replicas_ready", "ready", ("namespace", "deployment"), registry=r)
    ready.labels("vllm", "vllm-gpt2").set(1)
    ready.labels("vllm", "vllm-gpt2-capacity").set(1)
    phase = Gauge("kube_pod_status_phase", "phase", ("namespace", "pod", "phase"), registry=r)
    phase.labels("vllm", "vllm-gpt2-capacity-7d9f8b6c5-x2k4m", "Pending").set(1)
    latency = Histogram(
        "vllm:e2e_request_latency_seconds",
        "e2e",
        ("namespace", "model_name"),
        registry=r,
        buckets=(0.3, 0.5, 0.8, 1.0, 2.5),
    )
    latency.labels("vllm", "gpt2").observe(0.15)
    return r


@pytest.fixture(scope="module")
def prometheus(rendered_base: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Prometheus scraping a controller-like /metrics (as the ServiceMonitor would) and the rules."""
    _promtool()
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _groups(rendered_base)}))
    controller = serve(
        telemetry=_controller_telemetry(), health=Health(max_cycle_age=120), host="127.0.0.1", port=free_port()
    )
    cluster = serve(
        telemetry=cast(Telemetry, _TextExposition(_cluster_registry())),
        health=Health(max_cycle_age=120),
        host="127.0.0.1",
        port=free_port(),
    )
    jobs = [
        # honor_labels + the namespace/pod target labels: what the ServiceMonitor (honorLabels: true) produces.
        ScrapeJob(
            JOB,
            [
                ScrapeTarget(
                    f"127.0.0.1:{controller.server_address[1]}",
                    {"namespace": "gpu-autoscaler", "pod": "gpu-autoscaler-0"},
                )
            ],
            honor_labels=True,
        ),
        ScrapeJob("cluster", [f"127.0.0.1:{cluster.server_address[1]}"], honor_labels=True),
    ]
    server = PrometheusServer(jobs, scrape_interval="1s", evaluation_interval="1s", rule_files=[rules])
    try:
        server.start()
        server.wait_for_scrape(JOB)
        server.wait_for_scrape("cluster")
        # rate()/increase() need two samples; recording rules one evaluation
        server.wait_for_query("count(rate(autoscaler_decisions_total[1m]))", timeout=60)
        server.wait_for_query("count(rate(vllm:e2e_request_latency_seconds_count[1m]))", timeout=60)
        server.wait_for_query("gpu_autoscaler:forecast_load_pod_mean:max", timeout=60)
        yield server
    finally:
        server.stop()
        controller.shutdown()
        cluster.shutdown()


def _selectors(expr: str) -> list[str]:
    """Vector selectors of our own metrics (autoscaler_* and the gpu_autoscaler:* recordings)."""
    return re.findall(r"\b((?:autoscaler_[a-z_]+|gpu_autoscaler:[a-z_0-9:]+)(?:\{[^}]*\})?)", expr)


def test_every_expression_parses_on_prometheus(prometheus: Any, rendered_base: list[dict[str, Any]]) -> None:
    """Every alert, recording and dashboard expression is accepted by the real Prometheus query API."""
    exprs = {**_rule_exprs(rendered_base), **_dashboard_exprs(rendered_base)}
    for name, expr in exprs.items():
        try:
            prometheus.query(expr)
        except PrometheusError as exc:
            pytest.fail(f"{name}: {expr!r} rejected: {exc}", pytrace=False)


def test_every_metric_selector_matches_the_controller(prometheus: Any, rendered_base: list[dict[str, Any]]) -> None:
    """Each autoscaler_* selector (with its label matchers) in the rules and dashboard returns scraped data."""
    rules = _rule_exprs(rendered_base)
    exprs = {**rules, **_dashboard_exprs(rendered_base)}
    # a recording over `offset 5m` has no data on a server seconds old; its own expression is
    # checked below with the offset removed
    delayed = {name for name, expr in rules.items() if " offset " in expr}
    for name in delayed:
        assert prometheus.query(re.sub(r" offset \w+", "", rules[name])), name
    checked = set()
    for name, expr in exprs.items():
        for selector in _selectors(expr):
            if selector not in checked and selector.split("{")[0] not in delayed:
                assert prometheus.query(selector), f"{name}: {selector} matches no series"
                checked.add(selector)
    metric_names = {s.split("{")[0] for s in checked}
    assert len(metric_names) >= 15, sorted(metric_names)


def test_dashboard_job_variable_lists_the_controllers_job(prometheus: Any) -> None:
    """The ``job`` variable's query finds the controller's scrape job (the metrics Service's name)."""
    assert {s["metric"]["job"] for s in prometheus.query("autoscaler_build_info")} == {JOB}


def test_dashboard_queries_return_data(prometheus: Any, rendered_base: list[dict[str, Any]]) -> None:
    """Every dashboard query returns series from the scraped controller, kube-state and vLLM metrics."""
    for name, expr in _dashboard_exprs(rendered_base).items():
        # the test server has seconds of history: look at the forecast "5 minutes ago" now
        assert prometheus.query(expr.replace(" offset 5m", "")), f"{name}: {expr!r} returned no data"


def test_recording_rules_produce_series(prometheus: Any, rendered_base: list[dict[str, Any]]) -> None:
    """The recording rules evaluate on the real controller series (per target, not per replica)."""
    records = [r["record"] for g in _groups(rendered_base) for r in g["rules"] if "record" in r]
    for record in records[:2]:
        result = prometheus.query(record)
        assert [s["metric"].get("deployment") for s in result] == ["vllm-gpt2"], record
    placeholder = prometheus.query(_rule_exprs(rendered_base)["GpuPlaceholderPodsPendingTooLong"])
    assert [s["metric"]["pod"] for s in placeholder] == ["vllm-gpt2-capacity-7d9f8b6c5-x2k4m"]
