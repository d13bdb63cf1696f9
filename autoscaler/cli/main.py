"""The ``autoscaler`` command line: simulate, backtest, validate-policy, observe, run, release.

Exit codes: 0 success, 1 runtime failure (e.g. a server unreachable at start-up, a target
that failed in ``run --once``), 2 bad input (invalid policy, bad arguments), 130 interrupted.

No traceback reaches a user: every error is one line on stderr naming the option or the
policy field (``error: argument --prometheus-timeout: must be a finite number, got 'inf'``,
``error: targets[0].scaling.maxReplicas: must be at least 1; got -3``); an error nobody
anticipated is one line too, saying so. ``--debug`` (anywhere on the command line) prints
the traceback as well. Where the command logs JSON (``run``, whose ``--log-format`` is
``json`` unless told otherwise), each error is a JSON object on its own line instead:
``{"event": "cli_error", "level": "error", "error": ..., "field": ..., "exit_code": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from autoscaler import __version__
from autoscaler.cli import options
from autoscaler.errors import AutoscalerError, ConfigError, PolicyRejected

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS = ("simulate", "backtest", "validate-policy", "observe", "run", "release")


class UsageError(ConfigError):
    """The command line itself is wrong (argparse's complaint, as one line)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are raised (and printed as one line by :func:`main`)."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise UsageError("", f"{self.prog}: {message} (see {self.prog} --help)")


def _debug_flag() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of an error too"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from autoscaler.offline.sim.engine import DEFAULT_SLO_SECONDS, POLICIES
    from autoscaler.offline.sim.latency import CURVES

    parser = _Parser(prog="autoscaler", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"autoscaler {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error too")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    common = [_debug_flag()]

    sim = sub.add_parser("simulate", help="replay a load trace under each policy and compare them", parents=common)
    sim.add_argument(
        "--trace", default="default", help="bundled trace name or a trace file/directory (default: %(default)s)"
    )
    sim.add_argument("--policy", type=Path, default=None, help="policy file (default: the bundled gpt2 example)")
    sim.add_argument("--cold-start", choices=("10min", "15min"), default="15min")
    sim.add_argument(
        "--peak-replicas",
        type=options.number(minimum=0, maximum=10_000, exclusive_minimum=True),
        default=12.0,
        help="rescale the trace so its peak needs this many replicas",
    )
    sim.add_argument("--out", type=options.output_dir, default=Path("out/simulate"))
    sim.add_argument(
        "--warmup-days",
        type=options.number(minimum=0, maximum=3650),
        default=7.0,
        help="history known before the simulated span (e.g. 0, 1 or 7)",
    )
    sim.add_argument(
        "--days",
        type=options.number(minimum=0, maximum=3650, exclusive_minimum=True),
        default=None,
        help="simulate only this many days",
    )
    sim.add_argument("--latency-curve", choices=CURVES, default="batching")
    sim.add_argument(
        "--slo",
        type=options.number(minimum=0, maximum=3600, exclusive_minimum=True),
        default=DEFAULT_SLO_SECONDS,
        help="mean latency (s) every policy is scored against (default: %(default)g)",
    )
    sim.add_argument(
        "--policies", action="append", default=None, help=f"comma-separated subset of {','.join(POLICIES)}"
    )
    sim.add_argument("--seed", type=options.whole(minimum=0, maximum=2**32 - 1), default=7)
    options.add_tradeoff_option(sim, what="also run the predictive policy at each forecast quantile")
    sim.add_argument("--no-progress", action="store_true")
    sim.add_argument("--no-plot", action="store_true")

    from autoscaler.offline.backtest import command

    bt = sub.add_parser(
        "backtest",
        help="replay a target's recorded history under each policy and compare with what happened",
        parents=common,
    )
    command.configure_parser(bt)

    val = sub.add_parser("validate-policy", help="check a policy file and print every problem", parents=common)
    val.add_argument("file", type=Path)

    from autoscaler.cli import observe, release
    from autoscaler.runtime import wiring
    obs = sub.add_parser(
        "observe", help="print a target's current observation and forecast (read-only)", parents=common
    )
    observe.configure_parser(obs)
    run = sub.add_parser("run", help="run the controller (in a cluster, or against a kubeconfig)", parents=common)
    wiring.configure_parser(run)
    rel = sub.add_parser(
        "release", help="restore HPA floors and scale placeholders to 0 (uninstall, rollback)", parents=common
    )
    release.configure_parser(rel)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autoscaler`` console script: the command's exit code, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _logs_json(argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _report([exc], EXIT_USAGE, as_json=as_json, debug=False, raised=exc)
    as_json = getattr(args, "log_format", None) == "json"
    debug = bool(getattr(args, "debug", False))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except PolicyRejected as exc:
        return _report(exc.errors, EXIT_USAGE, as_json=as_json, debug=debug, raised=exc)
    except ConfigError as exc:
        return _report([exc], EXIT_USAGE, as_json=as_json, debug=debug, raised=exc)
    except AutoscalerError as exc:
        return _report([exc], EXIT_FAILURE, as_json=as_json, debug=debug, raised=exc)
    except (ValueError, FileNotFoundError) as exc:
        return _report([exc], EXIT_USAGE, as_json=as_json, debug=debug, raised=exc)
    except OSError as exc:
        return _report([exc], EXIT_FAILURE, as_json=as_json, debug=debug, raised=exc)
    except KeyboardInterrupt as exc:
        return _report([exc], EXIT_INTERRUPTED, as_json=as_json, debug=debug, raised=exc)
    except Exception as exc:  # the last line of defence: one line, never a traceback (unless --debug)
        return _report([exc], EXIT_FAILURE, as_json=as_json, debug=debug, raised=exc)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "backtest":
        from autoscaler.offline.backtest import command

        return command.run(args)
    if args.command == "validate-policy":
        return _validate(args)
    if args.command == "observe":
        from autoscaler.cli import observe
        return observe.run(args)
    if args.command == "release":
        from autoscaler.cli import release
        return release.run(args)
    from autoscaler.runtime import wiring
    return wiring.run(args)


def _logs_json(argv: Sequence[str]) -> bool:
    """Whether the command in ``argv`` logs JSON (``run`` does unless ``--log-format console``)."""
    command = next((a for a in argv if a in COMMANDS), None)
    if command != "run":
        return False
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            return argv[i + 1] == "json"
        if arg.startswith("--log-format="):
            return arg.partition("=")[2] == "json"
    return True


def _describe(exc: BaseException) -> tuple[str, str | None]:
    """The one-line message and the option or field it names (``None`` when there is none)."""
    if isinstance(exc, ConfigError):
        return str(exc), exc.path or None
    if isinstance(exc, AutoscalerError):
        return str(exc), None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", None
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}", None
    if isinstance(exc, ValueError | OSError):
        return str(exc) or type(exc).__name__, None
    return f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", None


