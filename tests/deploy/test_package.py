"""The wheel the image is built from ships the whole program and runs away from the source tree.

Why: the Dockerfile's build stage runs ``pip install .`` and nothing else; no Docker engine
runs here, so the image itself is never built in CI. What could break it without any other
test noticing is packaging: a new subpackage that setuptools' discovery misses, the bundled
traces or example policy left out of the package data, the ``autoscaler`` entry point or
the licence notice gone. These tests build that wheel (with the build backend from the dev
extras, no network), check its contents against the source tree, and run the main job from
the installed files only, in a directory with no source tree, writing no bytecode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("autoscaler", "models")
#: What the Dockerfile's build stage COPYs before ``pip install .`` (checked against it below).
DOCKERFILE_COPIES = ("pyproject.toml", "README.md", "NOTICE", "autoscaler", "models")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel .`` of exactly what the Dockerfile copies into its build stage, built once for the module.

    Built from a copy, so nothing left in the working tree (``build/``, ``*.egg-info``) can
    fill a gap in the package data.
    """
    context = tmp_path_factory.mktemp("context")
    for name in DOCKERFILE_COPIES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, context / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("gpu_predictive_autoscaler-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel unpacked as a site directory (what ``pip install`` puts in site-packages)."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    yield site


def test_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    """The build context used here is the Dockerfile's: same files, nothing more, nothing less."""
    copied: list[str] = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.extend(words[1:-1])
    assert sorted(copied) == sorted(DOCKERFILE_COPIES)


def _source_files() -> set[str]:
    """Every file of our packages that a built program needs (no caches, no tests)."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                names.add(path.relative_to(REPO).as_posix())
    return names


def test_wheel_ships_every_module_and_data_file(wheel: Path) -> None:
    """Everything under autoscaler/ and models/ is in the wheel, with the entry point and the notice."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    missing = sorted(_source_files() - names)
    assert not missing, f"not packaged: {missing}"
    assert "autoscaler/data/servegen-m-mid.csv" in names and "autoscaler/data/README.md" in names
    assert any(n.startswith(f"{dist_info}/") and n.endswith("NOTICE") for n in names)
    assert "autoscaler = autoscaler.cli.main:main" in entry_points


def _run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``autoscaler`` entry point importing only from ``site``.

    Isolated mode (no cwd, no user site, no PYTHON* variables) and no bytecode written, as in the image.
    """
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import autoscaler, models; "
        "assert autoscaler.__file__.startswith(sys.path[0]) and models.__file__.startswith(sys.path[0]), "
        "(autoscaler.__file__, models.__file__); "
        "from autoscaler.cli.main import main; sys.argv[0] = 'autoscaler'; raise SystemExit(main())"
    )
    env = {**os.environ, "MPLCONFIGDIR": str(cwd / "mpl"), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-I", "-B", "-c", code, str(site), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_installed_wheel_validates_its_bundled_policy(installed: Path, tmp_path: Path) -> None:
    """The example policy shipped in the package validates from the installed files."""
    policy = installed / "autoscaler" / "policy" / "example-gpt2.yaml"
    done = _run_installed(installed, tmp_path, "validate-policy", str(policy))
    assert done.returncode == 0, done.stderr


def test_installed_wheel_runs_the_main_job(installed: Path, tmp_path: Path) -> None:
    """``autoscaler simulate`` on the bundled default trace works from the installed wheel alone."""
    out = tmp_path / "out"
    done = _run_installed(
        installed, tmp_path, "simulate", "--days", "1", "--policies", "predictive",
        "--no-plot", "--no-progress", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["meta"]["trace"] == "servegen-m-mid" and result["meta"]["simulated_days"] == 1.0
    (predictive,) = result["results"]
    assert predictive["policy"] == "predictive" and predictive["gpu_node_hours"] > 0
    assert 90.0 <= predictive["slo_attainment_pct"] <= 100.0
