#!/usr/bin/env bash
# Builds the etcd server, etcdctl and etcd's `benchmark` program, as pinned by
# e2e/bench/etcd-tools, into a cache outside the checkout.
#
#   e2e/bench/build-etcd-bench.sh          build unless the cache already matches the pins
#   DOLPHIN_CACHE=/some/dir ...            cache under /some/dir instead of ~/.cache/dolphin
#
# The cache key is a hash of etcd-tools/go.mod, go.sum and the build recipe below, so the
# programs are rebuilt when, and only when, a pin or a flag changes; a second run returns at
# once. Prints the folder of the binaries on its last line.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { bench_usage "${BASH_SOURCE[0]}" "${1:-2}"; }

# A cold build of the three programs takes about four minutes on 2 cores; a waiter that gives
# up after twenty has found a build that died holding the lock.
LOCK_TIMEOUT_SECONDS=1200

# Each binary and the package it is built from, all from the one module in etcd-tools.
BINARIES=(etcd etcdctl benchmark)
PACKAGES=(go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/v3/tools/benchmark)
FLAGS=(-p 2 -trimpath "-ldflags=-s -w")

cache_key() {
    {
        cat "$BENCH_TOOLS/go.mod" "$BENCH_TOOLS/go.sum"
        echo "${BINARIES[*]} ${PACKAGES[*]} ${FLAGS[*]}"
    } | sha256sum | cut -d' ' -f1
}

cache_is_current() {
    local bin="$1" key="$2" name
    [[ -f "$bin/.key" && "$(cat "$bin/.key")" == "$key" ]] || return 1
    for name in "${BINARIES[@]}"; do
        [[ -x "$bin/$name" ]] || return 1
    done
}

main() {
    case "$*" in
        "") ;;
        -h | --help) usage 0 ;;
        *) echo "build-etcd-bench.sh: unknown argument $1" >&2; usage ;;
    esac
    local bin key started i
    bin="$(bench_bin_dir)"
    started=$SECONDS
    key="$(cache_key)"
    mkdir -p "$(dirname "$bin")"

    # One build at a time per cache: a second caller waits, then finds the cache current.
    exec 9>"$(dirname "$bin")/build.lock"
    if ! flock -w "$LOCK_TIMEOUT_SECONDS" 9; then
        cp_die "waited ${LOCK_TIMEOUT_SECONDS}s for $(dirname "$bin")/build.lock;" \
            "another build-etcd-bench.sh probably hung (see ps for go build)"
    fi

    if cache_is_current "$bin" "$key"; then
        cp_log "etcd $(bench_pinned_version "$BENCH_TOOLS/go.mod" go.etcd.io/etcd/v3)" \
            "and its benchmark are already built in $bin"
        echo "$bin"
        return 0
    fi

    command -v go >/dev/null || cp_die "go is not on PATH; install Go 1.26 or newer"
    export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

    # Build beside the cache and rename into place, so an interrupted build leaves no
    # half-filled folder. Global, not local: the EXIT trap may run after main has returned.
    build_tmp="$bin.tmp.$$"
    rm -rf "$build_tmp"
    mkdir -p "$build_tmp"
    trap 'rm -rf "$build_tmp"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cp_log "building etcd $(bench_pinned_version "$BENCH_TOOLS/go.mod" go.etcd.io/etcd/v3)," \
        "etcdctl and benchmark into $bin (go $(go env GOVERSION))"

    for i in "${!BINARIES[@]}"; do
        (cd "$BENCH_TOOLS" && go build "${FLAGS[@]}" -o "$build_tmp/${BINARIES[$i]}" \
            "${PACKAGES[$i]}") ||
            cp_die "failed to build ${PACKAGES[$i]}; the go messages above say why"
    done
    echo "$key" >"$build_tmp/.key"
    rm -rf "$bin"
    mv "$build_tmp" "$bin"
    trap - EXIT

    cp_log "etcd programs built in $((SECONDS - started))s"
    echo "$bin"
}

main "$@"
