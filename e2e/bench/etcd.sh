#!/usr/bin/env bash
# Measures etcd under the load shape of `dolphin bench sequencer`: one 3-member cluster on
# loopback, each member fsyncing its log, and for each concurrency level N, N clients that
# each put a value (256 bytes by default) and wait for the commit before the next.
#
#   e2e/bench/etcd.sh [--concurrency 1,16,256] [--duration 10] [--value-bytes 256]
#
# Prints one JSON line per level on stdout, in the shape Dolphin prints:
#   {"concurrency":N,"messages":..,"errors":..,"seconds":..,"messages_per_second":..,
#    "latency":{"p50_ms":..,"p99_ms":..,"p999_ms":..}}
# Progress goes to stderr. The cluster and its data are removed on exit, however it ends.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MEMBERS=3
KEY_BYTES=16
# 8 GiB, etcd's suggested maximum: far above what a run writes (every revision is kept, as
# nothing compacts, so ~300 bytes a put: a 10 s run at 10,000 puts/s adds ~30 MB).
QUOTA_BACKEND_BYTES=$((8 * 1024 * 1024 * 1024))
# Sequential keys from 0 up to this, so no put of a run overwrites a key of the same run; each
# run starts again at 0. A put makes a new revision whether or not its key exists.
KEY_SPACE=2000000000
HEALTHY_TIMEOUT_SECONDS=30
STOP_TIMEOUT_SECONDS=15
# A calibration run aims at this long, to estimate the put rate of a level: long enough that
# a scheduling hiccup on a shared machine moves the estimate little.
CALIBRATION_SECONDS=2

usage() { bench_usage "${BASH_SOURCE[0]}" "${1:-2}"; }

parse_args() {
    concurrency=1,16,256
    duration=10
    value_bytes=256
    while (($# > 0)); do
        case "$1" in
            --concurrency) concurrency="${2:?--concurrency needs a list like 1,16,256}"; shift 2 ;;
            --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
            --value-bytes) value_bytes="${2:?--value-bytes needs a size}"; shift 2 ;;
            -h | --help) usage 0 ;;
            *) echo "etcd.sh: unknown argument $1" >&2; usage ;;
        esac
    done
    # Accept "10s" as Dolphin does, but only whole seconds.
    duration="${duration%s}"
    [[ $duration =~ ^[1-9][0-9]*$ ]] || cp_die "--duration must be whole seconds, got $duration"
    [[ $concurrency =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
        cp_die "--concurrency must be a list like 1,16,256, got $concurrency"
    [[ $value_bytes =~ ^[1-9][0-9]*$ ]] ||
        cp_die "--value-bytes must be a positive whole number, got $value_bytes"
}

# Stops the members (SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS) and removes their data.
# Runs on every exit, so a failed or interrupted run leaves nothing behind.
cleanup() {
    local status=$? pid i deadline
    trap - EXIT INT TERM

    # After a failure (not an interrupt), the members' last words, before stopping them adds
    # its own noise to the logs.
    if ((status != 0 && status != 130 && status != 143)) && [[ -d ${work:-} ]]; then
        for i in $(seq 1 "$MEMBERS"); do
            [[ -f $work/m$i.log ]] || continue
            cp_log "last lines of etcd member m$i's log:"
            tail -n 5 "$work/m$i.log" >&2
        done
    fi

    if [[ -n ${bench_pid:-} ]]; then
        kill -TERM "$bench_pid" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + STOP_TIMEOUT_SECONDS))
    while any_member_alive && ((SECONDS < deadline)); do
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if cp_pid_alive "${pids[$i]}"; then
            cp_log "etcd member m$((i + 1)) still runs ${STOP_TIMEOUT_SECONDS}s after SIGTERM;" \
                "probably stuck in an fsync; killing it"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        wait "${pids[$i]}" 2>/dev/null || true
    done

    [[ -n ${work:-} ]] && rm -rf "$work"
    exit "$status"
}

any_member_alive() {
    local pid
    for pid in "${pids[@]}"; do
        cp_pid_alive "$pid" && return 0
    done
    return 1
}

