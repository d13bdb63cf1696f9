"""``autoscaler run`` whose control loop can be made to hang, for the liveness test.

Why: a loop stuck in a call (or a deadlock) cannot be produced on demand from outside a
real process: every call the loop makes ends by its deadline. This launcher is the real
CLI entry point with one change made by the test, not the product: when the file named by
``$AUTOSCALER_TEST_HANG_FILE`` exists, the next ``Controller.reconcile_once`` blocks forever
(the loop's thread is wedged; the elector's thread, the HTTP server and everything else in
the process keep running, as in a real wedge). Run as ``python -m tests.e2e.stuck_launcher``
with ``autoscaler``'s arguments.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from autoscaler.cli.main import main as cli_main
from autoscaler.runtime.controller import Controller

_reconcile = Controller.reconcile_once
_forever = threading.Event()


def _reconcile_or_hang(self: Controller, now: float | None = None) -> Any:
    if Path(os.environ["AUTOSCALER_TEST_HANG_FILE"]).exists():
        _forever.wait()  # never set: the loop is stuck here
    return _reconcile(self, now)


if __name__ == "__main__":
    Controller.reconcile_once = _reconcile_or_hang  # type: ignore[method-assign]
    sys.exit(cli_main(sys.argv[1:]))
