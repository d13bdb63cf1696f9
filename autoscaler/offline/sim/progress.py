"""The progress bar of the offline replays (``simulate`` and ``backtest``), on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_bar(enabled: bool, total: int, *, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A bar over ``total`` simulated steps: ``(advance, close)``; ``advance`` is None when disabled.

    ``advance(n)`` adds ``n`` steps, as :func:`autoscaler.offline.sim.engine.run_policy` reports them.
    The bar updates at most once a second and stays off when stderr is not a terminal.
    """
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", desc=desc, file=sys.stderr, mininterval=1.0, disable=None)

    def advance(steps: int) -> None:
        bar.update(steps)

    return advance, bar.close