# Draws 2 ports per member, all different (cp_free_port alone could repeat one).
draw_ports() {
    local port
    ports=()
    while ((${#ports[@]} < 2 * MEMBERS)); do
        port="$(cp_free_port)"
        [[ " ${ports[*]} " == *" $port "* ]] || ports+=("$port")
    done
}

client_url() { echo "http://127.0.0.1:${ports[$((2 * ($1 - 1)))]}"; }
peer_url() { echo "http://127.0.0.1:${ports[$((2 * ($1 - 1) + 1))]}"; }

# Default durability: no --unsafe-no-fsync, so each member fsyncs its WAL before it
# acknowledges an entry, and the leader answers a put once a quorum has it on disk.
start_members() {
    local i cluster=""
    for i in $(seq 1 "$MEMBERS"); do
        cluster+="${cluster:+,}m$i=$(peer_url "$i")"
    done
    for i in $(seq 1 "$MEMBERS"); do
        "$bin/etcd" \
            --name "m$i" \
            --data-dir "$work/m$i" \
            --listen-client-urls "$(client_url "$i")" \
            --advertise-client-urls "$(client_url "$i")" \
            --listen-peer-urls "$(peer_url "$i")" \
            --initial-advertise-peer-urls "$(peer_url "$i")" \
            --initial-cluster "$cluster" \
            --initial-cluster-token "dolphin-bench-$$" \
            --initial-cluster-state new \
            --quota-backend-bytes "$QUOTA_BACKEND_BYTES" \
            --log-level warn \
            >"$work/m$i.log" 2>&1 &
        pids+=("$!")
    done
}

all_endpoints() {
    local i eps=""
    for i in $(seq 1 "$MEMBERS"); do
        eps+="${eps:+,}$(client_url "$i")"
    done
    echo "$eps"
}

# Polls `etcdctl endpoint health` (a quorum read on each member, so it also needs a leader)
# and fails at once, with the log, if a member exits instead.
wait_healthy() {
    local i deadline=$((SECONDS + HEALTHY_TIMEOUT_SECONDS))
    until "$bin/etcdctl" --endpoints "$(all_endpoints)" --command-timeout 2s \
        endpoint health >/dev/null 2>&1; do
        for i in "${!pids[@]}"; do
            cp_pid_alive "${pids[$i]}" ||
                cp_die "etcd member m$((i + 1)) exited while the cluster started"
        done
        if ((SECONDS >= deadline)); then
            cp_die "timed out after ${HEALTHY_TIMEOUT_SECONDS}s waiting for $MEMBERS etcd" \
                "members to report healthy; the members probably could not reach each other" \
                "on their peer ports or elect a leader"
        fi
        sleep 0.2
    done
}

# The client URL of the member that is leader now: `endpoint status` tells each member's id
# and the leader's id.
leader_endpoint() {
    "$bin/etcdctl" --endpoints "$(all_endpoints)" --command-timeout 5s \
        endpoint status -w json |
        python3 -c '
import json, sys
for member in json.load(sys.stdin):
    status = member["Status"]
    if status["header"]["member_id"] == status["leader"]:
        print(member["Endpoint"])
        break
else:
    sys.exit("no member reported itself leader")
'
}

# benchmark_put N TOTAL OUT: N clients on N connections share TOTAL puts; the report goes to
# OUT. Bounded: a run that lasts three times the planned time plus a minute has hung. It runs
# in the background so that a signal reaches the traps at once, not when the run ends.
benchmark_put() {
    local clients="$1" total="$2" out="$3" limit=$((3 * duration + 60))
    timeout "$limit" "$bin/benchmark" \
        --endpoints "$leader" --clients "$clients" --conns "$clients" --precise \
        put --key-size "$KEY_BYTES" --val-size "$value_bytes" \
        --sequential-keys --key-space-size "$KEY_SPACE" --total "$total" \
        >"$out" 2>>"$work/benchmark.log" &
    bench_pid=$!
    if ! wait "$bench_pid"; then
        cp_die "etcd benchmark put with $clients clients did not finish in ${limit}s" \
            "(or failed); the cluster probably lost its leader or quorum" \
            "(see $work/benchmark.log and the member logs)"
    fi
    bench_pid=""
}

# The tool takes a number of puts, not a duration. Short runs, each larger than the last,
# until one lasts about CALIBRATION_SECONDS, give the rate; the level then runs
# rate x duration puts, set in `total`. The calibration runs also warm the cluster up.
calibrate() {
    local clients="$1" seconds factor tries=0
    total=$((clients * 2 > 40 ? clients * 2 : 40))
    while true; do
        benchmark_put "$clients" "$total" "$work/calibration.out"
        seconds="$(awk '$1 == "Total:" { print $2; exit }' "$work/calibration.out")"
        [[ -n $seconds ]] || cp_die "the calibration run printed no 'Total:' line" \
            "(see $work/calibration.out)"
        tries=$((tries + 1))
        if ((tries >= 6)) || awk -v s="$seconds" -v c="$CALIBRATION_SECONDS" \
            'BEGIN { exit !(s >= 0.8 * c) }'; then
            break
        fi
        # Grow toward the target, at most 20-fold a step.
        factor="$(awk -v s="$seconds" -v c="$CALIBRATION_SECONDS" \
            'BEGIN { f = (s > 0) ? 1.2 * c / s : 20; if (f > 20) f = 20; print f }')"
        total="$(awk -v t="$total" -v f="$factor" 'BEGIN { printf "%d", t * f + 1 }')"
    done
    total="$(awk -v t="$total" -v s="$seconds" -v d="$duration" -v c="$clients" \
        'BEGIN { n = int(t / s * d); if (n < c) n = c; print n }')"
}

main() {
    parse_args "$@"
    command -v python3 >/dev/null || cp_die "python3 is not on PATH; results.py needs it"
    bin="$("$BENCH_DIR/build-etcd-bench.sh" | tail -n 1)"

    pids=()
    bench_pid=""
    work="$(mktemp -d "${TMPDIR:-/tmp}/dolphin-etcd-bench.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    draw_ports
    start_members
    wait_healthy
    leader="$(leader_endpoint)"
    cp_log "etcd $("$bin/etcd" --version | awk 'NR == 1 { print $3 }'): $MEMBERS members" \
        "healthy in $work; leader at $leader"

    local level
    for level in ${concurrency//,/ }; do
        calibrate "$level"
        cp_log "concurrency $level: $total puts (about ${duration}s at the calibrated rate)"
        benchmark_put "$level" "$total" "$work/run.out"
        python3 "$BENCH_DIR/results.py" etcd-json --concurrency "$level" --total "$total" \
            <"$work/run.out"
    done
}

main "$@"
