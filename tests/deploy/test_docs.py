"""The operator docs are current: generated policy reference, README install section, doc links."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_policy_reference_is_current() -> None:
    """docs/policy-reference.md is exactly what docs/generate_policy_reference.py produces from the schema."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "docs" / "generate_policy_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr


def test_policy_reference_lists_every_field() -> None:
    """Every schema field path appears in the reference, with a default column."""
    from autoscaler.policy.fields import walk_fields
    from autoscaler.policy.schema import Policy

    text = (REPO / "docs" / "policy-reference.md").read_text()
    for path, _field, _hint in walk_fields(Policy):
        assert f"| `{path}` |" in text, path


def test_readme_install_section_uses_real_paths() -> None:
    """README's "Install in a cluster" applies the kustomizations that exist and names real objects."""
    readme = (REPO / "README.md").read_text()
    assert "## Install in a cluster" in readme
    section = readme.split("## Install in a cluster", 1)[1]
    for path in re.findall(r"kubectl (?:apply|delete) -k ([\w./-]+)", section):
        assert (REPO / path / "kustomization.yaml").exists(), path
    assert 'select(.event=="decision")' in section
    for doc in re.findall(r"\((docs/[\w.-]+\.md)\)", section):
        assert (REPO / doc).exists(), doc


def test_docs_link_to_existing_files() -> None:
    """Relative links in docs/*.md point to files that exist."""
    for md in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(((?:\.\./)?[\w/.-]+\.(?:md|yaml|py|json))\)", md.read_text()):
            assert (md.parent / target).resolve().exists(), f"{md.name}: {target}"


def test_tuning_guide_simulate_command_runs(tmp_path: Path) -> None:
    """docs/tuning.md's `autoscaler simulate --trace your.csv --policy your.yaml` works on a CSV trace."""
    text = (REPO / "docs" / "tuning.md").read_text()
    assert "autoscaler simulate --trace your.csv --policy your.yaml" in text
    rows = ["timestamp_seconds,requests_per_second"]
    rows += [
        f"{1_700_000_000 + i},{200 + 150 * math.sin(2 * math.pi * i / 86400):.1f}" for i in range(0, 9 * 86400, 300)
    ]
    (tmp_path / "your.csv").write_text("\n".join(rows) + "\n")
    shutil.copy(REPO / "deploy" / "policy.yaml", tmp_path / "your.yaml")
    exe = shutil.which("autoscaler", path=str(REPO / ".venv" / "bin")) or shutil.which("autoscaler")
    assert exe
    proc = subprocess.run(
        [
            exe,
            "simulate",
            "--trace",
            "your.csv",
            "--policy",
            "your.yaml",
            "--out",
            "out",
            "--days",
            "1",
            "--policies",
            "predictive,oracle",
            "--no-plot",
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "out" / "result.json").exists()


def test_readme_shows_status_pause_and_release_with_the_real_names() -> None:
    """The install section's status line, pause and rollback use the annotations and command the code reads."""
    from autoscaler.kube import status

    section = (REPO / "README.md").read_text().split("## Install in a cluster", 1)[1].split("\n## ", 1)[0]
    assert status.STATUS_ANNOTATION.replace(".", "\\.") in section  # the jsonpath line escapes the dot
    for name in (status.PAUSED_ANNOTATION, status.PAUSED_REPLICAS_ANNOTATION, status.ORIGINAL_MIN_REPLICAS_ANNOTATION):
        assert name in section, name
    assert "autoscaler release --policy" in section and "WouldScale" in section
