"""Start and stop a real Prometheus server for tests.

Why: the product queries Prometheus over HTTP with PromQL. Only the real
server reproduces what matters (extrapolating ``rate``, ``histogram_quantile``
interpolation, the ``exported_*`` rename under ``honor_labels: false``,
staleness, error shapes), so tests run the Debian ``prometheus`` binary
(2.42) installed by ``scripts/install-prometheus.sh``.

Each :class:`PrometheusServer` owns a temp dir with its config, data dir and
log file, listens on a random free port on 127.0.0.1 (never the packaged
service's :9090), and is stopped by its own PID. The data dir exists as soon
as the object is built, so history can be backfilled into it with
:func:`tests.prom.backfill.backfill` *before* :meth:`PrometheusServer.start`.

Config is written as JSON, which is valid YAML, so no YAML library is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
import urllib3

__all__ = [
    "PrometheusError",
    "PrometheusServer",
    "ScrapeJob",
    "ScrapeTarget",
    "free_port",
    "parse_prom_time",
]

READY_DEADLINE_SECONDS = 30.0
_ZERO_TIME_PREFIX = "0001-01-01"


class _QuietSession(requests.Session):
    """A session for the (deliberately) unverified test TLS, without warnings.

    ``verify`` is passed per request because requests lets ``REQUESTS_CA_BUNDLE``
    / ``CURL_CA_BUNDLE`` from the environment override ``Session.verify = False``.
    """

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            return super().request(*args, **kwargs)


class PrometheusError(RuntimeError):
    """The test Prometheus could not be started, or did not do what was awaited."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parse_prom_time(text: str) -> float:
    """Parse an RFC 3339 time from the Prometheus API (nanosecond fractions) to unix seconds."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, tz = match.groups()
    tz = "+00:00" if tz == "Z" else tz
    seconds = datetime.fromisoformat(base + tz).timestamp()
    if frac:
        seconds += float("0." + frac)
    return seconds


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``host:port`` target with its own extra target labels.

    The labels mimic what Kubernetes service discovery attaches to a target
    (``namespace``, ``pod``, ``container``, ``node`` …).
    """

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScrapeJob:
    """A scrape job: a name, its targets, and how labels are handled.

    ``targets`` may mix plain ``"host:port"`` strings and :class:`ScrapeTarget`.
    ``labels`` are static target labels added to every target of the job.
    ``honor_labels=False`` (the Prometheus default, and the DCGM chart's
    ServiceMonitor setting) renames clashing exposed labels to ``exported_*``;
    ``True`` keeps the exposed values (what kube-state-metrics scrapes use).
    """

    name: str
    targets: Sequence[str | ScrapeTarget]
    labels: Mapping[str, str] = field(default_factory=dict)
    honor_labels: bool = False
    scrape_interval: str | None = None
    scrape_timeout: str | None = None
    metrics_path: str = "/metrics"
    scheme: str = "http"
    params: Mapping[str, Sequence[str]] | None = None

    def static_configs(self) -> list[dict[str, Any]]:
        """Group targets into ``static_configs`` entries (one per distinct label set)."""
        configs: list[dict[str, Any]] = []
        for item in self.targets:
            target = ScrapeTarget(item) if isinstance(item, str) else item
            labels = {**self.labels, **target.labels}
            for entry in configs:
                if entry["labels"] == labels:
                    entry["targets"].append(target.address)
                    break
            else:
                configs.append({"targets": [target.address], "labels": labels})
        return configs


