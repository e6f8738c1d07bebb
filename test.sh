#!/usr/bin/env bash
# Runs every check and test of Dolphin, installing what it needs on a fresh Debian machine.
# Heavy builds are cached outside the checkout (DOLPHIN_CACHE, default ~/.cache/dolphin) so a
# second run is fast.
set -euo pipefail

cd "$(dirname "$0")"
export DOLPHIN_CACHE="${DOLPHIN_CACHE:-$HOME/.cache/dolphin}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DOLPHIN_CACHE/target}"
mkdir -p "$DOLPHIN_CACHE"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "system packages"
need=()
command -v curl >/dev/null || need+=(curl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

step "format"
cargo fmt --all --check

step "lints"
cargo clippy -j2 --workspace --all-targets -- -D warnings

step "build"
cargo build -j2 --workspace --all-targets

# The file tests keep files in a real S3 server on loopback: s3s-fs from crates.io, installed
# once (about 7 minutes cold on 2 cores, then cached).
step "S3 server for the file tests (cached in \$DOLPHIN_CACHE)"
DOLPHIN_S3_SERVER_BIN="$(e2e/s3/build.sh | tail -n 1)"
export DOLPHIN_S3_SERVER_BIN

step "unit and integration tests"
cargo test -j2 --workspace

# The operator against a real API server: the control plane is built from Go modules once
# (about 15 minutes cold on 2 cores, then cached) and run.sh stops it however it ends.
if [ "${DOLPHIN_SKIP_OPERATOR_E2E:-0}" != 1 ]; then
    step "Kubernetes control plane for the operator (cached in \$DOLPHIN_CACHE)"
    e2e/controlplane/build.sh >/dev/null
    step "operator end to end (kube-apiserver, controllers, fake nodes)"
    DOLPHIN_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/dolphin-operator" e2e/operator/run.sh
fi

# The Helm chart: lint, schema, server-side dry run, install, the chart's operator
# reconciling with the chart's RBAC, uninstall. Same control plane, same switch.
if [ "${DOLPHIN_SKIP_OPERATOR_E2E:-0}" != 1 ]; then
    step "Helm chart end to end (helm lint, template, install into the control plane)"
    DOLPHIN_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/dolphin-operator" e2e/helm/run.sh
fi

step "protocol conformance (a client written from the protocol text alone)"
DOLPHIN_BIN="$CARGO_TARGET_DIR/debug/dolphin" e2e/conformance/run.sh

step "done"
