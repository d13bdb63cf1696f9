"""Live test exporters for vLLM, the DCGM exporter and kube-state-metrics.

Why hand-written: these serve the Prometheus text format (0.0.4) themselves
from a stdlib ``http.server`` so names reach Prometheus *exactly* as the real
components expose them. ``prometheus_client`` is deliberately not used: newer
versions negotiate name escaping with the scraper and may rewrite ``vllm:``
to ``vllm_``, which would hide the very naming problem the product must cope
with. Each exporter's state is set by the test; label names, metric names
and buckets follow ``shared/reference/metrics.md``.

Every exporter binds ``127.0.0.1:0`` (a random port), runs in a daemon
thread, and exposes :attr:`TextExporter.address` (``host:port`` for a scrape
config) and :meth:`TextExporter.value` (what is being served, to compare
with what Prometheus scraped). ``math.nan`` / ``math.inf`` values are served
as ``NaN`` / ``+Inf``.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = [
    "E2E_LATENCY_BUCKETS",
    "TTFT_BUCKETS",
    "DcgmExporter",
    "Family",
    "KubeStateExporter",
    "TextExporter",
    "VllmExporter",
    "format_value",
    "render_families",
]

#: vLLM V1 "request_latency" bucket family (E2E, queue, prefill, decode, inference time).
E2E_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
#: vLLM V1 time-to-first-token buckets.
TTFT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)

Labels = Mapping[str, str]


def format_value(value: float) -> str:
    """Format a sample value as the text format does (``NaN``, ``+Inf``, ``-Inf``, repr)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_le(bound: float) -> str:
    """Format a bucket bound like ``prometheus_client`` does (``1.0``, ``0.3``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels: Labels) -> str:
    """Render ``{a="b",…}`` (empty string for no labels)."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


@dataclass
class Family:
    """One metric family: ``# HELP``/``# TYPE`` plus samples ``(name, labels, value)``."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: Labels, value: float, suffix: str = "") -> None:
        """Add a sample named ``name + suffix``."""
        self.samples.append((self.name + suffix, dict(labels), float(value)))


def render_families(families: Iterable[Family]) -> str:
    """Render families in the Prometheus text exposition format 0.0.4."""
    out: list[str] = []
    for fam in families:
        out.append(f"# HELP {fam.name} {fam.help}")
        out.append(f"# TYPE {fam.name} {fam.type}")
        out.extend(f"{name}{format_labels(labels)} {format_value(value)}" for name, labels, value in fam.samples)
    return "\n".join(out) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _ExporterHTTPServer

    def do_GET(self) -> None:
        exporter = self.server.exporter
        path = self.path.split("?", 1)[0]
        if path != exporter.metrics_path:
            self.send_error(404)
            return
        status = exporter.http_status
        body = (exporter.render() if status == 200 else f"error {status}\n").encode()
        with exporter.lock:
            exporter.scrapes += 1
            exporter.last_accept = self.headers.get("Accept", "")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, exporter: TextExporter, host: str) -> None:
        self.exporter = exporter
        super().__init__((host, 0), _Handler)


class TextExporter:
    """Base: an HTTP server on 127.0.0.1 serving :meth:`families` as text.

    Subclasses implement :meth:`families`; state changes must hold
    :attr:`lock`. ``extra`` families set with :meth:`set_extra` are appended
    (for any metric a test needs that the subclass does not model).
    """

    metrics_path: ClassVar[str] = "/metrics"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.lock = threading.RLock()
        self.host = host
        self.scrapes = 0
        self.last_accept = ""
        self.http_status = 200
        self._extra: dict[str, Family] = {}
        self._server: _ExporterHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Self:
        """Bind a random loopback port and serve in a daemon thread."""
        if self._server is None:
            self._server = _ExporterHTTPServer(self, self.host)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}-http",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the target then goes ``down`` in Prometheus)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("exporter not started")
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for a scrape config target."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Full metrics URL."""
        return f"http://{self.address}{self.metrics_path}"

    # content
    def families(self) -> list[Family]:
        """The families served (subclasses override; called under :attr:`lock`)."""
        return []

    def set_extra(
        self, name: str, labels: Labels, value: float, type: str = "gauge", help: str = "test metric"
    ) -> None:
        """Serve an additional sample ``name{labels} value`` (family created on first use)."""
        with self.lock:
            fam = self._extra.setdefault(name, Family(name, type, help))
            fam.samples = [s for s in fam.samples if s[1] != dict(labels)]
            fam.add(labels, value)

    def clear_extra(self, name: str | None = None) -> None:
        """Stop serving extra families (one or all)."""
        with self.lock:
            if name is None:
                self._extra.clear()
            else:
                self._extra.pop(name, None)

    def set_http_status(self, code: int) -> None:
        """Answer scrapes with ``code`` (non-200 makes the target ``down``)."""
        with self.lock:
            self.http_status = code

    def render(self) -> str:
        """The exposition text as served right now."""
        with self.lock:
            return render_families([*self.families(), *self._extra.values()])

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """All samples served right now as ``(name, labels, value)``."""
        with self.lock:
            return [s for fam in [*self.families(), *self._extra.values()] for s in fam.samples]

    def value(self, name: str, **labels: str) -> float:
        """Sum of served samples named ``name`` whose labels include ``labels``."""
        matches = [
            v for n, lbl, v in self.samples() if n == name and all(lbl.get(k) == val for k, val in labels.items())
        ]
        if not matches:
            raise KeyError(f"{name}{labels} is not served")
        return float(sum(matches))


