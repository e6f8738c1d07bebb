#!/usr/bin/env bash
# Builds Centrifugo, the peer Dolphin's fan-out is measured against, from its Go module into
# the benchmark cache outside the checkout.
#
#   e2e/bench/build-centrifugo.sh       build unless the pinned version is already there
#
# The version is pinned here; the binary is `centrifugo` in the folder printed on the last
# line, with a `.centrifugo-version` file beside it naming what it was built from. A cold
# build downloads about 200 modules and takes two to four minutes on 2 cores.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/centrifugal/centrifugo/v6
VERSION=v6.9.1

main() {
    case "$*" in
        "") ;;
        -h | --help) bench_usage "${BASH_SOURCE[0]}" 0 ;;
        *) echo "build-centrifugo.sh: unknown argument $1" >&2; bench_usage "${BASH_SOURCE[0]}" ;;
    esac
    local bin stamp
    bin="$(bench_bin_dir)"
    stamp="$bin/.centrifugo-version"
    mkdir -p "$bin"
    if [[ -x "$bin/centrifugo" && -f "$stamp" && "$(cat "$stamp")" == "$MODULE@$VERSION" ]]; then
        echo "$bin"
        return
    fi
    command -v go >/dev/null || cp_die "go is not on PATH; Centrifugo is built from its module"
    cp_log "building $MODULE@$VERSION into $bin"
    GOBIN="$bin" GOFLAGS=-mod=mod go install -trimpath -ldflags="-s -w" "$MODULE@$VERSION"
    echo "$MODULE@$VERSION" >"$stamp"
    echo "$bin"
}

main "$@"
