"""Fixtures of the fault matrix: one shared world of real servers, one fresh controller per row.

Why shared: starting Prometheus, backfilling its history and converging a Deployment take
seconds, so the *world* is shared by the module and every row starts from the same steady
state (:meth:`World.reset`). Isolation between rows comes from a fresh controller (its own
Prometheus source, API client, Telemetry registry and log) per row, proxies reset to
passthrough, and the world reset to the calibrated replicas and placeholders.

The world:

* the session's real control plane (``tests/cluster``), a namespace of its own, and the
  target Deployment ``vllm-fm`` (GPU pods stay Pending: no nodes are needed to scale it);
* a real Prometheus scraping a live vLLM exporter fed at :data:`BASE_RPS` every second,
  with 1.25 days of backfilled history in which the load jumps to :data:`RAMP_RPS` daily at
  a time of day 10-15 minutes after the module starts. The load needs 3 serving replicas
  now and the forecast ramp 6 within the node cold start, so the steady state is 3
  serving replicas and 3 placeholder pods: a fault that wrongly released capacity shows.
  (It is started by a session-scoped fixture only so that it starts *before* the control
  plane and its first scrape overlaps the control plane's start-up; the module closes it.)
* a second scrape target, down until the stale-samples row, whose samples are 240 s old;
* a :class:`~tests.faults.harness.MatrixProxy` in front of Prometheus and one in front of
  the API server, through which every per-row controller talks.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import numpy as np
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.kube.client import KubeApi, from_api_client
from autoscaler.kube.cluster import KubeCluster
from autoscaler.kube.events import EventRecorder
from autoscaler.kube.leader import LeaseElector
from autoscaler.policy.loader import load_policy
from autoscaler.policy.schema import Policy
from autoscaler.runtime.controller import Controller, CycleResult
from autoscaler.runtime.service import AlwaysLeader, Service
from autoscaler.runtime.telemetry import Health, Telemetry
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import delete_namespace
from tests.fakes import StepClock
from tests.prom.backfill import backfill, synthetic_vllm_history
from tests.prom.exporters import VllmExporter
from tests.prom.server import PrometheusServer, ScrapeJob, ScrapeTarget

from .harness import (
    Counts,
    LaggingVllmExporter,
    MatrixProxy,
    OffsetClock,
    ProcessPool,
    RecordingLog,
    StaticPolicySource,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "vllm-fm"
MODEL = "model-a"
#: ReplicaSet-style pod names (the controller maps them back to the Deployment).
POD_MAIN = f"{DEPLOYMENT}-5d8f7b9c4-mainx"
POD_LAGGING = f"{DEPLOYMENT}-5d8f7b9c4-laggd"
BASE_RPS, RAMP_RPS, PER_REPLICA = 50.0, 110.0, 20.0
LATENCY_SECONDS = 0.12
#: The samples of the stale target are this old (> staleAfterSeconds 180 + 5 s slack, < the 5 min lookback).
LAG_SECONDS = 240.0
#: Backfilled history ends this long before the server starts (> LAG_SECONDS: older live samples
#: than the newest block would be refused; >= the 5 min lookback: no backfilled gauge in live answers).
HISTORY_GAP_SECONDS = 300.0
#: Per-request timeouts of the per-row controllers (the "slow" and "timeout" faults exceed them).
PROMETHEUS_TIMEOUT = 1.5
KUBE_TIMEOUT = (2.0, 1.5)

POLICY_TEMPLATE = """\
loopIntervalSeconds: {interval}
targets:
  - namespace: {namespace}
    deployment: {deployment}
    mode: enforce
    capacity: {{perReplica: {per_replica:g}}}
    forecast: {{model: seasonal_naive, seasons: [daily], trendGuardPoints: 0, historyDays: 1.2}}
    coldStart: {{learn: false}}
    metrics: {{rateWindow: 2m}}
    scaling: {{maxReplicas: 12}}
    placeholders: {{max: 8}}
"""


def policy_text(namespace: str, *, interval: int = 30) -> str:
    """The matrix's policy as the YAML an operator would write."""
    return POLICY_TEMPLATE.format(
        interval=interval, namespace=namespace, deployment=DEPLOYMENT, per_replica=PER_REPLICA
    )


def ramp_rate(ramp_time_of_day: float) -> Callable[[Any], Any]:
    """Daily load: BASE_RPS, and RAMP_RPS for 30 minutes from ``ramp_time_of_day``."""

    def rate(t: Any) -> Any:
        since = np.mod(np.mod(np.asarray(t, dtype=float), 86400.0) - ramp_time_of_day, 86400.0)
        return np.where(since < 1800.0, RAMP_RPS, BASE_RPS)

    return rate


