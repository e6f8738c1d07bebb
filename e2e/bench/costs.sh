#!/usr/bin/env bash
# Measures what one commit costs a 3-member Raft group under load: disk syncs, bytes written
# to the disk and CPU time, for Dolphin's sequencer or for etcd, summed over the members.
#
#   e2e/bench/costs.sh --system dolphin|etcd [--concurrency 1] [--window 4]
#
# It starts the system's benchmark (dolphin bench sequencer, or etcd.sh) at one concurrency
# level, and in the middle of the run reads the members' /proc/PID/io (write_bytes) and CPU
# time over WINDOW seconds, then counts fsync and fdatasync calls with `strace -c` over a
# second window (strace slows the members, so the two are kept apart). A commit is a Raft
# log entry for Dolphin (which may batch several messages) and a revision for etcd (one put).
# Prints the figures on stdout. DOLPHIN_BIN or CARGO_TARGET_DIR find Dolphin as in
# sequencer-vs-etcd.sh. Everything it starts is stopped when it exits, Ctrl-C included.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { bench_usage "${BASH_SOURCE[0]}" "${1:-2}"; }

START_TIMEOUT_SECONDS=60
STOP_TIMEOUT_SECONDS=20

parse_args() {
    system=""
    concurrency=1
    window=4
    while (($# > 0)); do
        case "$1" in
            --system) system="${2:?--system needs dolphin or etcd}"; shift 2 ;;
            --concurrency) concurrency="${2:?--concurrency needs a number}"; shift 2 ;;
            --window) window="${2:?--window needs seconds}"; shift 2 ;;
            -h | --help) usage 0 ;;
            *) echo "costs.sh: unknown argument $1" >&2; usage ;;
        esac
    done
    [[ $system == dolphin || $system == etcd ]] ||
        cp_die "--system must be dolphin or etcd, got '${system}'"
    [[ $concurrency =~ ^[1-9][0-9]*$ ]] ||
        cp_die "--concurrency must be one positive number, got $concurrency"
    [[ $window =~ ^[1-9][0-9]*$ ]] || cp_die "--window must be whole seconds, got $window"
}

cleanup() {
    local status=$? deadline
    trap - EXIT INT TERM
    if [[ -n ${group:-} ]]; then
        kill -TERM -- "-$group" 2>/dev/null || true
        deadline=$((SECONDS + STOP_TIMEOUT_SECONDS))
        while bench_group_alive "$group" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL -- "-$group" 2>/dev/null || true
        wait "$group" 2>/dev/null || true
    fi
    [[ -n ${work:-} ]] && rm -rf "$work"
    exit "$status"
}

# Starts COMMAND as the leader of a process group of its own, its stdout and stderr in files
# of the work folder (see run_group in sequencer-vs-etcd.sh for why setpgid).
start_group() {
    python3 -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])' \
        "$@" </dev/null >"$work/run.out" 2>"$work/run.err" &
    group=$!
}

# The pids of the descendants of the group's leader whose command name is $1. By descent, not
# by process group: etcd.sh runs the benchmark under timeout(1), which makes a group of its own.
group_members() {
    ps -e -o pid=,ppid=,comm= | awk -v root="$group" -v name="$1" '
        { parent[$1] = $2; comm[$1] = $3 }
        END {
            for (pid in parent) {
                for (up = parent[pid]; up != "" && up != 0 && up != root; up = parent[up]) {}
                if (up == root && comm[pid] == name) print pid
            }
        }'
}

sum_io_bytes() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '$1 == "write_bytes:" { print $2 }' "/proc/$pid/io")))
    done
    echo "$total"
}

# CPU time (user + system) of the pids, in clock ticks.
sum_cpu_ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

# Waits until COMMAND succeeds, bounded; WHAT says what was awaited.
wait_for() {
    local what="$1"
    shift
    local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
    until "$@"; do
        cp_pid_alive "$group" ||
            cp_die "the benchmark exited while waiting for $what; its last words:" \
                "$(tail -n 3 "$work/run.err")"
        ((SECONDS < deadline)) ||
            cp_die "timed out after ${START_TIMEOUT_SECONDS}s waiting for $what"
        sleep 0.2
    done
}

dolphin_replicas_up() {
    (($(group_members dolphin | wc -l) >= 3)) &&
        compgen -G "$work/dolphin-bench-*/topology.yaml" >/dev/null
}

# Dolphin: the highest last log index any replica reports.
dolphin_commits() {
    local addr
    grep -o '127\.0\.0\.1:[0-9]*' "$work"/dolphin-bench-*/topology.yaml |
        while IFS= read -r addr; do
            curl -fsS --max-time 1 "http://$addr/admin/status" || true
            echo
        done | python3 -c '
import json, sys
print(max(json.loads(line)["last_log_index"] for line in sys.stdin if line.startswith("{")))'
}

