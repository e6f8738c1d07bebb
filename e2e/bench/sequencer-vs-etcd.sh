#!/usr/bin/env bash
# Runs Dolphin's sequencer benchmark and then etcd's put benchmark at the same concurrency
# levels and message size, in one run on this machine, and prints a markdown table of the two.
#
#   e2e/bench/sequencer-vs-etcd.sh [--duration 10] [--concurrency 1,16,256] [--bytes 256]
#                                  [--out FILE]
#
# The Dolphin binary is DOLPHIN_BIN, or else target/release/dolphin under CARGO_TARGET_DIR
# (or this checkout's target/); build it first with `cargo build --release -p dolphin`, as
# this script does not. The etcd programs are built by build-etcd-bench.sh when missing. The
# raw JSON lines, each tagged "system": "dolphin" or "etcd", go to FILE (default: a new file
# under ~/.cache/dolphin/bench/results/), whose path is printed after the table. Every
# process it starts is stopped when it exits, Ctrl-C included.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { bench_usage "${BASH_SOURCE[0]}" "${1:-2}"; }

# How long a benchmark's processes get to stop after SIGTERM before they are killed: etcd.sh
# itself waits up to 15 s for its members.
STOP_TIMEOUT_SECONDS=20

parse_args() {
    duration=10
    concurrency=1,16,256
    bytes=256
    out=""
    while (($# > 0)); do
        case "$1" in
            --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
            --concurrency) concurrency="${2:?--concurrency needs a list}"; shift 2 ;;
            --bytes) bytes="${2:?--bytes needs a size}"; shift 2 ;;
            --out) out="${2:?--out needs a file}"; shift 2 ;;
            -h | --help) usage 0 ;;
            *) echo "sequencer-vs-etcd.sh: unknown argument $1" >&2; usage ;;
        esac
    done
    duration="${duration%s}"
    [[ $duration =~ ^[1-9][0-9]*$ ]] || cp_die "--duration must be whole seconds, got $duration"
    [[ $concurrency =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
        cp_die "--concurrency must be a list like 1,16,256, got $concurrency"
    [[ $bytes =~ ^[1-9][0-9]*$ ]] || cp_die "--bytes must be a positive whole number, got $bytes"
    if [[ -z $out ]]; then
        out="${DOLPHIN_CACHE:-$HOME/.cache/dolphin}/bench/results"
        out+="/sequencer-vs-etcd-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
    fi
}

# Stops the benchmark still running, if any, with all its processes, and removes the work
# folder unless a benchmark failed. Each benchmark runs in a process group of its own, so
# that Dolphin's replicas and Redis, and etcd's members, go with it.
cleanup() {
    local status=$? deadline
    trap - EXIT INT TERM
    if [[ -n ${group:-} ]]; then
        kill -TERM -- "-$group" 2>/dev/null || true
        deadline=$((SECONDS + STOP_TIMEOUT_SECONDS))
        while bench_group_alive "$group" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if bench_group_alive "$group"; then
            cp_log "processes of the benchmark still run ${STOP_TIMEOUT_SECONDS}s after" \
                "SIGTERM; killing them"
            kill -KILL -- "-$group" 2>/dev/null || true
        fi
        wait "$group" 2>/dev/null || true
    fi
    if ((status != 0 && status != 130 && status != 143)) && [[ -d ${work:-} ]]; then
        cp_log "kept $work for its logs; remove it when done"
    elif [[ -n ${work:-} ]]; then
        rm -rf "$work"
    fi
    exit "$status"
}

# run_group LIMIT WHAT HINT OUT COMMAND...: runs COMMAND as the leader of a new process group
# with its stdout in OUT, and waits for it at most LIMIT seconds; HINT says what probably hung.
run_group() {
    local limit="$1" what="$2" hint="$3" output="$4" deadline
    shift 4
    # setpgid, not setsid(1): setsid forks when its caller already leads a group (as under a
    # shell with job control), and then $! would not name the group. The group keeps the
    # terminal, but is not its foreground group, so Ctrl-C reaches only this script, whose
    # trap stops the group.
    python3 -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])' \
        "$@" </dev/null >"$output" &
    group=$!
    deadline=$((SECONDS + limit))
    while cp_pid_alive "$group"; do
        ((SECONDS < deadline)) || cp_die "$what did not finish in ${limit}s; $hint"
        sleep 0.2
    done
    if ! wait "$group"; then
        cp_die "$what failed (its messages are above)"
    fi
    # The leader is gone; anything it left in its group goes too.
    kill -KILL -- "-$group" 2>/dev/null || true
    group=""
}

# Tags each JSON line with its system, keeping the rest of the line as printed.
tag() {
    local system="$1" file="$2" line
    while IFS= read -r line; do
        [[ $line == "{"* ]] || continue
        echo "{\"system\":\"$system\",${line#\{}"
    done <"$file"
}

load_average() {
    cut -d' ' -f1-3 /proc/loadavg
}

main() {
    parse_args "$@"
    local dolphin levels
    dolphin="${DOLPHIN_BIN:-${CARGO_TARGET_DIR:-$BENCH_REPO/target}/release/dolphin}"
    [[ -x $dolphin ]] || cp_die "no Dolphin binary at $dolphin; build it with" \
        "cargo build --release -p dolphin, or set DOLPHIN_BIN"
    command -v python3 >/dev/null || cp_die "python3 is not on PATH; results.py needs it"
    command -v redis-server >/dev/null ||
        cp_die "redis-server is not on PATH; dolphin bench sequencer starts one"
    levels="$(tr ',' '\n' <<<"$concurrency" | wc -l)"
    mkdir -p "$(dirname "$out")"

    group=""
    work="$(mktemp -d "${TMPDIR:-/tmp}/sequencer-vs-etcd.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # Build first, so that a build does not share the cores with either measurement.
    "$BENCH_DIR/build-etcd-bench.sh" >/dev/null

    # Each bound: the planned sending time, twice over, plus a minute for starting and
    # stopping the clusters (and, for etcd, its calibration runs). Dolphin puts its replicas'
    # data in a folder of its own under TMPDIR, here the work folder, so that it goes even if
    # Dolphin is stopped; etcd's data goes under TMPDIR too, on the same file system.
    cp_log "dolphin bench sequencer: concurrency $concurrency, ${duration}s each, $bytes B;" \
        "load average $(load_average)"
    TMPDIR="$work" run_group $((2 * levels * duration + 60)) "dolphin bench sequencer" \
        "its Raft group probably lost its leader (replica logs: $work/dolphin-bench-*/logs)" \
        "$work/dolphin.out" \
        "$dolphin" bench sequencer --concurrency "$concurrency" --duration "${duration}s" \
        --body-bytes "$bytes" --replicas 3 --json
    tag dolphin "$work/dolphin.out" >"$out"

    cp_log "etcd.sh: concurrency $concurrency, ${duration}s each, $bytes B;" \
        "load average $(load_average)"
    TMPDIR="$work" run_group $((4 * levels * duration + 120)) "e2e/bench/etcd.sh" \
        "its own bounded waits should have fired first; see its messages above" \
        "$work/etcd.out" \
        "$BENCH_DIR/etcd.sh" --concurrency "$concurrency" --duration "$duration" \
        --value-bytes "$bytes"
    tag etcd "$work/etcd.out" >>"$out"
    cp_log "done; load average $(load_average)"

    python3 "$BENCH_DIR/results.py" table "$out"
    echo
    echo "raw results: $out"
}

main "$@"
