"""A real, throw-away Kubernetes control plane for the cluster tests.

Why: the autoscaler's correctness depends on real Kubernetes behaviour (Deployment scaling via
the ``scale`` subresource, priority-based preemption of placeholder pods, RBAC for its
ServiceAccount). Mocks would only encode our assumptions about that behaviour. There is no
Docker/kind on the test machines, so this module runs etcd plus the real kube-apiserver,
kube-scheduler and kube-controller-manager (built from Debian's ``kubernetes`` source package by
``scripts/build-control-plane.sh``) as local processes on 127.0.0.1. There are no kubelets: the
node layer is played by :mod:`tests.cluster.node_agent`.

Every process is started in its own session (so a dying shell cannot take it down and so it
can be stopped by its PID only), logs to a file in a private temp dir, and is stopped with
SIGTERM then SIGKILL when the :class:`ControlPlane` context exits.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import kubernetes.client
from kubernetes.client import ApiClient

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")
CP_BINARIES = ("kube-apiserver", "kube-scheduler", "kube-controller-manager")
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"
# deployment/replicaset: Deployments create pods. garbagecollector: owned objects (ReplicaSets,
# pods) are deleted with their owner. namespace: deleted namespaces are emptied and finalized.
CONTROLLERS = "deployment,replicaset,garbagecollector,namespace"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started, or queried."""


def find_binaries(*, build: bool = True) -> Path:
    """Return the directory holding kube-apiserver, kube-scheduler and kube-controller-manager.

    ``KUBE_CP_BIN`` wins if set. Otherwise ``scripts/build-control-plane.sh`` is run: it prints
    the cached bin dir in well under a second when the binaries are already built, and builds
    them (several minutes, needs root/apt) otherwise. Raises :class:`ControlPlaneError` with the
    build log tail if that fails, so a missing build is a loud failure, never a skip.
    """
    env_dir = os.environ.get("KUBE_CP_BIN")
    if env_dir:
        bin_dir = Path(env_dir)
        missing = [b for b in CP_BINARIES if not (bin_dir / b).is_file()]
        if missing:
            raise ControlPlaneError(f"KUBE_CP_BIN={bin_dir} lacks {', '.join(missing)}")
        return bin_dir
    if not build:
        raise ControlPlaneError("KUBE_CP_BIN is not set and building was disabled")
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed (exit {proc.returncode}); the cluster tests need the "
            f"control-plane binaries. Run it (as root, with access to the Debian mirror) or set "
            f"KUBE_CP_BIN.\n--- build log tail ---\n{tail}"
        )
    return Path(lines[-1])


