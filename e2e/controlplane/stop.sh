#!/usr/bin/env bash
# Stops the control plane that start.sh STATE_DIR started; the state and logs stay.
#
#   e2e/controlplane/stop.sh STATE_DIR           stop every recorded process
#   e2e/controlplane/stop.sh --check STATE_DIR   exit 0 if any of them still runs
#
# Only the PIDs recorded in STATE_DIR/pids are signalled, and only while their command line
# still names STATE_DIR, so a PID that the system has since reused is never touched.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# How long the components get to exit on SIGTERM before SIGKILL.
TERM_TIMEOUT=15
# A process in uninterruptible sleep may outlive SIGKILL for a moment.
KILL_TIMEOUT=5

# Stopped in reverse order of start: clients before the API server, etcd last.
ORDER=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

# True if PID runs and is still the process start.sh recorded for this state folder.
ours() {
    local pid="$1" cmdline
    cp_pid_alive "$pid" || return 1
    cmdline="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
    [[ $cmdline == *"$STATE/"* ]]
}

recorded_pid() {
    local file="$STATE/pids/$1"
    [[ -f $file ]] && cat "$file"
}

check() {
    local name pid
    for name in "${ORDER[@]}"; do
        pid="$(recorded_pid "$name" || true)"
        if [[ -n $pid ]] && ours "$pid"; then
            return 0
        fi
    done
    return 1
}

# The controller manager's host-path provisioner makes a folder under /tmp/hostpath_pv for
# each volume and removes it only when the volume is deleted; a cluster stopped with volumes
# left would leave them on the machine. Best effort: skipped when the API server is down.
remove_volume_folders() {
    local kubectl path
    [[ -f $STATE/env && -f $STATE/kubeconfig ]] || return 0
    kubectl="$(sed -n 's/^DOLPHIN_CP_BIN=//p' "$STATE/env")/kubectl"
    [[ -x $kubectl ]] || return 0
    "$kubectl" --kubeconfig "$STATE/kubeconfig" --request-timeout=5s get pv \
        -o jsonpath='{range .items[*]}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null |
        while read -r path; do
            if [[ $path =~ ^/tmp/hostpath_pv/[0-9a-f-]+$ ]]; then
                rm -rf "$path"
            fi
        done || true
}

stop_one() {
    local name="$1" pid deadline
    pid="$(recorded_pid "$name" || true)"
    [[ -n $pid ]] && ours "$pid" || return 0

    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TERM_TIMEOUT))
    while ours "$pid"; do
        if ((SECONDS >= deadline)); then
            cp_log "$name (pid $pid) ignored SIGTERM for ${TERM_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + KILL_TIMEOUT))
            while ours "$pid"; do
                ((SECONDS < deadline)) || cp_die "$name (pid $pid) survived SIGKILL"
                sleep 0.1
            done
            break
        fi
        sleep 0.1
    done
    cp_log "stopped $name (pid $pid)"
}

main() {
    local mode=stop
    if [[ ${1:-} == --check ]]; then
        mode=check
        shift
    fi
    (($# == 1)) || cp_die "usage: stop.sh [--check] STATE_DIR"
    [[ -d $1 ]] || cp_die "no such state folder: $1"
    STATE="$(cd "$1" && pwd)"

    if [[ $mode == check ]]; then
        check
        return
    fi
    remove_volume_folders
    local name
    for name in "${ORDER[@]}"; do
        stop_one "$name"
    done
}

main "$@"
