"""``autoscaler run`` in a process started ahead of time: imports first, arguments later.

Why: importing the controller (statsmodels, the Kubernetes client) costs a few CPU seconds,
which the fault matrix would otherwise wait for in the rows that start controller processes.
This module imports everything ``autoscaler run`` imports, then reads one JSON line from
stdin, ``{"argv": [...], "stderr": "path"}``, sends its stderr to that file and runs the real
CLI entry point with that argv, exactly as ``python -m autoscaler`` would (same signal
handling, same logging, same exit code). An empty stdin (the matrix did not need the
process) exits 0 at once.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    """Wait for the arguments, then be ``autoscaler`` with them."""
    import autoscaler.adapters.prometheus
    import autoscaler.cli.main
    import autoscaler.kube.cluster
    import autoscaler.kube.leader
    import autoscaler.kube.policy_source
    import autoscaler.runtime.wiring

    line = sys.stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return autoscaler.cli.main.main(request["argv"])


if __name__ == "__main__":
    sys.exit(main())