def find_etcd() -> Path:
    """Return the etcd binary (``KUBE_CP_ETCD``, ``PATH``, or Debian's /usr/bin/etcd)."""
    candidates = [os.environ.get("KUBE_CP_ETCD"), shutil.which("etcd"), "/usr/bin/etcd"]
    for cand in candidates:
        if cand and Path(cand).is_file():
            return Path(cand)
    raise ControlPlaneError("etcd not found: install Debian's etcd-server or set KUBE_CP_ETCD")


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct currently free TCP ports on 127.0.0.1."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class _Proc:
    """A started component: its process and log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


class ControlPlane:
    """etcd + kube-apiserver + kube-scheduler + kube-controller-manager on loopback.

    Use as a context manager::

        with ControlPlane() as cp:
            core = kubernetes.client.CoreV1Api(cp.api_client())

    Attributes available after start: :attr:`server_url`, :attr:`admin_token`,
    :attr:`kubeconfig_path` (admin, token auth, insecure-skip-tls-verify), :attr:`workdir`.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        etcd_binary: Path | None = None,
        startup_timeout_s: float = 60.0,
        keep_workdir: bool = False,
        extra_flags: Mapping[str, Sequence[str]] | None = None,
        scheduler_pod_backoff_s: tuple[int, int] = (1, 1),
    ) -> None:
        """Configure (not start) a control plane; binaries are located on :meth:`start`.

        ``extra_flags`` maps a component name (see ``COMPONENTS``) to extra command-line flags,
        e.g. ``{"kube-controller-manager": ["--v=4"]}``.

        ``scheduler_pod_backoff_s`` is the scheduler's (initial, max) retry backoff for
        unschedulable pods. Kubernetes defaults to (1, 10): every failed attempt doubles it, and
        a pod that failed on a node that was still tainted not-ready waits 4-8 s more after the
        node becomes usable. That is noise next to a real cold start of minutes but dominates
        the compressed one of the tests, so the default here is (1, 1).
        """
        self._bin_dir = bin_dir
        self._etcd_binary = etcd_binary
        self.startup_timeout_s = startup_timeout_s
        self.keep_workdir = keep_workdir
        self._extra_flags = {k: list(v) for k, v in (extra_flags or {}).items()}
        self.scheduler_pod_backoff_s = scheduler_pod_backoff_s
        unknown = set(self._extra_flags) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"extra_flags for unknown components: {sorted(unknown)}")
        self._procs: dict[str, _Proc] = {}
        self._workdir: Path | None = None
        self._etcd_dir: Path | None = None
        self._server_url: str | None = None
        self.admin_token = secrets.token_hex(16)
        self._token_seq = 0
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> Self:
        """Start the control plane (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop every component and remove the temp dir."""
        self.stop()

    def start(self) -> Self:
        """Start all components and wait until the apiserver reports ``/readyz``.

        Retries with fresh ports if a port was grabbed by someone else in between (the free-port
        probe and the bind are not atomic). Raises :class:`ControlPlaneError` with log tails.
        """
        t0 = time.monotonic()
        bin_dir = self._bin_dir or find_binaries()
        etcd = self._etcd_binary or find_etcd()
        for attempt in range(3):
            self._workdir = Path(tempfile.mkdtemp(prefix="kube-cp-"))
            try:
                self._start_once(bin_dir, etcd)
            except ControlPlaneError as err:
                self._stop_processes()
                self._remove_workdir()
                if "address already in use" in str(err) and attempt < 2:
                    continue
                raise
            except BaseException:  # e.g. KeyboardInterrupt: never leak processes
                self._stop_processes()
                self._remove_workdir()
                raise
            break
        # Processes run in their own sessions, so nothing else would stop them if the test
        # process exits without reaching stop() (e.g. an exception during fixture setup).
        atexit.register(self.stop)
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop all components (SIGTERM, then SIGKILL after 10 s) and delete the temp dir.

        Idempotent.
        """
        atexit.unregister(self.stop)
        self._stop_processes()
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self._etcd_dir is not None:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
            self._etcd_dir = None
        if self._workdir is not None and not self.keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _stop_processes(self) -> None:
        # Reverse start order: clients first, etcd last.
        for name in reversed(list(self._procs)):
            proc = self._procs[name].popen
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self._procs.clear()

    def _start_once(self, bin_dir: Path, etcd: Path) -> None:
        wd = self.workdir
        etcd_port, peer_port, etcd_metrics_port, api_port, sched_port, cm_port = free_ports(6)
        self._server_url = f"https://127.0.0.1:{api_port}"

        # Credentials: SA signing key pair and a static admin token.
        sa_key, sa_pub = wd / "sa.key", wd / "sa.pub"
        self._run(["openssl", "genrsa", "-out", str(sa_key), "2048"])
        self._run(["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)])
        token_file = wd / "tokens.csv"
        token_file.write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        self._write_kubeconfig(self.kubeconfig_path, self.admin_token, "admin")

        self._spawn(
            "etcd",
            [
                str(etcd),
                "--name=t",
                f"--data-dir={self._etcd_data_dir()}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=t=http://127.0.0.1:{peer_port}",
                f"--listen-metrics-urls=http://127.0.0.1:{etcd_metrics_port}",
            ],
        )
        self._wait_http_ok("etcd", f"http://127.0.0.1:{etcd_port}/health")

        (wd / "certs").mkdir()
        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={api_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={wd / 'certs'}",
                f"--token-auth-file={token_file}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ],
        )
        self._wait_http_ok("kube-apiserver", f"{self.server_url}/readyz", token=self.admin_token)

        # Scheduler: a config file, to serve /healthz on a private loopback port (a readiness
        # probe without the default 0.0.0.0:10251 clash) and to cap the per-pod retry backoff.
        sched_cfg = wd / "kube-scheduler.yaml"
        initial_backoff, max_backoff = self.scheduler_pod_backoff_s
        sched_cfg.write_text(
            "apiVersion: kubescheduler.config.k8s.io/v1beta1\n"
            "kind: KubeSchedulerConfiguration\n"
            f"clientConnection:\n  kubeconfig: {json.dumps(str(self.kubeconfig_path))}\n"
            "leaderElection:\n  leaderElect: false\n"
            f'healthzBindAddress: "127.0.0.1:{sched_port}"\n'
            f'metricsBindAddress: "127.0.0.1:{sched_port}"\n'
            f"podInitialBackoffSeconds: {initial_backoff}\n"
            f"podMaxBackoffSeconds: {max_backoff}\n"
        )
        self._spawn(
            "kube-scheduler",
            [str(bin_dir / "kube-scheduler"), f"--config={sched_cfg}", "--secure-port=0"],
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                f"--controllers={CONTROLLERS}",
                "--address=127.0.0.1",
                f"--port={cm_port}",
                "--secure-port=0",
            ],
        )
        self._wait_http_ok("kube-scheduler", f"http://127.0.0.1:{sched_port}/healthz")
        self._wait_http_ok("kube-controller-manager", f"http://127.0.0.1:{cm_port}/healthz")

    def _etcd_data_dir(self) -> Path:
        """etcd's data dir: on tmpfs (/dev/shm) when available.

        etcd 3.4 (Debian) has no ``--unsafe-no-fsync``; on a shared CI disk its fsyncs can take
        long enough to slow the apiserver down. The data is throw-away anyway.
        """
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            self._etcd_dir = Path(tempfile.mkdtemp(prefix="kube-cp-etcd-", dir=shm))
            return self._etcd_dir
        return self.workdir / "etcd-data"

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ControlPlaneError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        cmd = [*cmd, *self._extra_flags.get(name, [])]
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._procs[name] = _Proc(name, popen, log_path)

    def _wait_http_ok(self, name: str, url: str, *, token: str | None = None) -> None:
        """Poll ``url`` until HTTP 200 (TLS unverified: the cert is being generated)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + self.startup_timeout_s
        last = "no answer yet"
        while True:
            proc = self._procs[name].popen
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode} during startup\n"
                    f"--- {name} log tail ---\n{self.log_tail(name, 40)}"
                )
            try:
                req = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback URL)
                with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[:300]!r}"
            except (OSError, urllib.error.URLError) as err:
                last = repr(err)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready at {url} after {self.startup_timeout_s:.0f} s "
                    f"(last: {last})\n--- {name} log tail ---\n{self.log_tail(name, 40)}"
                )
            time.sleep(0.1)

    # ----------------------------------------------------------------------------------------
    # Accessors

    @property
    def workdir(self) -> Path:
        """The private temp dir (logs, certs, etcd data, kubeconfigs)."""
        if self._workdir is None:
            raise ControlPlaneError("control plane not started")
        return self._workdir

    @property
    def server_url(self) -> str:
        """``https://127.0.0.1:PORT`` of the apiserver."""
        if self._server_url is None:
            raise ControlPlaneError("control plane not started")
        return self._server_url

    @property
    def kubeconfig_path(self) -> Path:
        """Admin kubeconfig (static token of a ``system:masters`` user)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_cert_path(self) -> Path:
        """The apiserver's self-signed serving certificate (with its CA); valid for 127.0.0.1."""
        return self.workdir / "certs" / "apiserver.crt"

    @property
    def pids(self) -> dict[str, int]:
        """PID of each running component."""
        return {name: p.popen.pid for name, p in self._procs.items()}

    def log_path(self, component: str) -> Path:
        """Path of a component's combined stdout/stderr log."""
        return self.workdir / f"{component}.log"

    def log_tail(self, component: str, n: int = 50) -> str:
        """Last ``n`` lines of a component's log (empty string if there is none yet)."""
        path = self.log_path(component)
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode(errors="replace")
        return "\n".join(data.splitlines()[-n:])

    def assert_running(self) -> None:
        """Raise :class:`ControlPlaneError` (with its log tail) if a component has exited."""
        for name, p in self._procs.items():
            code = p.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{name} exited with {code}\n--- {name} log tail ---\n{self.log_tail(name, 40)}"
                )

    def rss_bytes(self) -> dict[str, int]:
        """Resident set size of each running component (from /proc), for diagnostics."""
        out: dict[str, int] = {}
        for name, p in self._procs.items():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p.popen.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1]) * 1024
        return out

    # ----------------------------------------------------------------------------------------
    # Clients and credentials

    def api_client(self, token: str | None = None) -> ApiClient:
        """A new :class:`kubernetes.client.ApiClient` for this apiserver.

        Configured directly (the global default configuration is not touched); authenticates
        with ``token`` (default: the admin token) and verifies TLS against the apiserver's
        self-signed certificate (:attr:`ca_cert_path`), so there are no insecure-request
        warnings.
        """
        cfg = kubernetes.client.Configuration()
        cfg.host = self.server_url
        cfg.verify_ssl = True
        cfg.ssl_ca_cert = str(self.ca_cert_path)
        cfg.api_key = {"authorization": token or self.admin_token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return ApiClient(configuration=cfg)

    def make_kubeconfig_for_token(self, token: str, name: str | None = None, *, verify_tls: bool = False) -> Path:
        """Write a kubeconfig that authenticates with ``token`` and return its path.

        By default it uses ``insecure-skip-tls-verify`` like the admin kubeconfig (works with
        any client); ``verify_tls=True`` pins :attr:`ca_cert_path` instead, which avoids
        urllib3's InsecureRequestWarning in Python clients.
        """
        self._token_seq += 1
        user = name or f"user{self._token_seq}"
        path = self.workdir / f"{user}-{self._token_seq}.kubeconfig"
        self._write_kubeconfig(path, token, user, verify_tls=verify_tls)
        return path

    def service_account_token(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> str:
        """Issue a bound token for ServiceAccount ``namespace/name`` via the TokenRequest API.

        The ServiceAccount must exist. The token authenticates as
        ``system:serviceaccount:<namespace>:<name>``, so RBAC tests see exactly the
        permissions granted by their Role/RoleBinding.
        """
        with self.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            body = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(audiences=[SA_ISSUER], expiration_seconds=expiration_seconds)
            )
            resp = core.create_namespaced_service_account_token(name, namespace, body)
        token = resp.status.token if resp.status else None
        if not token:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
        return str(token)

    def _write_kubeconfig(self, path: Path, token: str, user: str, *, verify_tls: bool = False) -> None:
        # JSON is valid YAML; avoids a PyYAML dependency here.
        cluster: dict[str, object] = {"server": self.server_url}
        if verify_tls:
            cluster["certificate-authority"] = str(self.ca_cert_path)
        else:
            cluster["insecure-skip-tls-verify"] = True
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
            "current-context": user,
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)


def token_subject(token: str) -> str:
    """Decode the ``sub`` claim of a ServiceAccount JWT (no signature check; for assertions)."""
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return str(json.loads(base64.urlsafe_b64decode(payload))["sub"])
