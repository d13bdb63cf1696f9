"""The ``autoscaler`` command line: simulate, backtest, validate-policy, observe, run.

Exit codes: 0 success, 1 runtime failure (e.g. a server unreachable at start-up),
2 bad input (invalid policy, bad arguments). Errors are one clear line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from autoscaler import __version__
from autoscaler.errors import AutoscalerError, ConfigError, PolicyRejected

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from autoscaler.sim.tradeoff import DEFAULT_QUANTILES

    parser = argparse.ArgumentParser(prog="autoscaler", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"autoscaler {__version__}")
    sub = parser.add_subparsers(dest="command")

    sim = sub.add_parser("simulate", help="replay a load trace under each policy and compare them")
    sim.add_argument(
        "--trace", default="default", help="bundled trace name or a trace file/directory (default: %(default)s)"
    )
    sim.add_argument("--policy", type=Path, default=None, help="policy file (default: the bundled gpt2 example)")
    sim.add_argument("--cold-start", choices=("10min", "15min"), default="15min")
    sim.add_argument(
        "--peak-replicas", type=float, default=12.0, help="rescale the trace so its peak needs this many replicas"
    )
    sim.add_argument("--out", type=Path, default=Path("out/simulate"))
    sim.add_argument("--warmup-days", type=float, default=7.0, help="history before the simulated span")
    sim.add_argument("--days", type=float, default=None, help="simulate only this many days")
    sim.add_argument("--latency-curve", choices=("batching", "flat"), default="batching")
    sim.add_argument(
        "--policies", action="append", default=None, help="comma-separated subset of predictive,hpa,oracle,static"
    )
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--tradeoff",
        nargs="?",
        const=",".join(f"{q:g}" for q in DEFAULT_QUANTILES),
        default=None,
        metavar="Q1,Q2,...",
        help="also run the predictive policy at each forecast quantile (default 0.5,0.7,0.8,0.9,0.95,0.99) "
        "and plot SLO attainment vs GPU node-hours",
    )
    sim.add_argument("--no-progress", action="store_true")
    sim.add_argument("--no-plot", action="store_true")

    from autoscaler import backtest

    bt = sub.add_parser(
        "backtest", help="replay a target's recorded history under each policy and compare with what happened"
    )
    backtest.configure_parser(bt)

    val = sub.add_parser("validate-policy", help="check a policy file and print every problem")
    val.add_argument("file", type=Path)

    from autoscaler import observe, wiring

    obs = sub.add_parser("observe", help="print a target's current observation and forecast (read-only)")
    observe.configure_parser(obs)
    run = sub.add_parser("run", help="run the controller (in a cluster, or against a kubeconfig)")
    wiring.configure_parser(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autoscaler`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "backtest":
            from autoscaler import backtest

            return backtest.run(args)
        if args.command == "validate-policy":
            return _validate(args)
        if args.command == "observe":
            from autoscaler import observe

            return observe.run(args)
        if args.command == "run":
            from autoscaler import wiring

            return wiring.run(args)
    except PolicyRejected as exc:
        for err in exc.errors:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AutoscalerError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE if isinstance(exc, AutoscalerError) else EXIT_USAGE
    parser.print_help()
    return EXIT_USAGE


def _simulate(args: argparse.Namespace) -> int:
    from autoscaler.sim.tradeoff import parse_quantiles
    from autoscaler.simulate import EXAMPLE_POLICY, SimulateOptions, parse_policies, simulate

    options = SimulateOptions(
        trace=args.trace,
        policy=args.policy or EXAMPLE_POLICY,
        cold_start=args.cold_start,
        peak_replicas=args.peak_replicas,
        out=args.out,
        warmup_days=args.warmup_days,
        days=args.days,
        latency_curve=args.latency_curve,
        policies=parse_policies(args.policies) if args.policies else SimulateOptions.policies,
        seed=args.seed,
        progress=not args.no_progress,
        plot=not args.no_plot,
        tradeoff=parse_quantiles(args.tradeoff) if args.tradeoff is not None else (),
    )
    simulate(options)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from autoscaler.policy.advice import advise
    from autoscaler.policy.loader import load_policy_file

    policy = load_policy_file(args.file)
    keys = ", ".join(t.key for t in policy.targets)
    print(f"{args.file}: valid ({len(policy.targets)} target(s): {keys})")
    for advice in advise(policy):
        print(f"advice: {advice}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