def _duration_seconds(text: str) -> float:
    """Parse a simple Prometheus duration such as ``1s``, ``500ms``, ``2m``, ``1h30m``."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"bad duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def _timeout_for(interval: str, timeout: str | None) -> str:
    """Scrape timeout must not exceed the interval; default to the interval (max 10 s)."""
    if timeout is not None:
        return timeout
    return interval if _duration_seconds(interval) <= 10 else "10s"


class PrometheusServer:
    """A real ``prometheus`` process on ``127.0.0.1:<random port>``.

    Use as a context manager (starts on enter, stops and removes its temp dir
    on exit) or call :meth:`start` / :meth:`stop` yourself. The data dir
    (:attr:`data_dir`) exists from construction on, so it can be backfilled
    first. :meth:`restart` keeps the data dir (e.g. to load more backfilled
    blocks, which Prometheus only reads at start-up).
    """

    def __init__(
        self,
        jobs: Iterable[ScrapeJob] = (),
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str | None = None,
        out_of_order_time_window: str | None = None,
        external_labels: Mapping[str, str] | None = None,
        rule_files: Sequence[str | Path] = (),
        extra_args: Sequence[str] = (),
        binary: str = "prometheus",
        base_dir: str | Path | None = None,
        keep_dir: bool = False,
        log_level: str = "info",
        tls: tuple[str | Path, str | Path] | None = None,
    ) -> None:
        self.jobs: list[ScrapeJob] = list(jobs)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.out_of_order_time_window = out_of_order_time_window
        self.external_labels = dict(external_labels or {})
        self.rule_files = [str(p) for p in rule_files]
        self.extra_args = list(extra_args)
        self.binary = binary
        self.keep_dir = keep_dir
        self.log_level = log_level
        self.tls = (str(tls[0]), str(tls[1])) if tls else None
        self.dir = Path(tempfile.mkdtemp(prefix="promtest-", dir=base_dir))
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.config_path = self.dir / "prometheus.yml"
        self.log_path = self.dir / "prometheus.log"
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._session = _QuietSession()
        if self.tls:
            self._session.verify = False  # self-signed test certificate

    # ----------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The Prometheus configuration this server runs with (as a dict)."""
        global_cfg: dict[str, Any] = {
            "scrape_interval": self.scrape_interval,
            "scrape_timeout": _timeout_for(self.scrape_interval, None),
            "evaluation_interval": self.evaluation_interval,
        }
        if self.external_labels:
            global_cfg["external_labels"] = self.external_labels
        scrape_configs = []
        for job in self.jobs:
            interval = job.scrape_interval or self.scrape_interval
            entry: dict[str, Any] = {
                "job_name": job.name,
                "honor_labels": job.honor_labels,
                "scrape_interval": interval,
                "scrape_timeout": _timeout_for(interval, job.scrape_timeout),
                "metrics_path": job.metrics_path,
                "scheme": job.scheme,
                "static_configs": job.static_configs(),
            }
            if job.params:
                entry["params"] = {k: list(v) for k, v in job.params.items()}
            scrape_configs.append(entry)
        cfg: dict[str, Any] = {"global": global_cfg, "scrape_configs": scrape_configs}
        if self.rule_files:
            cfg["rule_files"] = self.rule_files
        if self.out_of_order_time_window:
            cfg["storage"] = {"tsdb": {"out_of_order_time_window": self.out_of_order_time_window}}
        return cfg

    def write_config(self) -> Path:
        """Write :meth:`config` to :attr:`config_path` (JSON is valid YAML)."""
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        return self.config_path

    def set_jobs(self, jobs: Iterable[ScrapeJob], *, reload: bool = True) -> None:
        """Replace the scrape jobs; if running and ``reload``, hot-reload via ``/-/reload``."""
        self.jobs = list(jobs)
        self.write_config()
        if reload and self.running:
            resp = self._session.post(self.url + "/-/reload", timeout=10)
            if resp.status_code != 200:
                raise PrometheusError(f"reload failed: {resp.status_code} {resp.text}")

    # -------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (only valid once started)."""
        if self.port is None:
            raise PrometheusError("server not started")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while our process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self, port: int) -> list[str]:
        """The command line used to start the server on ``port``."""
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            f"--log.level={self.log_level}",
            *([f"--web.config.file={self.dir / 'web.yml'}"] if self.tls else []),
            *self.extra_args,
        ]

    def start(self, *, deadline: float = READY_DEADLINE_SECONDS) -> Self:
        """Write the config, start the process and wait until ``/-/ready`` answers 200."""
        if self.running:
            return self
        if shutil.which(self.binary) is None and not Path(self.binary).exists():
            raise PrometheusError(f"{self.binary!r} not found; run scripts/install-prometheus.sh")
        self.write_config()
        if self.tls:
            web = {"tls_server_config": {"cert_file": self.tls[0], "key_file": self.tls[1]}}
            (self.dir / "web.yml").write_text(json.dumps(web))
        last_error = ""
        for _attempt in range(3):  # a random port can be taken between pick and bind
            port = free_port()
            with self.log_path.open("ab") as log:
                log.write(f"\n=== start on port {port} at {time.time():.3f}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    self.command(port),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.port = port
            ok, last_error = self._wait_ready(deadline)
            if ok:
                return self
            self._kill()
            if "address already in use" not in self.log_tail():
                break
        raise PrometheusError(f"prometheus did not become ready: {last_error}\n--- log tail ---\n{self.log_tail()}")

    def _wait_ready(self, deadline: float) -> tuple[bool, str]:
        assert self._proc is not None
        end = time.monotonic() + deadline
        error = "timeout"
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                return False, f"process exited with code {self._proc.returncode}"
            try:
                resp = self._session.get(self.url + "/-/ready", timeout=2)
                if resp.status_code == 200:
                    return True, ""
                error = f"/-/ready answered {resp.status_code}"
            except requests.RequestException as exc:
                error = f"/-/ready: {exc.__class__.__name__}"
            time.sleep(0.1)
        return False, f"not ready after {deadline:.0f}s ({error})"

    def _kill(self, timeout: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._proc = None

    def stop(self, *, cleanup: bool | None = None) -> None:
        """Stop the process by its PID (SIGTERM, then SIGKILL) and remove the temp dir.

        ``cleanup`` defaults to ``not keep_dir``.
        """
        self._kill()
        self._session.close()
        if cleanup if cleanup is not None else not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> Self:
        """Stop and start again on a new port, keeping the data dir and config."""
        self._kill()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    # -------------------------------------------------------------------- API
    def api(
        self, path: str, params: Mapping[str, Any] | None = None, method: str = "GET", timeout: float = 10.0
    ) -> Any:
        """Call ``/api/v1/<path>`` and return ``data`` (raise on non-success)."""
        resp = self._session.request(method, f"{self.url}/api/v1/{path.lstrip('/')}", params=params, timeout=timeout)
        if resp.status_code == 204:
            return None
        body = resp.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {resp.status_code} {body}")
        return body.get("data")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` list."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self.api("query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str, at: float | None = None) -> float | None:
        """Instant query expected to return at most one sample; its value or None."""
        result = self.query(promql, at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} returned {len(result)} series")
        return float(result[0]["value"][1])

    def targets(self, job: str | None = None) -> list[dict[str, Any]]:
        """Active targets (optionally of one job) from ``/api/v1/targets``."""
        data = self.api("targets", {"state": "active"})
        targets: list[dict[str, Any]] = data["activeTargets"]
        if job is not None:
            targets = [t for t in targets if t.get("scrapePool") == job or t.get("labels", {}).get("job") == job]
        return targets

    def wait_for_scrape(self, job: str, timeout: float = 60.0, *, after: float | None = None) -> list[dict[str, Any]]:
        """Wait until every target of ``job`` is ``up`` with a completed scrape, queryable.

        With ``after`` (unix seconds), wait for a scrape that *started* after
        that moment, so state set before ``after`` is in the TSDB. Returns the
        targets. Raises :class:`PrometheusError` with the last target state.

        Prometheus updates a target's ``health``/``lastScrape`` *before* it commits that
        scrape's samples (``scrapeLoop.report`` runs ahead of the appender's ``Commit``), so
        the target state alone does not prove the samples can be queried yet: the scrape's
        own ``up`` sample, committed with them, must be visible too.
        """
        end = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < end:
            last = self.targets(job)
            if last and all(self._scraped(t, after) and self._committed(t) for t in last):
                return last
            time.sleep(0.1)
        summary = [{k: t.get(k) for k in ("scrapeUrl", "health", "lastScrape", "lastError")} for t in last]
        raise PrometheusError(f"job {job!r} not scraped within {timeout}s: {summary}")

    @staticmethod
    def _scraped(target: Mapping[str, Any], after: float | None) -> bool:
        last = str(target.get("lastScrape", ""))
        if target.get("health") != "up" or not last or last.startswith(_ZERO_TIME_PREFIX):
            return False
        return after is None or parse_prom_time(last) > after

    def _committed(self, target: Mapping[str, Any]) -> bool:
        """Whether the ``up`` sample of the target's last scrape is queryable (see :meth:`wait_for_scrape`)."""
        labels = target.get("labels") or {}
        selector = ",".join(f"{name}={json.dumps(str(value))}" for name, value in labels.items())
        result = self.query(f"timestamp(up{{{selector}}})")
        # The sample's timestamp is lastScrape truncated to milliseconds.
        return bool(result) and float(result[0]["value"][1]) >= parse_prom_time(str(target["lastScrape"])) - 0.001

    def wait_for_query(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] | None = None,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Poll an instant query until it is non-empty (and ``predicate(result)`` holds)."""
        end = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < end:
            result = self.query(promql)
            if result and (predicate is None or predicate(result)):
                return result
            time.sleep(0.1)
        raise PrometheusError(f"{promql!r} not satisfied within {timeout}s; last={result}")
