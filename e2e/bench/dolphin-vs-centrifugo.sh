#!/usr/bin/env bash
# Measures Dolphin (`dolphin dev`) and Centrifugo v6 (memory engine) side by side, with the
# same load generator, on the same cores, in one run: fan-out to one room at several offered
# rates, 5,000 two-person conversations, a reconnect storm of the whole room after 100 missed messages, and server memory per
# idle connection. Prints the tables of docs/benchmarks.md with
# the ratios, and draws the plots.
#
#   e2e/bench/dolphin-vs-centrifugo.sh [--members 1000] [--rates 100,200,400,800]
#                                      [--duration 15s] [--connections 10000]
#                                      [--with-redis]
#
# --with-redis measures the setups that keep their data in Redis instead: a Dolphin process
# cluster (two shards of three replicas, one edge, Redis with AOF and fsync always as the queue)
# against Centrifugo with its Redis engine (the same Redis settings). Every process of a server
# (Redis included) counts in its CPU and memory figures, and all are pinned to the same core.
#
# Dolphin comes from DOLPHIN_BIN, or $CARGO_TARGET_DIR/release/dolphin (build it with
# `cargo build --release -p dolphin`). Centrifugo is built by build-centrifugo.sh. Raw
# results go to ~/.cache/dolphin/bench/results/dolphin-vs-centrifugo-<time>.jsonl; the
# report and plots to --out (default: that folder). Needs python3 (a venv with matplotlib is
# made under ~/.cache/dolphin/bench-venv) and taskset.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_args() {
    members=1000
    rates=100,200,400,800
    duration=15s
    connections=10000
    out=""
    setups=(--dolphin-setup dev --centrifugo-engine memory)
    label=memory
    while (($# > 0)); do
        case "$1" in
            --members) members="${2:?--members needs a number}"; shift 2 ;;
            --rates) rates="${2:?--rates needs a list}"; shift 2 ;;
            --duration) duration="${2:?--duration needs a time}"; shift 2 ;;
            --connections) connections="${2:?--connections needs a number}"; shift 2 ;;
            --out) out="${2:?--out needs a folder}"; shift 2 ;;
            --with-redis) setups=(--dolphin-setup cluster --centrifugo-engine redis); label=redis; shift ;;
            -h | --help) bench_usage "${BASH_SOURCE[0]}" 0 ;;
            *) echo "dolphin-vs-centrifugo.sh: unknown argument $1" >&2; bench_usage "${BASH_SOURCE[0]}" ;;
        esac
    done
}

main() {
    parse_args "$@"
    local dolphin centrifugo results stamp venv
    dolphin="${DOLPHIN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/dolphin/target}/release/dolphin}"
    [[ -x $dolphin ]] || cp_die "no Dolphin binary at $dolphin; cargo build --release -p dolphin"
    centrifugo="$("$BENCH_DIR/build-centrifugo.sh" | tail -1)/centrifugo"
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    results="${DOLPHIN_CACHE:-$HOME/.cache/dolphin}/bench/results"
    mkdir -p "$results"
    out="${out:-$results}"
    local file="$results/dolphin-vs-centrifugo-$label-$stamp.jsonl"
    cp_log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); results in $file"

    local target
    for target in dolphin centrifugo; do
        cp_log "fan-out, $target: $members members, rates $rates, $duration each"
        "$dolphin" bench fanout --target "$target" --centrifugo "$centrifugo" "${setups[@]}" \
            --members "$members" --rate "$rates" --duration "$duration" --json |
            sed 's/^{/{"scenario":"fanout",/' >>"$file"
    done
    for target in dolphin centrifugo; do
        cp_log "pairs, $target: 5000 conversations, 1000 msg/s, $duration"
        "$dolphin" bench pairs --target "$target" --centrifugo "$centrifugo" "${setups[@]}" \
            --pairs 5000 --rate 1000 --duration "$duration" --json |
            sed 's/^{/{"scenario":"pairs",/' >>"$file"
    done
    for target in dolphin centrifugo; do
        cp_log "catch-up storm, $target: $members members reconnecting after 100 missed"
        "$dolphin" bench catchup --target "$target" --centrifugo "$centrifugo" "${setups[@]}" \
            --members "$members" --missed 100 --json |
            sed 's/^{/{"scenario":"catchup",/' >>"$file"
    done
    for target in dolphin centrifugo; do
        cp_log "idle connections, $target: $connections"
        "$dolphin" bench connections --target "$target" --centrifugo "$centrifugo" "${setups[@]}" \
            --connections "$connections" --json |
            sed 's/^{/{"scenario":"connections",/' >>"$file"
    done
    cp_log "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

    venv="${DOLPHIN_CACHE:-$HOME/.cache/dolphin}/bench-venv"
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet matplotlib==3.10.7
    fi
    "$venv/bin/python" "$BENCH_DIR/centrifugo-report.py" "$file" --out "$out"
}

main "$@"
