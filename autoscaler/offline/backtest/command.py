"""The ``autoscaler backtest`` command line: its options and the run from parsed arguments.

The options are declared here, next to the code that reads them, with the checked option
types every command shares (:mod:`autoscaler.cli.options`);
:func:`autoscaler.offline.backtest.replay.backtest` does the work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoscaler.cli import options
from autoscaler.offline.backtest.replay import DEFAULT_TIMEOUT_SECONDS, BacktestOptions, backtest

#: Longest look-back ``--since`` accepts (ten years: beyond any Prometheus retention).
MAX_SINCE_SECONDS = 10 * 365 * 86400.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``backtest`` options to ``parser`` (used by :mod:`autoscaler.cli.main`)."""
    parser.add_argument(
        "--target", required=True, type=options.target, metavar="NS/NAME", help="namespace/deployment of the target"
    )
    parser.add_argument(
        "--since",
        default="14d",
        type=options.duration(maximum_seconds=MAX_SINCE_SECONDS),
        help="how far back to replay (Prometheus duration; default 14d)",
    )
    parser.add_argument(
        "--until", default=None, type=options.instant, help="end of the window (unix seconds or ISO 8601; default: now)"
    )
    parser.add_argument("--policy", type=Path, default=None, help="candidate policy file to compare")
    parser.add_argument(
        "--running-policy",
        type=Path,
        default=None,
        help="the policy the target runs with (default: the bundled example)",
    )
    parser.add_argument(
        "--step",
        type=options.whole(minimum=1, maximum=86400),
        default=60,
        help="bucket width in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup-days",
        type=options.number(minimum=0, maximum=3650),
        default=None,
        help="history before the replayed span (default: 7 days, at most half of the recorded data)",
    )
    parser.add_argument("--out", type=options.output_dir, default=Path("out/backtest"))
    options.add_tradeoff_option(parser, what="also sweep these forecast quantiles")
    parser.add_argument(
        "--nodes-per-replica",
        type=options.number(minimum=0, maximum=1000, exclusive_minimum=True),
        default=1.0,
        help="GPU nodes one replica occupies",
    )
    parser.add_argument(
        "--saturation-rps",
        type=options.number(minimum=0, maximum=1e9, exclusive_minimum=True),
        default=None,
        help="replay latency model saturation (default perReplica/0.9)",
    )
    parser.add_argument("--latency-curve", choices=("batching", "flat"), default="batching")
    parser.add_argument("--seed", type=options.whole(minimum=0, maximum=2**32 - 1), default=7)
    options.add_prometheus_options(parser, timeout=DEFAULT_TIMEOUT_SECONDS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-plot", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run ``autoscaler backtest`` with parsed arguments; prints to stdout, logs to stderr.

    Returns:
        0 (the exit code).
    """
    from autoscaler.logs import configure

    configure(fmt="console", level="error")
    tradeoff = options.tradeoff_quantiles(args)
    opts = BacktestOptions(
        prometheus=options.prometheus_connection(args),
        target=args.target,
        since=args.since,
        until=args.until,
        policy=args.policy,
        running_policy=args.running_policy,
        step=args.step,
        warmup_days=args.warmup_days,
        out=args.out,
        tradeoff=tradeoff,
        nodes_per_replica=args.nodes_per_replica,
        saturation_rps=args.saturation_rps,
        latency_curve=args.latency_curve,
        seed=args.seed,
        plot=not args.no_plot,
        progress=not args.no_progress and not args.json,
        json=args.json,
    )
    options.named("--policy", lambda: backtest(opts))
    return 0
