# shellcheck shell=bash
# Shared helpers for the control-plane scripts; sourced, never run.
#
# Every wait here is bounded and names what probably hung, so a failed run says where to look
# instead of timing out somewhere in CI with no message.

CP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CP_TOOLS="$(cd "$CP_DIR/../tools" && pwd)"

# The one Kubernetes release pinned by e2e/tools/go.mod, e.g. v1.37.2.
cp_k8s_version() {
    awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$CP_TOOLS/go.mod"
}

# Where build.sh puts the binaries: outside the checkout, shared by every clone on the machine.
cp_bin_dir() {
    echo "${DOLPHIN_CACHE:-$HOME/.cache/dolphin}/controlplane/$(cp_k8s_version)/bin"
}

# True if PID names a live process (a zombie, exited but not yet reaped, is not alive).
cp_pid_alive() {
    [[ $1 =~ ^[0-9]+$ && -r /proc/$1/stat ]] || return 1
    [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

cp_log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

cp_die() {
    printf '[%s] error: %s\n' "$(date +%H:%M:%S)" "$*" >&2
    exit 1
}

# cp_wait SECONDS WHAT HINT COMMAND...: polls COMMAND every 0.2 s until it succeeds. After
# SECONDS it fails naming WHAT it waited for and HINT, the likely culprit.
cp_wait() {
    local timeout="$1" what="$2" hint="$3"
    shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            cp_die "timed out after ${timeout}s waiting for $what; $hint"
        fi
        sleep 0.2
    done
}

# Prints a TCP port on 127.0.0.1 that nothing listens on now. Ports are drawn at random from a
# range below Linux's ephemeral one (32768+), so an outgoing connection cannot take one between
# this check and the bind.
cp_free_port() {
    local port tries=0
    while ((tries < 200)); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
        tries=$((tries + 1))
    done
    cp_die "found no free port on 127.0.0.1 in 200 tries"
}

# cp_token_kubeconfig ACCOUNT NAMESPACE CA_FILE OUT: writes OUT, a kubeconfig that reaches
# the API server ($DOLPHIN_CP_API_SERVER, trusting CA_FILE) as ServiceAccount ACCOUNT of
# NAMESPACE with a token of 2 h, and fails unless the API server then knows it as that
# account. For running a program with exactly the rights its RBAC grants.
cp_token_kubeconfig() {
    local account="$1" ns="$2" ca="$3" out="$4" token user
    local kubectl=("$DOLPHIN_CP_BIN/kubectl" --request-timeout=10s)
    token="$("${kubectl[@]}" create token "$account" --namespace "$ns" --duration=2h)"
    KUBECONFIG="$out" "${kubectl[@]}" config set-cluster e2e --server "$DOLPHIN_CP_API_SERVER" \
        --certificate-authority "$ca" --embed-certs >/dev/null
    KUBECONFIG="$out" "${kubectl[@]}" config set-credentials "$account" --token "$token" \
        >/dev/null
    KUBECONFIG="$out" "${kubectl[@]}" config set-context e2e --cluster e2e --user "$account" \
        --namespace "$ns" >/dev/null
    KUBECONFIG="$out" "${kubectl[@]}" config use-context e2e >/dev/null
    user="$(KUBECONFIG="$out" "${kubectl[@]}" auth whoami \
        -o 'jsonpath={.status.userInfo.username}')"
    [[ $user == "system:serviceaccount:$ns:$account" ]] ||
        cp_die "the token of $ns/$account authenticates as '$user'"
}
