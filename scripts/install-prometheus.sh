#!/usr/bin/env bash
# Install the Debian `prometheus` package (server + promtool) for the tests.
#
# Why: the Prometheus test harness (tests/prom) runs a REAL Prometheus server
# and backfills history with `promtool tsdb create-blocks-from openmetrics`.
# Idempotent: exits 0 at once when both binaries are already on PATH.
#
# The Debian package's postinst starts a system `prometheus` service on :9090
# when systemd is running. Our tests never use that service or port: each
# test server gets its own temp dir and a random loopback port. We prevent
# the service from being started during installation (policy-rc.d) where we
# can, and leave an already running one alone.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-prometheus.sh: need root (or sudo) to apt-get install prometheus" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive

# Keep invoke-rc.d from starting the packaged service (exit 101 = "action
# forbidden"); only if no policy-rc.d exists yet, and removed afterwards.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    CREATED_POLICY=1
fi
cleanup() {
    if [ "$CREATED_POLICY" = 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

install_pkg() {
    $SUDO apt-get install -y --no-install-recommends prometheus
}

# apt-get update only when the package is unknown to apt or the install fails
# (e.g. stale lists).
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $SUDO apt-get update
fi
if ! install_pkg; then
    $SUDO apt-get update
    install_pkg
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus.sh: prometheus/promtool still not on PATH after install" >&2
    exit 1
fi
prometheus --version 2>&1 | head -1
