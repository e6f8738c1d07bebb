# shellcheck shell=bash
# Shared helpers for the benchmark scripts; sourced, never run.
#
# It reuses the control plane's helpers (logging, bounded waits, free ports, live pids) so that
# both folders fail the same way.

# The folders the scripts that source this file use.
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034
BENCH_TOOLS="$BENCH_DIR/etcd-tools"
# shellcheck disable=SC2034
BENCH_REPO="$(cd "$BENCH_DIR/../.." && pwd)"

# shellcheck source=../controlplane/lib.sh
source "$BENCH_DIR/../controlplane/lib.sh"

# Where build-etcd-bench.sh puts etcd, etcdctl and `benchmark`: outside the checkout.
bench_bin_dir() {
    echo "${DOLPHIN_CACHE:-$HOME/.cache/dolphin}/bench/bin"
}

# The etcd release a go.mod pins through MODULE, e.g. v3.7.0.
bench_pinned_version() {
    local go_mod="$1" module="$2"
    awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit }
        $1 == "require" && $2 == m && $3 ~ /^v/ { print $3; exit }' "$go_mod"
}

# bench_usage SCRIPT [STATUS]: prints the comment block at the top of SCRIPT, its usage, on
# stderr and exits with STATUS (2, for a bad argument, unless given).
bench_usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1" >&2
    exit "${2:-2}"
}

# True while any process of process group $1 runs (zombies, already dead, do not count).
bench_group_alive() {
    ps -e -o pgid=,stat= |
        awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}