def _report(errors: Sequence[BaseException], code: int, *, as_json: bool, debug: bool, raised: BaseException) -> int:
    """Print ``errors`` one line each (JSON lines when ``as_json``); with ``debug``, ``raised``'s traceback first."""
    if debug:
        traceback.print_exception(raised, file=sys.stderr)
    for error in errors:
        message, field = _describe(error)
        message = " ".join(message.split())  # one line, whatever the message held
        if as_json:
            record: dict[str, Any] = {
                "event": "cli_error",
                "level": "error",
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "error": message,
                "exit_code": code,
            }
            if field is not None:
                record["field"] = field
            print(json.dumps(record), file=sys.stderr)
        else:
            print(f"error: {message}", file=sys.stderr)
    return code


def _simulate(args: argparse.Namespace) -> int:
    from autoscaler.offline.sim.engine import POLICIES
    from autoscaler.offline.simulate import EXAMPLE_POLICY, SimulateOptions, parse_policies, simulate
    from autoscaler.offline.traces import TraceFormatError

    try:
        policies = parse_policies(args.policies) if args.policies else SimulateOptions.policies
    except ValueError as exc:
        raise ConfigError("--policies", str(exc)) from exc
    if not policies:
        raise ConfigError("--policies", f"names no policy (choose from {', '.join(POLICIES)})")
    tradeoff = options.tradeoff_quantiles(args)
    options_ = SimulateOptions(
        trace=args.trace,
        policy=args.policy or EXAMPLE_POLICY,
        cold_start=args.cold_start,
        peak_replicas=args.peak_replicas,
        out=args.out,
        warmup_days=args.warmup_days,
        days=args.days,
        latency_curve=args.latency_curve,
        slo_seconds=args.slo,
        policies=policies,
        seed=args.seed,
        progress=not args.no_progress,
        plot=not args.no_plot,
        tradeoff=tradeoff,
    )
    try:
        options.named("--policy", lambda: simulate(options_))
    except (TraceFormatError, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError) and exc.filename is not None:
            raise
        raise ConfigError("--trace", str(exc)) from exc
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