etcd_benchmark_up() {
    [[ -n "$(group_members benchmark)" ]]
}

etcd_running() {
    grep -q "concurrency $concurrency: [0-9]* puts" "$work/run.err" 2>/dev/null
}

# etcd: the cluster's revision, one per put.
etcd_commits() {
    "$bin/etcdctl" --endpoints "$leader" --command-timeout 2s endpoint status -w json |
        python3 -c '
import json, sys
print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
}

main() {
    parse_args "$@"
    command -v python3 >/dev/null || cp_die "python3 is not on PATH"
    command -v curl >/dev/null || cp_die "curl is not on PATH"
    local run_seconds=$((3 * window + 10)) members clients commits_of
    local c0 c1 c2 b0 b1 t0 t1 p0 p1 q0 q1 syncs=""

    group=""
    work="$(mktemp -d "${TMPDIR:-/tmp}/bench-costs.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    if [[ $system == dolphin ]]; then
        local dolphin="${DOLPHIN_BIN:-${CARGO_TARGET_DIR:-$BENCH_REPO/target}/release/dolphin}"
        [[ -x $dolphin ]] || cp_die "no Dolphin binary at $dolphin; set DOLPHIN_BIN"
        TMPDIR="$work" start_group "$dolphin" bench sequencer --concurrency "$concurrency" \
            --duration "${run_seconds}s" --json
        wait_for "the replicas to start" dolphin_replicas_up
        # The bench process leads the group and sends the load; the replicas are its children.
        clients="$group"
        members="$(group_members dolphin)"
        commits_of=dolphin_commits
    else
        bin="$("$BENCH_DIR/build-etcd-bench.sh" | tail -n 1)"
        TMPDIR="$work" start_group "$BENCH_DIR/etcd.sh" --concurrency "$concurrency" \
            --duration "$run_seconds"
        wait_for "etcd.sh to start its measured run" etcd_running
        leader="$(grep -o 'leader at [^ ]*' "$work/run.err" | cut -d' ' -f3)"
        wait_for "the benchmark program" etcd_benchmark_up
        clients="$(group_members benchmark)"
        members="$(group_members etcd)"
        commits_of=etcd_commits
    fi
    # Let the level settle before measuring.
    sleep 2

    # shellcheck disable=SC2086 # word splitting of the pid lists is intended
    {
        c0="$($commits_of)"; b0="$(sum_io_bytes $members)"; p0="$(sum_cpu_ticks $members)"
        q0="$(sum_cpu_ticks $clients)"; t0="$(date +%s.%N)"
        sleep "$window"
        c1="$($commits_of)"; b1="$(sum_io_bytes $members)"; p1="$(sum_cpu_ticks $members)"
        q1="$(sum_cpu_ticks $clients)"; t1="$(date +%s.%N)"
        if command -v strace >/dev/null; then
            local attach=() pid
            for pid in $members; do
                attach+=(-p "$pid")
            done
            timeout --signal INT "$window" strace -c -f -e trace=fsync,fdatasync "${attach[@]}" \
                -o "$work/strace.txt" 2>/dev/null || true
            c2="$($commits_of)"
            syncs="$(awk '$NF == "total" { print $(NF - 1) }' "$work/strace.txt")"
        fi
    }

    python3 - "$system" "$concurrency" "$c0" "$c1" "$b0" "$b1" "$p0" "$p1" "$q0" "$q1" \
        "$t0" "$t1" "${syncs:-}" "${c2:-}" "$(getconf CLK_TCK)" <<'EOF'
import sys

system, level = sys.argv[1], sys.argv[2]
c0, c1, b0, b1, p0, p1, q0, q1 = (int(v) for v in sys.argv[3:11])
t0, t1 = float(sys.argv[11]), float(sys.argv[12])
syncs, c2, hz = sys.argv[13], sys.argv[14], int(sys.argv[15])
commits, seconds = c1 - c0, t1 - t0
if commits <= 0:
    sys.exit("costs.sh: no commits in the window; the benchmark probably stalled")
print(f"{system}, concurrency {level}, {seconds:.1f} s window, members summed:")
print(f"  commits per second          {commits / seconds:10.0f}")
print(f"  disk bytes written / commit {(b1 - b0) / commits:10.0f}")
print(f"  server CPU ms / commit      {(p1 - p0) * 1000 / hz / commits:10.3f}")
print(f"  client CPU ms / commit      {(q1 - q0) * 1000 / hz / commits:10.3f}")
print(f"  server CPU cores            {(p1 - p0) / hz / seconds:10.2f}")
if syncs and c2 and int(c2) > c1:
    print(f"  fsync+fdatasync / commit    {int(syncs) / (int(c2) - c1):10.2f}  (under strace)")
EOF
}

main "$@"
