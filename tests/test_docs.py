"""Code in the docs runs: the ports example is executed as written."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_ports_example_runs() -> None:
    """The external-simulator example in docs/ports.md steps the controller and scales up."""
    text = (DOCS / "ports.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(blocks[0], "docs/ports.md", "exec"), namespace)  # noqa: S102 - our own docs
    cluster = namespace["cluster"]
    assert cluster.replicas >= 3  # type: ignore[attr-defined]
