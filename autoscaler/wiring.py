"""``autoscaler run``: the composition root of the in-cluster controller.

The only place that picks implementations: Prometheus for metrics, the Kubernetes API for
the cluster (a dry-run wraps it so nothing is written), a ConfigMap or a file for the
policy, a Lease for leader election. Start-up problems (no Prometheus, no RBAC, a bad
kubeconfig or policy) are found here, before the loop starts, and end the process with
one clear line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from autoscaler.controller import Controller, Mode
from autoscaler.errors import ActuationError, ConfigError, Forbidden, MetricsUnavailable, NotFound, PolicyRejected
from autoscaler.logs import configure, get_logger
from autoscaler.policy.schema import Policy
from autoscaler.ports import LeaderElector, PolicySource
from autoscaler.service import AlwaysLeader, Service
from autoscaler.telemetry import Health, Telemetry, serve


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        """Unix seconds."""
        return time.time()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` options to ``parser``."""
    policy = parser.add_mutually_exclusive_group(required=True)
    policy.add_argument("--policy", type=Path, help="policy file (re-read when it changes)")
    policy.add_argument("--policy-configmap", metavar="NS/NAME", help="ConfigMap holding the policy (watched)")
    parser.add_argument("--policy-key", default="policy.yaml", help="ConfigMap data key (default: %(default)s)")
    parser.add_argument("--prometheus-url", required=True)
    parser.add_argument("--prometheus-bearer-token-file", type=Path, default=None)
    parser.add_argument("--prometheus-ca-file", type=Path, default=None)
    parser.add_argument("--prometheus-insecure-skip-tls-verify", action="store_true")
    parser.add_argument("--prometheus-timeout", type=float, default=10.0, help="per-query timeout (s)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default: in-cluster, else ~/.kube/config")
    parser.add_argument("--context", default=None)
    parser.add_argument("--dry-run", action="store_true", help="log every decision, write nothing (all targets)")
    parser.add_argument("--once", action="store_true", help="run a single cycle and exit")
    parser.add_argument("--listen", default="0.0.0.0:8080", help="/metrics, /healthz, /readyz (host:port)")
    parser.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lease-namespace", default=None, help="default: the policy ConfigMap's namespace")
    parser.add_argument("--lease-name", default="gpu-predictive-autoscaler")
    parser.add_argument("--identity", default=None, help="default: $POD_NAME or the hostname")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    """Start the controller; returns the process exit code."""
    configure(fmt=args.log_format, level=args.log_level)
    log = get_logger(component="controller")
    telemetry = Telemetry()
    stop = threading.Event()
    from autoscaler.adapters.prometheus import PrometheusSource
    from autoscaler.kube.client import connect
    from autoscaler.kube.cluster import KubeCluster
    from autoscaler.kube.placeholders import SUFFIX as PLACEHOLDER_SUFFIX

    try:
        api = connect(kubeconfig=args.kubeconfig, context=args.context)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError("kubeconfig", f"cannot load {args.kubeconfig or 'the kubeconfig'}: {exc}") from exc
    policy_source = _policy_source(args, api, telemetry, log)
    policy, _ = policy_source.current()
    metrics = PrometheusSource(
        args.prometheus_url,
        bearer_token_file=args.prometheus_bearer_token_file,
        ca_file=args.prometheus_ca_file,
        verify_tls=not args.prometheus_insecure_skip_tls_verify,
        timeout_seconds=args.prometheus_timeout,
        placeholder_suffix=PLACEHOLDER_SUFFIX,
        log=get_logger(component="prometheus"),
    )
    cluster = KubeCluster(api, log=get_logger(component="kube"))
    _check_prometheus(metrics, policy, args.prometheus_url)
    _check_cluster(cluster, policy, log)
    mode: Mode | None = "dry-run" if args.dry_run else None
    controller = Controller(policy=policy, metrics=metrics, cluster=cluster, clock=SystemClock(),
                            mode_override=mode, log=log)
    elector = _elector(args, api, log) if args.leader_election and not args.once else AlwaysLeader()
    health = Health(max_cycle_age=max(120.0, 4 * policy.loop_interval_seconds))
    service = Service(controller=controller, policy_source=policy_source, elector=elector,
                      telemetry=telemetry, health=health, log=log)
    if args.once:
        result = service.cycle()
        _stop_source(policy_source)
        return 0 if result is not None and result.metrics_error is None else 1
    host, _, port = args.listen.rpartition(":")
    server = serve(telemetry=telemetry, health=health, host=host or "0.0.0.0", port=int(port))  # noqa: S104
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service.run(stop)
    finally:
        server.shutdown()
        _stop_source(policy_source)
        metrics.close()
    return 0


def _policy_source(args: argparse.Namespace, api: Any, telemetry: Telemetry, log: Any) -> PolicySource:
    from autoscaler.kube.policy_source import ConfigMapPolicySource, FilePolicySource

    def rejected(_exc: PolicyRejected) -> None:
        telemetry.policy_rejected.inc()

    if args.policy is not None:
        return FilePolicySource(args.policy, on_rejected=rejected, log=log)
    namespace, sep, name = args.policy_configmap.partition("/")
    if not sep or not namespace or not name:
        raise ConfigError("--policy-configmap", f"expected NAMESPACE/NAME, got {args.policy_configmap!r}")
    return ConfigMapPolicySource(api, namespace=namespace, name=name, key=args.policy_key,
                                 on_rejected=rejected, log=log).start()


def _stop_source(source: PolicySource) -> None:
    stop = getattr(source, "stop", None)
    if callable(stop):
        stop()


def _elector(args: argparse.Namespace, api: Any, log: Any) -> LeaderElector:
    from autoscaler.kube.leader import LeaseElector

    namespace = args.lease_namespace
    if namespace is None and args.policy_configmap:
        namespace = args.policy_configmap.partition("/")[0]
    if namespace is None:
        raise ConfigError("--lease-namespace", "required with --policy and leader election on")
    identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()
    return LeaseElector(api, namespace=namespace, name=args.lease_name, identity=identity, log=log).start()


def _check_prometheus(metrics: Any, policy: Policy, url: str) -> None:
    """Fail start-up when Prometheus cannot answer at all (a target with no data is fine)."""
    metrics.observe(list(policy.targets), time.time())
    if metrics.last_loop.unreachable:
        raise MetricsUnavailable(f"Prometheus at {url} did not answer any query")


def _check_cluster(cluster: Any, policy: Policy, log: Any) -> None:
    """Fail start-up on RBAC denials or an unreachable API server; a missing target only warns."""
    for target in policy.targets:
        try:
            cluster.read(target)
        except NotFound as exc:
            log.warning("target_not_found", target=target.key, error=str(exc))
        except Forbidden as exc:
            raise Forbidden(f"RBAC denies reading {target.key}: {exc}") from exc
        except ActuationError:
            raise
