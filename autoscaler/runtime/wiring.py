"""``autoscaler run``: the composition root of the in-cluster controller.

The only place that picks implementations: Prometheus for metrics, the Kubernetes API for
the cluster (a dry-run wraps it so nothing is written), a ConfigMap or a file for the
policy, a Lease for leader election, and — with ``--shard-namespaces``/``--shard-selector`` —
a :class:`~autoscaler.kube.sharding.ShardScope` that narrows every policy to this controller's
shard before the Controller sees it (see ``docs/sharding.md``). Start-up problems (no
Prometheus, no RBAC, a bad kubeconfig, policy or shard selector, a shard without its own
Lease) are found here, before the loop starts, and end the process with one clear line and
a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from autoscaler.cli import options
from autoscaler.errors import (
    ActuationError,
    AutoscalerError,
    ConfigError,
    Forbidden,
    MetricsUnavailable,
    NotFound,
    PolicyRejected,
)
from autoscaler.kube.sharding import Shard, ShardScope, parse_shard
from autoscaler.logs import configure, get_logger
from autoscaler.policy.schema import Policy
from autoscaler.ports import LeaderElector, PolicySource
from autoscaler.runtime import heap
from autoscaler.runtime.controller import Controller, CycleResult, Mode
from autoscaler.runtime.service import (
    AlwaysLeader,
    LeaderGuardedCluster,
    LeaderGuardedOperations,
    Service,
    stall_seconds,
)
from autoscaler.runtime.telemetry import Health, Telemetry, serve

#: The Lease of an unsharded controller (and of deploy/rbac.yaml).
DEFAULT_LEASE = "gpu-predictive-autoscaler"


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        """Unix seconds."""
        return time.time()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` options to ``parser``."""
    policy = parser.add_mutually_exclusive_group(required=True)
    policy.add_argument("--policy", type=Path, help="policy file (re-read when it changes)")
    policy.add_argument("--policy-configmap", metavar="NS/NAME", type=options.object_ref,
                        help="ConfigMap holding the policy (watched)")
    parser.add_argument("--policy-key", default="policy.yaml", type=_configmap_key,
                        help="ConfigMap data key (default: %(default)s)")
    options.add_prometheus_options(parser, timeout=10.0)
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default: in-cluster, else ~/.kube/config")
    parser.add_argument("--context", default=None)
    parser.add_argument("--dry-run", action="store_true", help="log every decision, write nothing (all targets)")
    parser.add_argument("--once", action="store_true",
                        help="run a single cycle and exit (1 if a target or Prometheus failed)")
    # All interfaces by default: kubelet probes and Prometheus reach the pod IP (deploy/networkpolicy.yaml
    # limits who may); only /metrics, /healthz and /readyz are served, read-only. --listen narrows it.
    parser.add_argument("--listen", default=("0.0.0.0", 8080), type=options.listen_address,  # noqa: S104
                        help="/metrics, /healthz, /readyz (host:port; default 0.0.0.0:8080)")
    parser.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lease-namespace", default=None, type=options.namespace,
                        help="default: the policy ConfigMap's namespace")
    parser.add_argument("--lease-name", default=None, type=options.object_name,
                        help=f"default: {DEFAULT_LEASE}; required (and different) with a shard")
    parser.add_argument("--shard-namespaces", metavar="NS[,NS...]", default=None,
                        help="act only on targets in these namespaces (see docs/sharding.md)")
    parser.add_argument("--shard-selector", metavar="SELECTOR", default=None,
                        help="act only on targets whose Deployment labels match, e.g. 'team=x,tier in (a,b)'")
    parser.add_argument("--identity", default=None, type=_identity, help="default: $POD_NAME or the hostname")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def _configmap_key(text: str) -> str:
    """A ConfigMap data key: ``[-._a-zA-Z0-9]+``, at most 253 characters (the API server's rule)."""
    if not 0 < len(text) <= 253 or not re.fullmatch(r"[-._a-zA-Z0-9]+", text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r} is not a ConfigMap key ([-._a-zA-Z0-9]+, at most 253 characters)")
    return text


def _identity(text: str) -> str:
    """This replica's Lease holder identity: non-empty, printable, at most 253 characters."""
    if not text.strip() or len(text) > 253 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1-253 printable characters")
    return text


