"""statsmodels (with pandas and scipy, ~115 MB) is loaded by a parameter estimate, not by an import.

A controller restarting from saved fits rebuilds Holt-Winters from its saved parameters
without the estimator, so until a target re-estimates, its memory holds none of it.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import autoscaler.runtime.controller, models
from models import HoltWinters, Series
import numpy as np
t = np.arange(5 * 288) * 300.0
series = Series(start=0.0, step=300.0, values=100 + 50 * np.sin(2 * np.pi * t / 86400))
HoltWinters(288).fit_with_params(series, (0.3, 0.01, 0.1, 0.98)).predict(6)
before = sorted(m for m in ("statsmodels", "pandas", "scipy") if m in sys.modules)
HoltWinters(288).fit(series)
print(before, "statsmodels" in sys.modules)
"""


def test_statsmodels_is_imported_by_the_first_estimate_not_before() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["[]", "True"]
