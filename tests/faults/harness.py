"""Building blocks of the fault matrix: a steerable proxy, clocks, a recording logger, evidence.

Why a module of its own: the matrix (``test_fault_matrix.py``) should read as a table of
faults; the machinery that injects them and the checks that find their evidence live here.

- :class:`MatrixProxy`: the harness's :class:`~tests.prom.faultproxy.FaultProxy` plus what the
  matrix needs: faults limited to HTTP methods or to queries (a regex over the query string
  and a form body), skipping the first N matching requests, a hook run when a fault is
  applied (another writer acting mid-request), and a *pinned* port, so stopping it is a real
  "connection refused" (open keep-alive connections are cut too) and starting it again
  restores the same URL.
- :class:`LaggingVllmExporter`: a vLLM exporter whose samples carry explicit timestamps
  ``lag`` seconds in the past (Prometheus stores them as they are: stale samples).
- :class:`RecordingLog`: a structlog-style logger keeping every event as a dict, handed to
  every component of one controller (no global logging configuration involved).
- :class:`OffsetClock` (the controller's clock: wall time plus a settable offset, for clock
  jumps); the leader elector's clock, advanced by hand, is :class:`tests.fakes.StepClock`.
- Evidence checks: :class:`LogEvent`, :class:`MetricSample`, :class:`KubeEvent`.
- :class:`ProcessPool`: ``autoscaler run`` processes that imported the controller ahead of
  time (:mod:`tests.faults.launcher`) for the rows that need real processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import unquote_plus, urlsplit

from autoscaler.policy.schema import Policy
from tests.prom.exporters import VllmExporter
from tests.prom.faultproxy import FaultProxy, ProxyFault, ProxyHandler, ProxyHTTPServer, RequestRecord

if TYPE_CHECKING:
    from tests.faults.conftest import Rig

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "Counts",
    "Evidence",
    "KubeEvent",
    "LaggingVllmExporter",
    "LogEvent",
    "MatrixProxy",
    "MetricSample",
    "OffsetClock",
    "ProcessPool",
    "RecordingLog",
    "StaticPolicySource",
    "WarmProcess",
    "json_events",
    "parse_sample",
    "scrape_metrics",
    "spawn_controller",
    "wait_until",
]


# ------------------------------------------------------------------------------------ proxy
class _MatrixHandler(ProxyHandler):
    """The harness handler, but faults may also match the form body of a POST (PromQL queries).

    Nagle's algorithm is off: the handler writes headers and body separately, which with
    the client's delayed ACKs costs ~40 ms per proxied request otherwise.
    """

    disable_nagle_algorithm = True

    def serve_request(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        parts = urlsplit(self.path)
        text = parts.query
        if body and "form-urlencoded" in self.headers.get("Content-Type", ""):
            text = f"{text}&{body.decode('latin-1')}"
        fault = proxy.take_fault(self.command, parts.path, text)
        try:
            if fault is None:
                self._forward(body)
            elif fault.mode == "status":
                self._send_simple(fault.code, fault.body, fault.content_type)
            elif fault.mode == "garbage":
                self._send_simple(200, fault.body, fault.content_type)
            elif fault.mode == "close":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            elif fault.mode == "delay":
                if proxy.stopping.wait(fault.seconds):
                    self.close_connection = True
                    return
                self._forward(body)
            elif fault.mode == "trickle":
                self._forward(body, trickle=fault.seconds)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _PinnedServer(ProxyHTTPServer):
    """The proxy's server on a given port, tracking open connections so they can be dropped."""

    def __init__(self, proxy: FaultProxy, host: str, port: int) -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        ThreadingHTTPServer.__init__(self, (host, port), _MatrixHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut every open (keep-alive) connection: a stopped server answers nothing more."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class MatrixProxy(FaultProxy):
    """A :class:`FaultProxy` with method/query filters, a skip count and a pinned port.

    ``arm(mode, ...)`` sets a fault like :meth:`FaultProxy.set_mode` plus ``methods`` (only
    these HTTP methods), ``query`` (a regex searched in the URL-decoded query string and form
    body), ``skip`` (let the first N matching requests pass) and ``on_fault`` (called in the
    proxy's thread each time the fault is applied, before the answer: e.g. another writer
    acting between the client's read and write). :meth:`stop` closes the port (clients get
    "connection refused"); :meth:`start` listens on the same port again.
    """

    def __init__(self, upstream: str, **kwargs: Any) -> None:
        super().__init__(upstream, **kwargs)
        self._pinned = 0
        self._methods: frozenset[str] | None = None
        self._query: re.Pattern[str] | None = None
        self._skip = 0
        self._on_fault: Callable[[], None] | None = None

    def start(self) -> Self:
        """Listen on the pinned port (a random one the first time) and serve in a daemon thread."""
        if self._server is None:
            self.stopping.clear()
            server = _PinnedServer(self, "127.0.0.1", self._pinned)
            self._pinned = int(server.server_address[1])
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="matrix-proxy", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and cut open connections (clients get "connection refused" until :meth:`start`)."""
        server = self._server
        super().stop()
        if isinstance(server, _PinnedServer):
            server.drop_connections()

    @property
    def running(self) -> bool:
        """Whether the port is open."""
        return self._server is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid while stopped too: the port is pinned)."""
        return f"http://127.0.0.1:{self._pinned}"

    def arm(
        self,
        mode: str,
        *,
        methods: Iterable[str] | None = None,
        query: str | None = None,
        skip: int = 0,
        on_fault: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Set a fault (see the class docstring); ``kwargs`` go to :meth:`FaultProxy.set_mode`."""
        with self._lock:
            self._methods = frozenset(m.upper() for m in methods) if methods is not None else None
            self._query = re.compile(query) if query is not None else None
            self._skip = skip
            self._on_fault = on_fault
        self.set_mode(mode, **kwargs)

    def passthrough(self) -> None:
        """Forward everything unchanged (filters, skip count and hook cleared)."""
        with self._lock:
            self._methods, self._query, self._skip, self._on_fault = None, None, 0, None
        super().passthrough()

    def take_fault(self, method: str, path: str, query: str) -> ProxyFault | None:
        with self._lock:
            f = self._fault
            selected = (
                f.mode != "passthrough"
                and (self._methods is None or method in self._methods)
                and (self._query is None or self._query.search(unquote_plus(query)) is not None)
                and (f.only_paths is None or f.only_paths.search(path) is not None)
            )
            if selected and self._skip > 0:
                self._skip -= 1
                selected = False
            if not selected:
                self.counts[path] += 1
                self.records.append(RequestRecord(time.time(), method, path, query[:200], "passthrough"))
                return None
            hook = self._on_fault
        fault = super().take_fault(method, path, query[:200])
        if fault is not None and hook is not None:
            hook()
        return fault


# -------------------------------------------------------------------------------- exporters
class LaggingVllmExporter(VllmExporter):
    """A vLLM exporter whose samples carry explicit timestamps ``lag_seconds`` in the past.

    Prometheus stores such samples at their own timestamps and writes no staleness markers
    for them, so its answers hold samples older than the controller's ``staleAfterSeconds``.
    """

    def __init__(self, model_name: str, *, lag_seconds: float, **kwargs: Any) -> None:
        super().__init__(model_name, **kwargs)
        self.lag_seconds = lag_seconds

    def render(self) -> str:
        """The exposition with a timestamp (ms) on every sample line."""
        stamp = int((time.time() - self.lag_seconds) * 1000)
        lines = super().render().splitlines()
        return "\n".join(line if not line or line.startswith("#") else f"{line} {stamp}" for line in lines) + "\n"


# ----------------------------------------------------------------------------------- clocks
class OffsetClock:
    """The controller's clock: wall time plus :attr:`offset` seconds (a clock jump sets it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Unix seconds, shifted by the offset."""
        return time.time() + self.offset


# ------------------------------------------------------------------------------------- logs
class RecordingLog:
    """structlog-style logger keeping every event (``{"event": ..., "level": ..., **fields}``)."""

    def __init__(self, records: list[dict[str, Any]] | None = None, context: Mapping[str, Any] | None = None) -> None:
        self.records: list[dict[str, Any]] = records if records is not None else []
        self.context = dict(context or {})

    def bind(self, **kw: Any) -> RecordingLog:
        """A logger adding ``kw`` to every event, sharing the records."""
        return RecordingLog(self.records, {**self.context, **kw})

    def _emit(self, level: str, event: str, kw: Mapping[str, Any]) -> None:
        self.records.append({"event": event, "level": level, **self.context, **kw})

    def debug(self, event: str, **kw: Any) -> None:
        """Record a debug event."""
        self._emit("debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        """Record an info event."""
        self._emit("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        """Record a warning event."""
        self._emit("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        """Record an error event."""
        self._emit("error", event, kw)

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """Recorded events called ``name`` (from record index ``since`` on)."""
        return [r for r in list(self.records)[since:] if r.get("event") == name]


class StaticPolicySource:
    """A policy source that never changes (generation 1)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def current(self) -> tuple[Policy, int]:
        """The policy, generation 1."""
        return self.policy, 1


# ----------------------------------------------------------------------------- observations
@dataclass(frozen=True)
class Counts:
    """Serving replicas and placeholder pods in the spec, as the API server says."""

    replicas: int
    placeholders: int

    @property
    def total(self) -> int:
        """Capacity asked for: serving plus placeholders."""
        return self.replicas + self.placeholders


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


_MISSING = object()


class Evidence(Protocol):
    """Something that must exist after a fault: ``missing(rig)`` says what was not found."""

    def missing(self, rig: Rig) -> str | None:
        """``None`` when found, else a description of what is missing."""
        ...


@dataclass(frozen=True)
class LogEvent:
    """A structured log event ``event`` with ``fields`` (dotted paths allowed, e.g. ``observation.problems.load``).

    ``contains`` must be a substring of its ``error`` field. ``source`` is ``controller``
    (the in-process controller's log) or the identity of an ``autoscaler run`` subprocess.
    """

    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    contains: str | None = None
    source: str = "controller"

    def missing(self, rig: Rig) -> str | None:
        """See :class:`Evidence`."""
        if self.source == "controller":
            records = rig.log.records[rig.log_mark :]
        else:
            records = json_events(rig.process_logs[self.source])
        for record in records:
            if record.get("event") != self.event:
                continue
            if any(_dig(record, k) != v for k, v in self.fields.items()):
                continue
            if self.contains is not None and self.contains not in str(record.get("error", "")):
                continue
            return None
        seen = sorted({str(r.get("event")) for r in records})
        wanted = f"{self.event} {dict(self.fields)} (error contains {self.contains!r})"
        return f"log event {wanted} from {self.source}; seen {seen}"


@dataclass(frozen=True)
class MetricSample:
    """A sample of the controller's own metrics with ``labels`` and a value in ``[at_least, at_most]``.

    ``source`` is ``controller`` (the in-process registry; the increase since the fault was
    injected) or a subprocess identity (its ``/metrics``, scraped while it ran).
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    at_least: float = 1.0
    at_most: float | None = None
    source: str = "controller"
    #: Add the target's ``namespace`` and ``deployment`` labels.
    per_target: bool = False
    #: Compare the increase since the fault was injected (counters), not the value (gauges).
    delta: bool = True

    def missing(self, rig: Rig) -> str | None:
        """See :class:`Evidence`."""
        labels = dict(self.labels)
        if self.per_target:
            labels.update(namespace=rig.world.namespace, deployment=rig.world.deployment)
        value: float | None
        if self.source != "controller":
            value = parse_sample(rig.process_metrics.get(self.source, ""), self.name, labels)
        elif self.delta:
            value = rig.metric_since_mark(self.name, labels)
        else:
            value = rig.telemetry.registry.get_sample_value(self.name, labels)
        ok = value is not None and value >= self.at_least and (self.at_most is None or value <= self.at_most)
        wanted = f"{self.name}{labels} in [{self.at_least}, {self.at_most}]"
        return None if ok else f"metric {wanted} from {self.source}: {value}"


@dataclass(frozen=True)
class KubeEvent:
    """A core/v1 Event with ``reason`` about the object ``kind``/``name`` (default: the target), new in this row."""

    reason: str
    kind: str = "Deployment"
    #: The object's name, or the key of ``rig.notes`` holding it (``None``: the target).
    name: str | None = None
    note: str | None = None
    type_: str | None = None

    def missing(self, rig: Rig) -> str | None:
        """See :class:`Evidence`."""
        name = str(rig.notes[self.note]) if self.note else self.name or rig.world.deployment
        for event in rig.world.core.list_namespaced_event(rig.world.namespace).items:
            obj = event.involved_object
            if event.reason != self.reason or obj.kind != self.kind or obj.name != name:
                continue
            if self.type_ is not None and event.type != self.type_:
                continue
            before = rig.event_counts.get(event.metadata.name, 0)
            if (event.count or 1) > before:
                return None
        return f"Kubernetes Event {self.reason} on {self.kind}/{name}"


def parse_sample(text: str, name: str, labels: Mapping[str, str]) -> float | None:
    """The value of sample ``name`` whose labels include ``labels`` in a text exposition."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


# ------------------------------------------------------------------------------ subprocesses
class WarmProcess:
    """A process that imported the controller and waits for its ``autoscaler run`` arguments.

    See :mod:`tests.faults.launcher`: the import cost is paid ahead of time, in parallel with
    other rows; :meth:`run` then makes it ``autoscaler run`` with the given arguments.
    """

    def __init__(self, boot_log: Path) -> None:
        self.boot_log = boot_log
        with boot_log.open("wb") as log:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.launcher"],
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def run(self, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """Start ``autoscaler <argv>`` in this process, its stderr going to ``log_path``."""
        if self.proc.poll() is not None:
            raise AssertionError(f"the launcher died: {self.boot_log.read_text(errors='replace')[-2000:]}")
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"argv": argv, "stderr": str(log_path)}) + "\n").encode())
        self.proc.stdin.close()
        return self.proc

    def discard(self) -> None:
        """Let an unused process exit (empty stdin)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class ProcessPool:
    """Warm controller processes, started when the module starts (one per row that needs one)."""

    def __init__(self, tmp: Path, size: int) -> None:
        self.tmp = tmp
        self._count = 0
        self._idle = [self._new() for _ in range(size)]

    def _new(self) -> WarmProcess:
        self._count += 1
        return WarmProcess(self.tmp / f"launcher-{self._count}.log")

    def take(self) -> WarmProcess:
        """A warm process (a new one if the pool is empty)."""
        return self._idle.pop(0) if self._idle else self._new()

    def close(self) -> None:
        """Discard the processes nobody took."""
        while self._idle:
            self._idle.pop().discard()


def spawn_controller(
    pool: ProcessPool,
    *,
    policy: Path,
    prometheus_url: str,
    kubeconfig: Path,
    namespace: str,
    lease: str,
    identity: str,
    port: int,
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """Start ``autoscaler run`` (leader election on) with its JSON log going to ``log_path``."""
    argv = [
        "run",
        "--policy", str(policy),
        "--prometheus-url", prometheus_url,
        "--kubeconfig", str(kubeconfig),
        "--lease-namespace", namespace,
        "--lease-name", lease,
        "--identity", identity,
        "--listen", f"127.0.0.1:{port}",
    ]  # fmt: skip
    return pool.take().run(argv, log_path)


def json_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a subprocess (other lines ignored).

    A warning written by another thread (urllib3's InsecureRequestWarning for the
    insecure-skip-tls-verify kubeconfig) can land on the same line right after an event, so
    each line is decoded up to the end of its first JSON document; a line still being
    written (no complete document yet) is skipped.
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    decoder = json.JSONDecoder()
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(decoder.raw_decode(line)[0])
    return out


def scrape_metrics(port: int) -> str:
    """A subprocess's ``/metrics`` text, or ``""`` while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns a truthy value (real servers need real time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
