"""Keep the heap small and its collections cheap: freed memory handed back to the operating
system now and then (glibc's ``malloc_trim``), and the start-up objects kept out of the
cyclic collector's scans (``gc.freeze``).

Why: refits allocate and free many mid-sized blocks (the smoothing-parameter optimiser,
numpy temporaries, state arrays re-cut as the window slides). glibc keeps freed blocks in
its arenas and returns memory only from the top of the heap, so resident memory creeps
up by fragmentation while the live heap stays flat. In a 4-day soak at 10 targets
(``tests.sim.soak``), tracemalloc's live heap grew 0.4 MB while RSS grew 8.6 MB;
with ``malloc_trim(0)`` once a simulated day RSS grew 0.8 % instead of 5.5 %. At 100
targets the hourly trim lowered RSS by ~6 MB but not its growth (+4.0 % by day 4): part of
that was the soak's own simulator keeping every node it removed (fixed in 8bdc27a). With
both, the 14-day soak grew +2.2 % after day 1 (at most +4.1 %). Pinning glibc's mmap
threshold as well (``MALLOC_MMAP_THRESHOLD_``) made it worse (+5.8 % in 4 days), so it is
not done.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

#: How often the controller trims (virtual seconds): often enough that fragmentation
#: cannot build up between trims, rarely enough that the walk over the heap is noise.
TRIM_INTERVAL_SECONDS = 3600.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` from the process's own symbols; ``None`` elsewhere (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def trim_heap() -> bool:
    """Return the heap's free pages to the OS. ``False`` if the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def freeze_startup_objects() -> int:
    """Move every object alive now out of the cyclic collector's scans; returns how many.

    Why: a full collection scans every tracked object, and ~120,000 of them are the
    imports (statsmodels, scipy, pandas, the Kubernetes client), none ever garbage. At
    1,000 targets a full collection took 0.19 s of CPU, 0.125 s with them frozen (five
    each, on a loaded machine), and one lands in whatever cycle triggers it. Call it once
    the imports and the policy are loaded, before the loop: objects made later are
    collected as before, and frozen ones are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
