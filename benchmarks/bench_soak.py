"""A 14-day soak in virtual time at 100 targets: faults on a schedule, a restart in the middle.

Why: the fault matrix judges one fault at a time; over weeks of them nothing may
accumulate. The real ``Controller`` runs through the simulator's ports
(:mod:`tests.sim.soak`: one simulated cluster per target, a seeded daily and weekly load)
with a fault every 3 hours, in turn stale, future-dated, NaN and missing series for
10-30 % of the targets, and Prometheus errors and hung calls for all of them; at the
middle the controller stops cleanly (its fits saved to an in-memory FitStateStore) and a
new one starts from them. Reported:

* resident memory at the end of day 1 and at the end (goal: growth <= 5 %), and per day;
* decisions lost: target-cycles without a decision (goal 0);
* scale-downs decided on bad data: serving replicas, and serving + placeholders, lowered
  on a target whose data was bad that cycle (goal 0);
* each fault's windows and the target-cycles it hit; median and worst cycle CPU, the
  cycles over 1 s and the five costliest (when, and which faults were in force).

Refits run daily here (``--refit-seconds``), not hourly as by default: at 100 targets an
hourly refit with its peak calibration is ~40 s of CPU per simulated hour, which would
make 14 days take hours; updates on every bucket, model selections and decisions run
as in production.
Usage: ``.venv/bin/python benchmarks/bench_soak.py [--days 14] [--targets 100]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.runtime import heap  # noqa: E402
from tests.sim.soak import DAY, FAULT_KINDS, START, Soak  # noqa: E402


def main() -> int:
    """Run the soak and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--refit-seconds", type=int, default=86400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    heap.freeze_startup_objects()  # as `autoscaler run` does before its loop
    soak = Soak(targets=args.targets, days=args.days, seed=args.seed, refit_seconds=args.refit_seconds, progress=True)
    r = soak.run()
    growth = r.rss_growth_pct
    lost = sum(r.lost.values())
    downs, capacity_downs = sum(r.bad_data_scale_downs.values()), sum(r.bad_data_capacity_downs.values())
    print(
        f"soak: {r.targets} targets, {r.days:g} days, loop {soak.loop_seconds:g} s, refit every "
        f"{args.refit_seconds} s, restart at day {((r.restart_at or START) - START) / DAY:.1f}; "
        f"{r.cycles} cycles, {r.decisions} decisions, wall {r.wall_seconds:.0f} s"
    )
    print(f"{'figure':<44}{'value':>12}{'goal':>10}")
    rows = [
        ("RSS end of day 1 (MB)", f"{r.rss_by_day[0]:.1f}" if r.rss_by_day else "-", ""),
        ("RSS at the end (MB)", f"{r.rss_by_day[-1]:.1f}" if r.rss_by_day else "-", ""),
        ("RSS growth after day 1 (%)", "-" if growth is None else f"{growth:+.1f}", "<= 5"),
        ("peak RSS (MB)", f"{r.peak_rss_mb:.1f}", ""),
        ("decisions lost (target-cycles)", str(lost), "0"),
        ("scale-downs on bad data (serving)", str(downs), "0"),
        ("scale-downs on bad data (serving+placeholders)", str(capacity_downs), "0"),
        ("scale-downs on good data", str(r.scale_downs - downs), ""),
        ("targets fitted after the restart's 1st cycle", f"{r.restored_fitted}/{r.targets}", ""),
        ("fit state saved at the restart (KB)", f"{r.saved_bytes / 1024:.1f}", ""),
        ("median cycle CPU (s)", f"{r.median_cycle_cpu:.4f}", ""),
        ("worst cycle CPU (s)", f"{max(r.cycle_cpu):.3f}", "<= 1"),
        ("cycles over 1 s", str(sum(cost > 1.0 for cost in r.cycle_cpu)), "0"),
    ]
    for name, value, goal in rows:
        print(f"{name:<44}{value:>12}{goal:>10}")
    print(f"{'fault':<10}{'windows':>9}{'target-cycles':>15}{'decisions':>11}{'downs':>7}")
    for kind in FAULT_KINDS:
        print(
            f"{kind:<10}{r.windows[kind]:>9}{r.injected[kind]:>15}{r.bad_data_decisions[kind]:>11}"
            f"{r.bad_data_scale_downs[kind] + r.bad_data_capacity_downs[kind]:>7}"
        )
    print(
        "costliest cycles (day hh:mm:ss, CPU s, faults then): "
        + "; ".join(f"{clock(t)} {cost:.3f} s {what}" for t, cost, what in r.costliest)
    )
    print("RSS by day (MB): " + " ".join(f"{v:.1f}" for v in r.rss_by_day))
    if lost:
        print(f"lost by error kind: {dict(r.lost)}")
    return 0


def clock(t: float) -> str:
    """A virtual time as 'day D hh:mm:ss' from the soak's start."""
    seconds = round(t - START)
    day, rest = divmod(seconds, round(DAY))
    return f"day {day} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


if __name__ == "__main__":
    sys.exit(main())
