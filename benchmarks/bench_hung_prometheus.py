"""Worst-case cycle time with a hung Prometheus, at 10 / 100 / 1,000 targets.

Why: a Prometheus that accepts connections and never answers is the worst a metrics
outage gets: every call waits out its whole timeout. Before the breaker and the call
deadline, each query outside the batched loop (start-up history per target, lead times,
``arrivalRateQuery`` overrides) cost one timeout more, so a cycle grew with the number of
targets. This benchmark measures wall seconds per cycle of the real ``Controller`` and the
real ``PrometheusSource`` against a socket that listens and never accepts (the kernel
completes the TCP handshake, the request is sent, nothing comes back), with the simulator's
in-process cluster on the other side (no API-server time in the figures):

* ``first``: the start-up cycle (every target unseeded: a history load each, lead times);
* ``steady``: the next two cycles (the worst of them);
* ``overrides``: the same start-up cycle when every target has an ``arrivalRateQuery``
  override (one more query per target per loop).

Each cycle also records how many targets held (all must: no signal is known). The cycle
deadline is the default loop interval (30 s), as ``autoscaler run`` sets it.
Usage: ``.venv/bin/python benchmarks/bench_hung_prometheus.py [--sizes 10,100,1000] [--timeout 10]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.adapters.prometheus import PrometheusSource  # noqa: E402
from autoscaler.logs import configure  # noqa: E402
from autoscaler.offline.sim.adapters import SimClusterPort, VirtualClock  # noqa: E402
from autoscaler.offline.sim.cluster import ClusterPhases, SimCluster  # noqa: E402
from autoscaler.policy.schema import Metrics, Policy, Target  # noqa: E402
from autoscaler.runtime.controller import Controller  # noqa: E402

LOOP_INTERVAL = 30.0


def hung_port() -> tuple[socket.socket, int]:
    """A listening socket on loopback that never accepts: connections complete, answers never come."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock, int(sock.getsockname()[1])


def controller(url: str, n: int, *, timeout: float, overrides: bool) -> tuple[Controller, VirtualClock]:
    """The real controller over ``n`` targets, Prometheus at ``url``, the simulated cluster."""
    clock = VirtualClock(time.time())
    sim = SimCluster(phases=ClusterPhases())
    sim.bootstrap(serving=3, now=clock.now())
    base = Target(namespace="llm", deployment="d", mode="enforce")
    targets = tuple(
        dataclasses.replace(
            base,
            deployment=f"vllm-{i}",
            metrics=Metrics(arrival_rate_query=f"sum(rate(gateway_requests_total{{route=\"r{i}\"}}[2m]))")
            if overrides
            else Metrics(),
        )
        for i in range(n)
    )
    source = PrometheusSource(url, timeout_seconds=timeout)
    return (
        Controller(
            policy=Policy(targets=targets, loop_interval_seconds=LOOP_INTERVAL),
            metrics=source,
            cluster=SimClusterPort(sim, clock),
            clock=clock,
            cycle_deadline_seconds=LOOP_INTERVAL,
        ),
        clock,
    )


def timed_cycle(c: Controller, clock: VirtualClock) -> tuple[float, int, int]:
    """Wall seconds of one cycle, the targets that held, and the decisions that scaled down."""
    began = time.monotonic()
    cycle = c.reconcile_once()
    seconds = time.monotonic() - began
    clock.time += LOOP_INTERVAL
    decisions = [r.decision for r in cycle.results if r.decision is not None]
    held = len(cycle.results) - sum(1 for d in decisions if d.data_ok)
    return seconds, held, sum(1 for d in decisions if d.replicas < d.current_replicas)


def measure(url: str, n: int, *, timeout: float) -> dict[str, float | int]:
    """The three figures for ``n`` targets."""
    c, clock = controller(url, n, timeout=timeout, overrides=False)
    first, held_first, down_first = timed_cycle(c, clock)
    steady = [timed_cycle(c, clock) for _ in range(2)]
    o, oclock = controller(url, n, timeout=timeout, overrides=True)
    overrides, held_o, down_o = timed_cycle(o, oclock)
    return {
        "targets": n,
        "first": round(first, 2),
        "steady": round(max(s for s, _, _ in steady), 2),
        "overrides": round(overrides, 2),
        "held": min(held_first, held_o, *(h for _, h, _ in steady)),
        "scale_downs": down_first + down_o + sum(d for _, _, d in steady),
    }


def main() -> int:
    """Measure each size and print one JSON line per size, then a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-call timeout (autoscaler run's default)")
    args = parser.parse_args()
    configure(fmt="console", level="error")  # every failed query warns: not the point here
    sock, port = hung_port()
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            row = measure(url, n, timeout=args.timeout)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        sock.close()
    print(f"hung Prometheus, --prometheus-timeout {args.timeout:g}s, cycle deadline {LOOP_INTERVAL:g}s; wall s/cycle")
    print(f"{'targets':>8}{'first':>9}{'steady':>9}{'overrides':>11}{'held':>7}{'scale-downs':>13}")
    for r in rows:
        print(f"{r['targets']:>8}{r['first']:>9}{r['steady']:>9}{r['overrides']:>11}{r['held']:>7}{r['scale_downs']:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