def run(args: argparse.Namespace) -> int:
    """Start the controller; returns the process exit code."""
    configure(fmt=args.log_format, level=args.log_level)
    log = get_logger(component="controller")
    telemetry = Telemetry()
    stop = threading.Event()

    elect = args.leader_election and not args.once
    shard = parse_shard(args.shard_namespaces, args.shard_selector)
    lease_name = _lease_name(args, shard, elect=elect)
    lease_namespace = _lease_namespace(args) if elect else None
    if shard is not None:
        log.info("shard", **shard.describe(), lease=f"{lease_namespace}/{lease_name}" if elect else None)
    return _run(args, log=log, telemetry=telemetry, stop=stop, shard=shard, lease_name=lease_name,
                lease_namespace=lease_namespace)


def _listen(address: tuple[str, int], telemetry: Telemetry, health: Health) -> Any:
    host, port = address
    try:
        return serve(telemetry=telemetry, health=health, host=host, port=port)
    except (OSError, OverflowError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise AutoscalerError(f"--listen {host}:{port}: cannot listen there ({reason})") from exc


def _run(args: argparse.Namespace, *, log: Any, telemetry: Telemetry, stop: threading.Event,
         shard: Shard | None, lease_name: str, lease_namespace: str | None) -> int:
    """The start-up checks, local ones first, and the loop."""
    from autoscaler.kube.client import connect

    # A policy file is checked before anything connects; a ConfigMap needs the API server.
    policy_source = None if args.policy is None else options.named(
        "--policy", lambda: _policy_source(args, None, telemetry, log)
    )
    try:
        api = connect(kubeconfig=args.kubeconfig, context=args.context)
    except ConfigError as exc:
        raise ConfigError("--kubeconfig", exc.reason) from exc
    except Exception as exc:
        raise ConfigError("--kubeconfig", f"cannot load {args.kubeconfig or 'the kubeconfig'}: {exc}") from exc
    # Listen before talking to any server: a port in use ends the start-up at once. Not
    # ready (no cycle yet) until the loop has run.
    health = Health(max_cycle_age=120.0)
    server = None if args.once else _listen(args.listen, telemetry, health)
    try:
        if policy_source is None:
            policy_source = options.named("--policy-configmap", lambda: _policy_source(args, api, telemetry, log))
        return _serve(args, log=log, telemetry=telemetry, health=health, stop=stop, shard=shard, api=api,
                      policy_source=policy_source, lease_name=lease_name, lease_namespace=lease_namespace)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _serve(args: argparse.Namespace, *, log: Any, telemetry: Telemetry, health: Health, stop: threading.Event,
           shard: Shard | None, api: Any, policy_source: PolicySource, lease_name: str,
           lease_namespace: str | None) -> int:
    """Check Prometheus and the cluster, then run the loop (or one cycle)."""
    from autoscaler.adapters.prometheus import PrometheusSource
    from autoscaler.kube.cluster import KubeCluster
    from autoscaler.kube.placeholders import SUFFIX as PLACEHOLDER_SUFFIX

    full_policy, generation = policy_source.current()
    metrics = PrometheusSource.connect(
        options.prometheus_connection(args),
        placeholder_suffix=PLACEHOLDER_SUFFIX,
        log=get_logger(component="prometheus"),
    )
    kube = KubeCluster(api, log=get_logger(component="kube"))
    # Prometheus is checked with every target: its queries are batched for all of them anyway,
    # and a shard that owns nothing yet must still fail fast on a wrong URL.
    _check_prometheus(metrics, full_policy, args.prometheus_url)
    scope: ShardScope | None = None
    policy = full_policy
    if shard is not None:
        scope = ShardScope(shard, api, lease_namespace=lease_namespace, lease_name=lease_name,
                           log=get_logger(component="shard"))
        policy = scope.select(full_policy, generation, strict=True)
    _check_cluster(kube, policy, log)
    mode: Mode | None = "dry-run" if args.dry_run else None
    health.max_cycle_age = max(120.0, 4 * policy.loop_interval_seconds)
    health.stall_seconds = stall_seconds(policy.loop_interval_seconds)
    health.progress()  # the start-up checks are done: the loop's clock starts now
    elector: LeaderElector = AlwaysLeader()
    if lease_namespace is not None:  # set exactly when electing
        from autoscaler.kube.leader import LeaseElector

        identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()
        # Renewed only while the loop makes progress: a stuck loop loses the Lease.
        elector = LeaseElector(api, namespace=lease_namespace, name=lease_name, identity=identity, log=log,
                               metadata=scope.lease_metadata if scope is not None else None,
                               healthy=lambda: health.alive()[0]).start()
    # Writes are re-checked against the Lease: a loop that was stuck while leadership moved
    # does not write what it decided before it noticed.
    cluster = LeaderGuardedCluster(kube, elector.is_leader)
    # A cycle ends before the next one is due: targets it has not reached by then hold.
    # The fitted state is kept beside the Lease, one set per shard, so a restart, an
    # upgrade or a new leader decides from the fits instead of refitting for hours.
    fit_store = None
    if lease_namespace is not None:
        from autoscaler.kube.fit_store import ConfigMapFitStore, fit_store_prefix

        fit_store = ConfigMapFitStore(api, namespace=lease_namespace, prefix=fit_store_prefix(lease_name))
    controller = Controller(policy=policy, metrics=metrics, cluster=cluster, clock=SystemClock(),
                            mode_override=mode, log=log, cycle_deadline_seconds=policy.loop_interval_seconds,
                            operations=LeaderGuardedOperations(kube, elector.is_leader), fit_store=fit_store)
    service = Service(controller=controller, policy_source=policy_source, elector=elector,
                      telemetry=telemetry, health=health, log=log, scope=scope,
                      lease=f"{lease_namespace}/{lease_name}" if lease_namespace is not None else "")
    if args.once:
        result = service.cycle()
        _stop_source(policy_source)
        metrics.close()
        _check_once(result)
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    heap.freeze_startup_objects()  # the imports are never garbage: the loop's full collections skip them
    try:
        service.run(stop)
    finally:
        _stop_source(policy_source)
        metrics.close()
    return 0


def _check_once(result: CycleResult | None) -> None:
    """``run --once`` fails (exit 1) when its cycle failed, Prometheus failed, or any target failed."""
    if result is None:
        raise AutoscalerError("the cycle did not run (see the cycle_failed log line)")
    if result.metrics_error is not None:
        raise result.metrics_error
    failed = [r for r in result.results if r.error is not None]
    if failed:
        first = failed[0]
        raise AutoscalerError(
            f"{len(failed)} of {len(result.results)} target(s) failed; {first.target}: {first.error} "
            f"({first.error.kind if first.error else ''})"
        )


def _policy_source(args: argparse.Namespace, api: Any, telemetry: Telemetry, log: Any) -> PolicySource:
    from autoscaler.kube.policy_source import ConfigMapPolicySource, FilePolicySource

    def rejected(_exc: PolicyRejected) -> None:
        telemetry.policy_rejected.inc()

    if args.policy is not None:
        return FilePolicySource(args.policy, on_rejected=rejected, log=log)
    namespace, name = options.split_ref(args.policy_configmap)  # checked by argparse (options.object_ref)
    return ConfigMapPolicySource(api, namespace=namespace, name=name, key=args.policy_key,
                                 on_rejected=rejected, log=log).start()


def _stop_source(source: PolicySource) -> None:
    stop = getattr(source, "stop", None)
    if callable(stop):
        stop()


def _lease_namespace(args: argparse.Namespace) -> str:
    """``--lease-namespace``, else the policy ConfigMap's namespace."""
    namespace: str | None = args.lease_namespace
    if namespace is None and args.policy_configmap:
        namespace = options.split_ref(args.policy_configmap)[0]
    if not namespace:
        raise ConfigError("--lease-namespace", "required with --policy and leader election on")
    return namespace


def _lease_name(args: argparse.Namespace, shard: Shard | None, *, elect: bool) -> str:
    """The Lease: ``--lease-name``, :data:`DEFAULT_LEASE` without a shard.

    A shard must name its own Lease explicitly (and the name goes into the RBAC Role's
    ``resourceNames``): shards sharing one Lease would take turns instead of running side
    by side, which a copied Deployment keeping ``--lease-name=gpu-predictive-autoscaler``
    would silently do.
    """
    name: str | None = args.lease_name
    if shard is None or not elect:
        return name or DEFAULT_LEASE
    if not name or name == DEFAULT_LEASE:
        raise ConfigError(
            "--lease-name",
            f"a shard needs its own Lease: pass --lease-name with a name other than {DEFAULT_LEASE!r}, "
            "e.g. gpu-predictive-autoscaler-<shard> (see docs/sharding.md)",
        )
    return name


def _check_prometheus(metrics: Any, policy: Policy, url: str) -> None:
    """Fail start-up when Prometheus gives no usable answer at all (a target with no data is fine)."""
    metrics.observe(list(policy.targets), time.time())
    problem = metrics.last_loop.problem(url)
    if problem is not None:
        raise MetricsUnavailable(problem)


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
