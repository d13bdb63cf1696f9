"""``autoscaler release``: give targets back as they were before ``enforce`` (uninstall, rollback).

Why: enforcing leaves two things behind that outlive the controller: an HPA whose
``minReplicas`` ``coexist`` raised, and placeholder pods holding GPU nodes. A running
controller releases a target by itself when it leaves ``enforce`` (dry-run, pause) or the
policy; this command does the same for an uninstall, where no controller is left to do it.
Stop the controller first (``kubectl -n gpu-autoscaler scale deploy/gpu-autoscaler
--replicas=0``): an enforcing controller would write its decision again on its next cycle.

Per target: the HPA's recorded ``minReplicas`` is restored (and the record removed) and the
placeholder Deployment is scaled to 0 (kept, so a later install reuses it; deleting the
target Deployment garbage-collects it). Targets come from ``--policy`` and/or ``--target``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoscaler.cli import options
from autoscaler.errors import ActuationError, AutoscalerError, ConfigError
from autoscaler.logs import configure, get_logger
from autoscaler.policy.schema import Target


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``release`` options to ``parser``."""
    parser.add_argument("--policy", type=Path, default=None, help="release every target of this policy file")
    parser.add_argument("--target", metavar="NS/DEPLOYMENT", action="append", default=[], type=options.object_ref,
                        help="release this target (repeatable)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default: in-cluster, else ~/.kube/config")
    parser.add_argument("--context", default=None)


def targets_of(args: argparse.Namespace) -> list[Target]:
    """The targets named by ``--policy`` and ``--target``, each once, in that order.

    Raises:
        ConfigError: neither was given, or the policy file is invalid.
    """
    from autoscaler.policy.loader import load_policy_file

    found: dict[str, Target] = {}
    if args.policy is not None:
        for target in load_policy_file(args.policy).targets:
            found.setdefault(target.key, target)
    for ref in args.target:
        namespace, name = options.split_ref(ref)
        target = Target(namespace=namespace, deployment=name)
        found.setdefault(target.key, target)
    if not found:
        raise ConfigError("--target", "name the targets to release with --policy FILE and/or --target NS/DEPLOYMENT")
    return list(found.values())


def run(args: argparse.Namespace) -> int:
    """Release every named target; prints one line per target. Exit 1 if any failed."""
    from autoscaler.kube.client import connect
    from autoscaler.kube.cluster import KubeCluster

    configure(fmt="console", level="warning")
    targets = targets_of(args)
    api = connect(kubeconfig=args.kubeconfig, context=args.context)
    cluster = KubeCluster(api, log=get_logger(component="release"))
    failed: list[str] = []
    try:
        for target in targets:
            try:
                notes = cluster.release(target)
            except ActuationError as exc:
                failed.append(f"{target.key}: {exc}")
                print(f"{target.key}: failed: {exc} ({exc.kind})")
                continue
            print(f"{target.key}: " + ("; ".join(notes) if notes else "nothing to release"))
    finally:
        api.close()
    if failed:
        raise AutoscalerError(f"{len(failed)} of {len(targets)} target(s) not released; {failed[0]}")
    return 0