def serving_deployment(name: str, replicas: int) -> dict[str, Any]:
    """A vLLM-like Deployment whose pods request one GPU (they stay Pending: there are no nodes)."""
    labels = {"app": name}
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.6.3",
        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]},
            },
        },
    }


def proxied_api(control_plane: ControlPlane, proxy: MatrixProxy, *, timeout: tuple[float, float]) -> KubeApi:
    """An admin :class:`KubeApi` talking to the API server through ``proxy`` (plain HTTP)."""
    cfg = kubernetes.client.Configuration()
    cfg.host = proxy.url
    cfg.api_key = {"authorization": control_plane.admin_token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return from_api_client(ApiClient(configuration=cfg), timeout=timeout)


def write_kubeconfig(path: Path, *, server: str, token: str) -> Path:
    """A kubeconfig for ``server`` with a bearer token (JSON is valid YAML)."""
    import json

    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


class Feeder:
    """Completes requests on the main exporter at BASE_RPS from a background thread."""

    def __init__(self, exporter: VllmExporter) -> None:
        self.exporter = exporter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-matrix-feeder", daemon=True)

    def start(self) -> Feeder:
        """Start feeding."""
        self._thread.start()
        return self

    def _run(self) -> None:
        started, done = time.monotonic(), 0
        while not self._stop.wait(0.1):
            due = math.floor(BASE_RPS * (time.monotonic() - started)) - done
            if due > 0:
                self.exporter.complete(due, latency_seconds=LATENCY_SECONDS, prompt_tokens=100, gen_tokens=20)
                done += due

    def stop(self) -> None:
        """Stop feeding."""
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class World:
    """The servers and objects every row shares (see the module docstring)."""

    control_plane: ControlPlane
    namespace: str
    apps: kubernetes.client.AppsV1Api
    core: kubernetes.client.CoreV1Api
    admin_api: KubeApi
    server: PrometheusServer
    main: VllmExporter
    lagging: LaggingVllmExporter
    prom_proxy: MatrixProxy
    api_proxy: MatrixProxy
    policy: Policy
    tmp: Path
    processes: ProcessPool
    deployment: str = DEPLOYMENT
    steady: Counts = Counts(0, 0)

    @property
    def placeholder(self) -> str:
        """The placeholder Deployment's name."""
        return f"{self.deployment}-capacity"

    @property
    def key(self) -> str:
        """The target's key."""
        return f"{self.namespace}/{self.deployment}"

    def counts(self) -> Counts:
        """Serving replicas and placeholder pods in the spec (admin read, never through a proxy)."""
        replicas = int(self.apps.read_namespaced_deployment_scale(self.deployment, self.namespace).spec.replicas or 0)
        try:
            scale = self.apps.read_namespaced_deployment_scale(self.placeholder, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return Counts(replicas, 0)
        return Counts(replicas, int(scale.spec.replicas or 0))

    def set_replicas(self, name: str, replicas: int) -> None:
        """Scale a Deployment as an operator would (admin, scale subresource)."""
        self.apps.patch_namespaced_deployment_scale(name, self.namespace, {"spec": {"replicas": replicas}})

    def fresh_data(self) -> bool:
        """Prometheus answers with the main pod's data of the last few seconds."""
        newest = self.server.query_value(f'max(timestamp(vllm:num_requests_running{{pod="{POD_MAIN}"}}))')
        return newest is not None and newest > time.time() - 5

    def reset(self) -> None:
        """Back to the steady state: proxies forwarding, exporters serving, calibrated counts."""
        for proxy in (self.prom_proxy, self.api_proxy):
            proxy.passthrough()
            proxy.start()
            proxy.reset_counts()
        self.lagging.set_http_status(500)
        if self.main.http_status != 200:
            self.main.set_http_status(200)
            wait_until(self.fresh_data, timeout=30, what="fresh data from the main exporter")
        now = self.counts()
        if now.replicas != self.steady.replicas:
            self.set_replicas(self.deployment, self.steady.replicas)
        if now.placeholders != self.steady.placeholders:
            self.set_replicas(self.placeholder, self.steady.placeholders)


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """The ``prometheus`` binary, installed by the harness script if missing (never a silent skip)."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        script = REPO_ROOT / "scripts" / "install-prometheus.sh"
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{script} failed: {proc.stderr[-2000:]}", pytrace=False)
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not on PATH", pytrace=False)
    return path


def _calibrate(world: World) -> Counts:
    """Converge the target with a direct (unproxied) controller and return the steady counts."""
    log = RecordingLog()
    source = PrometheusSource(world.server.url, timeout_seconds=10.0, log=log)
    controller = Controller(
        policy=world.policy,
        metrics=source,
        cluster=KubeCluster(world.admin_api, log=log, events=EventRecorder(world.admin_api, log=log)),
        clock=OffsetClock(),
        log=log,
    )
    try:
        for _ in range(6):
            (result,) = controller.reconcile_once().results
            assert result.error is None, result.error
            d = result.decision
            assert d is not None and d.data_ok, log.events("decision")[-1:]
            if d.replicas == d.current_replicas and d.placeholders == d.current_placeholders:
                break
        else:
            raise AssertionError(f"the target did not settle: {log.events('decision')[-1:]}")
    finally:
        source.close()
    steady = world.counts()
    assert steady.replicas == math.ceil(BASE_RPS / PER_REPLICA), steady
    assert steady.placeholders > 0, f"the forecast ramp must ask for placeholders: {log.events('decision')[-1:]}"
    return steady


@dataclass
class Metrics:
    """The Prometheus half of the world: server, exporters, feeder and the proxy in front."""

    namespace: str
    server: PrometheusServer
    main: VllmExporter
    lagging: LaggingVllmExporter
    prom_proxy: MatrixProxy
    stack: contextlib.ExitStack

    def close(self) -> None:
        """Stop everything (idempotent)."""
        self.stack.close()


@pytest.fixture(scope="session")
def fault_matrix_metrics(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metrics]:
    """Prometheus with backfilled history and the live exporters, started before the control plane.

    Session-scoped only so that pytest starts it *before* the session's control plane (a
    new Prometheus scrapes for the first time ~5 s after start; that wait then overlaps
    the control plane's start-up). The module's ``world`` closes it when the module ends.
    """
    namespace = f"fault-matrix-{secrets.token_hex(3)}"
    tmp = tmp_path_factory.mktemp("fault-matrix-prometheus")
    stack = contextlib.ExitStack()
    with contextlib.ExitStack() as failure:
        failure.callback(stack.close)
        main = stack.enter_context(VllmExporter(MODEL))
        main.set_state(running=BASE_RPS * LATENCY_SECONDS, waiting=0, kv_cache=0.2)
        lagging = stack.enter_context(LaggingVllmExporter(MODEL, lag_seconds=LAG_SECONDS))
        lagging.set_state(running=0, waiting=0, kv_cache=0.2)
        lagging.set_http_status(500)  # down until the stale-samples row
        job = ScrapeJob(
            "vllm",
            [
                ScrapeTarget(main.address, {"namespace": namespace, "pod": POD_MAIN}),
                ScrapeTarget(lagging.address, {"namespace": namespace, "pod": POD_LAGGING}),
            ],
        )
        server = PrometheusServer([job], binary=prometheus_bin, base_dir=tmp)
        now = time.time()
        ramp_at = math.ceil((now + 600.0) / 300.0) * 300.0
        history = synthetic_vllm_history(
            namespace=namespace,
            pods=[POD_MAIN],
            model_name=MODEL,
            deployment=DEPLOYMENT,
            start=now - 1.25 * 86400,
            end=math.floor((now - HISTORY_GAP_SECONDS) / 60.0) * 60.0,
            step=60.0,
            arrival_rate=ramp_rate(ramp_at % 86400.0),
            latency_median=LATENCY_SECONDS,
            latency_sigma=0.1,
        )
        keep = (
            "request_success_total",
            "num_requests_running",
            "num_requests_waiting",
            "e2e_request_latency_seconds_sum",
            "e2e_request_latency_seconds_count",
        )
        backfill(server.data_dir, [s for s in history.series if str(s[0]).endswith(keep)])
        stack.enter_context(server)
        feeder = Feeder(main).start()
        stack.callback(feeder.stop)
        prom_proxy = stack.enter_context(MatrixProxy(server.url))
        failure.pop_all()
    metrics = Metrics(namespace, server, main, lagging, prom_proxy, stack)
    try:
        yield metrics
    finally:
        metrics.close()


@pytest.fixture(scope="module")
def world(
    fault_matrix_metrics: Metrics,
    control_plane: ControlPlane,
    k8s_client: ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[World]:
    """The shared world (see the module docstring), at its steady state."""
    core = kubernetes.client.CoreV1Api(k8s_client)
    apps = kubernetes.client.AppsV1Api(k8s_client)
    m = fault_matrix_metrics
    namespace = m.namespace
    tmp = tmp_path_factory.mktemp("fault-matrix")
    # Rows that run ``autoscaler run`` get a process that imported the controller meanwhile.
    selected = [getattr(item, "callspec", None) for item in request.session.items]
    wanted = sum(getattr(c.params.get("fault"), "processes", 0) for c in selected if c is not None)
    with contextlib.ExitStack() as stack:
        stack.callback(m.close)
        processes = ProcessPool(tmp, wanted)
        stack.callback(processes.close)
        core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace)))
        stack.callback(delete_namespace, core, namespace)
        apps.create_namespaced_deployment(namespace, serving_deployment(DEPLOYMENT, 1))
        admin_api = from_api_client(control_plane.api_client())
        stack.callback(admin_api.close)
        api_proxy = stack.enter_context(MatrixProxy(control_plane.server_url))
        world = World(
            control_plane=control_plane,
            namespace=namespace,
            apps=apps,
            core=core,
            admin_api=admin_api,
            server=m.server,
            main=m.main,
            lagging=m.lagging,
            prom_proxy=m.prom_proxy,
            api_proxy=api_proxy,
            policy=load_policy(policy_text(namespace)),
            tmp=tmp,
            processes=processes,
        )
        # Two scrapes of the live exporter: rate() over the live window has data.
        wait_until(
            lambda: m.server.query(f'rate(vllm:request_success_total{{pod="{POD_MAIN}"}}[2m])'),
            timeout=30,
            what="two scrapes of the live exporter",
        )
        world.steady = _calibrate(world)
        yield world


@dataclass
class Cycle:
    """One service cycle and the spec counts around it."""

    result: CycleResult | None
    before: Counts
    after: Counts


@dataclass
class Rig:
    """One row's controller: fresh source, client, cluster port, service, log and metrics."""

    world: World
    name: str
    tmp: Path
    log: RecordingLog
    telemetry: Telemetry
    clock: OffsetClock
    mono: StepClock
    metrics: PrometheusSource
    api: KubeApi
    cluster: KubeCluster
    controller: Controller
    service: Service
    #: Where the evidence search starts (set when the fault is injected).
    log_mark: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    metric_marks: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    #: Subprocess identity -> its JSON log file / its last scraped /metrics text.
    process_logs: dict[str, Path] = field(default_factory=dict)
    process_metrics: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def cycle(self) -> Cycle:
        """Step the leader elector (if any), then run one service cycle."""
        elector = self.service.elector
        if isinstance(elector, LeaseElector):
            elector.step()
        before = self.world.counts()
        result = self.service.cycle()
        return Cycle(result, before, self.world.counts())

    def mark(self) -> None:
        """Evidence counts from now on: remember the log position, Events and metric values."""
        self.log_mark = len(self.log.records)
        self.event_counts = {
            e.metadata.name: e.count or 1 for e in self.world.core.list_namespaced_event(self.world.namespace).items
        }
        self.metric_marks = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in self.telemetry.registry.collect()
            for s in family.samples
        }

    def metric_since_mark(self, name: str, labels: dict[str, str]) -> float | None:
        """A controller metric's increase since :meth:`mark` (its value if it did not exist)."""
        value = self.telemetry.registry.get_sample_value(name, labels)
        if value is None:
            return None
        return value - self.metric_marks.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def rig(world: World, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """A fresh controller for one row, over the world reset to its steady state."""
    world.reset()
    log = RecordingLog()
    metrics = PrometheusSource(
        world.prom_proxy.url, timeout_seconds=PROMETHEUS_TIMEOUT, log=log.bind(component="prometheus")
    )
    api = proxied_api(world.control_plane, world.api_proxy, timeout=KUBE_TIMEOUT)
    kube_log = log.bind(component="kube")
    cluster = KubeCluster(api, log=kube_log, events=EventRecorder(api, instance="fault-matrix", log=kube_log))
    clock = OffsetClock()
    controller = Controller(
        policy=world.policy, metrics=metrics, cluster=cluster, clock=clock, log=log.bind(component="controller")
    )
    telemetry = Telemetry()
    service = Service(
        controller=controller,
        policy_source=StaticPolicySource(world.policy),
        elector=AlwaysLeader(),
        telemetry=telemetry,
        health=Health(max_cycle_age=120.0),
        log=log.bind(component="controller"),
    )
    rig = Rig(
        world=world,
        name=request.node.name,
        tmp=tmp_path,
        log=log,
        telemetry=telemetry,
        clock=clock,
        mono=StepClock(),
        metrics=metrics,
        api=api,
        cluster=cluster,
        controller=controller,
        service=service,
    )
    try:
        yield rig
    finally:
        for proc in rig.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for cleanup in reversed(rig.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        metrics.close()
        api.close()