class _Histogram:
    """Cumulative histogram state (bucket counts, sum, count)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = [*sorted(float(b) for b in buckets), math.inf]
        self.counts = [0.0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0.0

    def observe(self, value: float, n: float = 1) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += n
        self.sum += value * n
        self.count += n

    def emit(self, fam: Family, labels: Labels) -> None:
        for bound, count in zip(self.bounds, self.counts, strict=True):
            fam.add({**labels, "le": format_le(bound)}, count, "_bucket")
        fam.add(labels, self.sum, "_sum")
        fam.add(labels, self.count, "_count")


FINISHED_REASONS: tuple[str, ...] = ("stop", "length", "abort")


class VllmExporter(TextExporter):
    """A vLLM V1 ``/metrics`` endpoint for one ``model_name`` (and ``engine``).

    Series (``vllm:`` prefix, or ``vllm_`` with ``underscore=True``), all with
    ``model_name`` and ``engine`` labels: ``num_requests_running``,
    ``num_requests_waiting``, ``kv_cache_usage_perc`` (``gpu_cache_usage_perc``
    with ``use_old_names=True``; both with ``emit_both_cache_names=True``),
    ``request_success_total{finished_reason}`` (stop/length/abort
    pre-created at 0, as vLLM does), ``prompt_tokens_total``,
    ``generation_tokens_total``, ``num_preemptions_total`` and the histograms
    ``e2e_request_latency_seconds``, ``request_queue_time_seconds`` (V1
    request-latency buckets) and ``time_to_first_token_seconds``.
    """

    def __init__(
        self,
        model_name: str,
        *,
        engine: str = "0",
        use_old_names: bool = False,
        emit_both_cache_names: bool = False,
        underscore: bool = False,
        latency_buckets: Sequence[float] = E2E_LATENCY_BUCKETS,
        ttft_buckets: Sequence[float] = TTFT_BUCKETS,
        extra_labels: Labels | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.model_name = model_name
        self.engine = engine
        self.use_old_names = use_old_names
        self.emit_both_cache_names = emit_both_cache_names
        self.prefix = "vllm_" if underscore else "vllm:"
        self.extra_labels = dict(extra_labels or {})
        self.running = 0.0
        self.waiting = 0.0
        self.kv_cache = 0.0
        self.success: dict[str, float] = dict.fromkeys(FINISHED_REASONS, 0.0)
        self.prompt_tokens = 0.0
        self.generation_tokens = 0.0
        self.preemptions = 0.0
        self.e2e = _Histogram(latency_buckets)
        self.queue_time = _Histogram(latency_buckets)
        self.ttft = _Histogram(ttft_buckets)

    def name(self, base: str) -> str:
        """Full metric name as served, e.g. ``name("request_success_total")``."""
        return self.prefix + base

    @property
    def labels(self) -> dict[str, str]:
        """The labels every vLLM series carries (plus ``extra_labels``)."""
        return {"model_name": self.model_name, "engine": self.engine, **self.extra_labels}

    def set_state(
        self,
        *,
        running: float | None = None,
        waiting: float | None = None,
        kv_cache: float | None = None,
    ) -> None:
        """Set the gauges (``kv_cache`` is a 0–1 fraction; ``math.nan`` allowed)."""
        with self.lock:
            if running is not None:
                self.running = float(running)
            if waiting is not None:
                self.waiting = float(waiting)
            if kv_cache is not None:
                self.kv_cache = float(kv_cache)

    def complete(
        self,
        n: int = 1,
        latency_seconds: float | Sequence[float] = 1.0,
        prompt_tokens: int = 0,
        gen_tokens: int = 0,
        *,
        finished_reason: str = "stop",
        queue_seconds: float | None = None,
        ttft_seconds: float | None = None,
    ) -> None:
        """Record ``n`` finished requests.

        ``latency_seconds`` is one E2E latency for all ``n`` or a sequence of
        ``n`` latencies; ``prompt_tokens`` / ``gen_tokens`` are *per request*.
        ``queue_seconds`` / ``ttft_seconds`` (per request) feed those histograms.
        """
        latencies = (
            [float(latency_seconds)] * n
            if isinstance(latency_seconds, int | float)
            else [float(x) for x in latency_seconds]
        )
        if len(latencies) != n:
            raise ValueError(f"{len(latencies)} latencies for n={n}")
        with self.lock:
            self.success[finished_reason] = self.success.get(finished_reason, 0.0) + n
            self.prompt_tokens += prompt_tokens * n
            self.generation_tokens += gen_tokens * n
            for latency in latencies:
                self.e2e.observe(latency)
            if queue_seconds is not None:
                self.queue_time.observe(queue_seconds, n)
            if ttft_seconds is not None:
                self.ttft.observe(ttft_seconds, n)

    def preempt(self, n: int = 1) -> None:
        """Count ``n`` preemptions."""
        with self.lock:
            self.preemptions += n

    def families(self) -> list[Family]:
        """The vLLM families in the order vLLM registers them."""
        lbl = self.labels
        p = self.prefix
        fams = [
            Family(p + "num_requests_running", "gauge", "Number of requests in model execution batches."),
            Family(p + "num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
        ]
        fams[0].add(lbl, self.running)
        fams[1].add(lbl, self.waiting)
        cache_names = (
            ["gpu_cache_usage_perc", "kv_cache_usage_perc"]
            if self.emit_both_cache_names
            else ["gpu_cache_usage_perc"]
            if self.use_old_names
            else ["kv_cache_usage_perc"]
        )
        for cache_name in cache_names:
            fam = Family(p + cache_name, "gauge", "KV-cache usage. 1 means 100 percent usage.")
            fam.add(lbl, self.kv_cache)
            fams.append(fam)
        for base, value, help_text in (
            ("num_preemptions_total", self.preemptions, "Cumulative number of preemption."),
            ("prompt_tokens_total", self.prompt_tokens, "Number of prefill tokens processed."),
            ("generation_tokens_total", self.generation_tokens, "Number of generation tokens processed."),
        ):
            fam = Family(p + base, "counter", help_text)
            fam.add(lbl, value)
            fams.append(fam)
        success = Family(p + "request_success_total", "counter", "Count of successfully processed requests.")
        for reason, value in self.success.items():
            success.add({**lbl, "finished_reason": reason}, value)
        fams.append(success)
        for base, hist, help_text in (
            ("time_to_first_token_seconds", self.ttft, "Histogram of time to first token."),
            ("e2e_request_latency_seconds", self.e2e, "Histogram of e2e request latency."),
            ("request_queue_time_seconds", self.queue_time, "Histogram of time spent in WAITING phase for request."),
        ):
            fam = Family(p + base, "histogram", help_text)
            hist.emit(fam, lbl)
            fams.append(fam)
        return fams


@dataclass
class GpuState:
    """One GPU as the DCGM exporter reports it."""

    index: int
    uuid: str
    pci_bus_id: str
    util: float = 0.0
    engine_active: float = 0.0
    tensor_active: float = 0.0
    fb_used: float = 0.0
    fb_free: float = 81_000.0
    fb_reserved: float = 500.0
    pod: str | None = None
    namespace: str | None = None
    container: str | None = None


class DcgmExporter(TextExporter):
    """An NVIDIA ``dcgm-exporter`` endpoint (``--kubernetes`` mapping on).

    Per GPU: ``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``
    and ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE`` (0–1), ``DCGM_FI_DEV_FB_USED`` /
    ``_FREE`` / ``_RESERVED`` (MiB), labelled ``gpu``, ``UUID``,
    ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` (or
    ``hostname`` via ``hostname_label``) and, for a GPU assigned to a pod,
    ``pod``, ``namespace``, ``container`` (the vLLM pod, not the exporter).
    """

    def __init__(
        self,
        *,
        hostname: str = "gpu-node-1",
        gpus: int = 1,
        model_name: str = "NVIDIA A100-SXM4-80GB",
        hostname_label: str = "Hostname",
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.hostname = hostname
        self.model_name = model_name
        self.hostname_label = hostname_label
        self.gpus: list[GpuState] = [
            GpuState(
                index=i,
                uuid=f"GPU-{zlib.crc32(hostname.encode()):08x}-{i:04x}-4a5b-8c9d-0123456789ab",
                pci_bus_id=f"00000000:{0x10 + i:02X}:00.0",
            )
            for i in range(gpus)
        ]

    def assign(self, gpu: int, *, pod: str | None, namespace: str | None, container: str | None = "vllm") -> None:
        """Map GPU ``gpu`` to a pod (``pod=None`` unassigns: labels disappear)."""
        with self.lock:
            g = self.gpus[gpu]
            g.pod, g.namespace = pod, namespace
            g.container = container if pod is not None else None

    def set_gpu(
        self,
        gpu: int,
        *,
        util: float | None = None,
        engine_active: float | None = None,
        tensor_active: float | None = None,
        fb_used: float | None = None,
        fb_free: float | None = None,
        fb_reserved: float | None = None,
    ) -> None:
        """Set GPU ``gpu``'s readings (``util`` in %, ``*_active`` 0–1, ``fb_*`` MiB)."""
        with self.lock:
            g = self.gpus[gpu]
            for attr, value in (
                ("util", util),
                ("engine_active", engine_active),
                ("tensor_active", tensor_active),
                ("fb_used", fb_used),
                ("fb_free", fb_free),
                ("fb_reserved", fb_reserved),
            ):
                if value is not None:
                    setattr(g, attr, float(value))

    def gpu_labels(self, g: GpuState) -> dict[str, str]:
        """The labels dcgm-exporter puts on GPU ``g``'s series."""
        labels = {
            "gpu": str(g.index),
            "UUID": g.uuid,
            "pci_bus_id": g.pci_bus_id,
            "device": f"nvidia{g.index}",
            "modelName": self.model_name,
            self.hostname_label: self.hostname,
        }
        if g.pod is not None:
            labels.update(container=g.container or "", namespace=g.namespace or "", pod=g.pod)
        return labels

    def families(self) -> list[Family]:
        """DCGM families (gauges)."""
        spec = (
            ("DCGM_FI_DEV_GPU_UTIL", "util", "GPU utilization (in %)."),
            ("DCGM_FI_DEV_FB_FREE", "fb_free", "Framebuffer memory free (in MiB)."),
            ("DCGM_FI_DEV_FB_USED", "fb_used", "Framebuffer memory used (in MiB)."),
            ("DCGM_FI_DEV_FB_RESERVED", "fb_reserved", "Framebuffer memory reserved (in MiB)."),
            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "engine_active", "Ratio of time the graphics engine is active."),
            ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "tensor_active", "Ratio of cycles the tensor (HMMA) pipe is active."),
        )
        fams = []
        for name, attr, help_text in spec:
            fam = Family(name, "gauge", help_text)
            for g in self.gpus:
                fam.add(self.gpu_labels(g), getattr(g, attr))
            fams.append(fam)
        return fams


POD_PHASES: tuple[str, ...] = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


@dataclass
class _Deployment:
    spec: float
    ready: float
    available: float
    updated: float
    current: float


@dataclass
class _Pod:
    phase: str
    uid: str
    node: str | None
    unschedulable: bool
    created: float | None
    scheduled_time: float | None
    start_time: float | None
    ready_time: float | None
    ready: bool


@dataclass
class _Node:
    allocatable_gpus: float
    capacity_gpus: float
    ready: str
    unschedulable: bool


class KubeStateExporter(TextExporter):
    """A kube-state-metrics endpoint for deployments, pods and nodes.

    Scrape it with ``honor_labels=True`` (as kube-prometheus does) so
    ``namespace``/``pod`` are the objects', not the exporter pod's.

    Deployments: ``kube_deployment_spec_replicas``,
    ``kube_deployment_status_replicas{,_ready,_available,_unavailable,_updated}``.
    Pods: ``kube_pod_status_phase{phase}`` (1 for the current phase, 0 for
    the others), ``kube_pod_status_unschedulable`` (only while unschedulable,
    as KSM does), ``kube_pod_status_scheduled{condition}``,
    ``kube_pod_status_ready{condition}``, ``kube_pod_info{node}``,
    ``kube_pod_created``, ``kube_pod_status_scheduled_time``,
    ``kube_pod_start_time``, ``kube_pod_status_ready_time`` (unix seconds;
    only once known). Nodes: ``kube_node_status_allocatable`` /
    ``kube_node_status_capacity`` ``{resource="nvidia_com_gpu",unit="integer"}``,
    ``kube_node_status_condition{condition="Ready",status}``,
    ``kube_node_spec_unschedulable``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.deployments: dict[tuple[str, str], _Deployment] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.nodes: dict[str, _Node] = {}

    def set_deployment(
        self,
        namespace: str,
        deployment: str,
        *,
        spec_replicas: int,
        ready_replicas: int | None = None,
        available_replicas: int | None = None,
        updated_replicas: int | None = None,
        replicas: int | None = None,
    ) -> None:
        """Set a deployment's desired and status replica counts (defaults: all = spec)."""
        ready = spec_replicas if ready_replicas is None else ready_replicas
        with self.lock:
            self.deployments[(namespace, deployment)] = _Deployment(
                spec=spec_replicas,
                ready=ready,
                available=ready if available_replicas is None else available_replicas,
                updated=spec_replicas if updated_replicas is None else updated_replicas,
                current=spec_replicas if replicas is None else replicas,
            )

    def remove_deployment(self, namespace: str, deployment: str) -> None:
        """Stop serving a deployment."""
        with self.lock:
            self.deployments.pop((namespace, deployment), None)

    def set_pod(
        self,
        namespace: str,
        pod: str,
        *,
        phase: str = "Running",
        uid: str | None = None,
        node: str | None = None,
        unschedulable: bool = False,
        created: float | None = None,
        scheduled_time: float | None = None,
        start_time: float | None = None,
        ready_time: float | None = None,
        ready: bool | None = None,
    ) -> None:
        """Set a pod's phase, scheduling state and lifecycle timestamps (unix seconds)."""
        if phase not in POD_PHASES:
            raise ValueError(f"phase {phase!r} not in {POD_PHASES}")
        with self.lock:
            self.pods[(namespace, pod)] = _Pod(
                phase=phase,
                uid=uid or f"uid-{namespace}-{pod}",
                node=node,
                unschedulable=unschedulable,
                created=created,
                scheduled_time=scheduled_time,
                start_time=start_time,
                ready_time=ready_time,
                ready=(ready_time is not None) if ready is None else ready,
            )

    def remove_pod(self, namespace: str, pod: str) -> None:
        """Stop serving a pod (as after deletion)."""
        with self.lock:
            self.pods.pop((namespace, pod), None)

    def set_node(
        self,
        node: str,
        *,
        allocatable_gpus: int,
        capacity_gpus: int | None = None,
        ready: bool | None = True,
        unschedulable: bool = False,
    ) -> None:
        """Set a node's GPU allocatable/capacity and Ready condition (None = unknown)."""
        status = "unknown" if ready is None else ("true" if ready else "false")
        with self.lock:
            self.nodes[node] = _Node(
                allocatable_gpus=allocatable_gpus,
                capacity_gpus=allocatable_gpus if capacity_gpus is None else capacity_gpus,
                ready=status,
                unschedulable=unschedulable,
            )

    def remove_node(self, node: str) -> None:
        """Stop serving a node."""
        with self.lock:
            self.nodes.pop(node, None)

    def families(self) -> list[Family]:
        """KSM families (all gauges)."""

        def fam(name: str, help_text: str) -> Family:
            return Family(name, "gauge", help_text)

        dep_fams = {
            "spec": fam("kube_deployment_spec_replicas", "Number of desired pods for a deployment."),
            "current": fam("kube_deployment_status_replicas", "The number of replicas per deployment."),
            "ready": fam("kube_deployment_status_replicas_ready", "The number of ready replicas per deployment."),
            "available": fam(
                "kube_deployment_status_replicas_available", "The number of available replicas per deployment."
            ),
            "unavailable": fam(
                "kube_deployment_status_replicas_unavailable", "The number of unavailable replicas per deployment."
            ),
            "updated": fam("kube_deployment_status_replicas_updated", "The number of updated replicas per deployment."),
        }
        for (ns, name), d in sorted(self.deployments.items()):
            lbl = {"namespace": ns, "deployment": name}
            dep_fams["spec"].add(lbl, d.spec)
            dep_fams["current"].add(lbl, d.current)
            dep_fams["ready"].add(lbl, d.ready)
            dep_fams["available"].add(lbl, d.available)
            dep_fams["unavailable"].add(lbl, max(0.0, d.spec - d.available))
            dep_fams["updated"].add(lbl, d.updated)

        info = fam("kube_pod_info", "Information about pod.")
        phase = fam("kube_pod_status_phase", "The pods current phase.")
        unsched = fam("kube_pod_status_unschedulable", "Describes the unschedulable status for the pod.")
        scheduled = fam("kube_pod_status_scheduled", "Describes the status of the scheduling process for the pod.")
        ready = fam("kube_pod_status_ready", "Describes whether the pod is ready to serve requests.")
        created = fam("kube_pod_created", "Unix creation timestamp")
        sched_time = fam("kube_pod_status_scheduled_time", "Unix timestamp when pod moved into scheduled status")
        start = fam("kube_pod_start_time", "Start time in unix timestamp for a pod.")
        ready_time = fam("kube_pod_status_ready_time", "Readiness achieved time in unix timestamp for a pod.")
        for (ns, name), p in sorted(self.pods.items()):
            lbl = {"namespace": ns, "pod": name, "uid": p.uid}
            info.add({**lbl, "node": p.node or "", "created_by_kind": "ReplicaSet"}, 1)
            for ph in POD_PHASES:
                phase.add({**lbl, "phase": ph}, 1 if ph == p.phase else 0)
            if p.unschedulable:
                unsched.add(lbl, 1)
            is_scheduled = p.scheduled_time is not None or (p.node is not None and not p.unschedulable)
            for condition, val in (("true", is_scheduled), ("false", not is_scheduled), ("unknown", False)):
                scheduled.add({**lbl, "condition": condition}, 1 if val else 0)
            for condition, val in (("true", p.ready), ("false", not p.ready), ("unknown", False)):
                ready.add({**lbl, "condition": condition}, 1 if val else 0)
            for f, ts in (
                (created, p.created),
                (sched_time, p.scheduled_time),
                (start, p.start_time),
                (ready_time, p.ready_time),
            ):
                if ts is not None:
                    f.add(lbl, ts)

        alloc = fam(
            "kube_node_status_allocatable",
            "The allocatable for different resources of a node that are available for scheduling.",
        )
        cap = fam("kube_node_status_capacity", "The capacity for different resources of a node.")
        cond = fam("kube_node_status_condition", "The condition of a cluster node.")
        unsched_node = fam("kube_node_spec_unschedulable", "Whether a node can schedule new pods.")
        for node, n in sorted(self.nodes.items()):
            gpu = {"node": node, "resource": "nvidia_com_gpu", "unit": "integer"}
            alloc.add(gpu, n.allocatable_gpus)
            cap.add(gpu, n.capacity_gpus)
            for status in ("true", "false", "unknown"):
                cond.add({"node": node, "condition": "Ready", "status": status}, 1 if status == n.ready else 0)
            unsched_node.add({"node": node}, 1 if n.unschedulable else 0)

        return [
            *dep_fams.values(),
            info,
            phase,
            unsched,
            scheduled,
            ready,
            created,
            sched_time,
            start,
            ready_time,
            alloc,
            cap,
            cond,
            unsched_node,
        ]
