#!/usr/bin/env bash
# Builds the control-plane programs pinned by e2e/tools into a cache outside the checkout.
#
#   e2e/controlplane/build.sh          build unless the cache already matches the pins
#   DOLPHIN_CACHE=/some/dir build.sh   cache under /some/dir instead of ~/.cache/dolphin
#
# The cache key is a hash of the go.mod and go.sum files and of the build recipe below, so
# the binaries are rebuilt when, and only when, a pin or a flag changes. Prints the folder of
# the binaries on its last line.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# How long a build may take before the lock waiter gives up: a cold build on 2 cores takes
# about a quarter of an hour, so a second build that waits longer is stuck behind a dead one.
LOCK_TIMEOUT_SECONDS=3600

# The programs and the module folder each comes from.
MAIN_PACKAGES=(
    go.etcd.io/etcd/server/v3
    go.etcd.io/etcd/etcdctl/v3
    k8s.io/kubernetes/cmd/kube-apiserver
    k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler
    k8s.io/kubernetes/cmd/kubectl
    sigs.k8s.io/kwok/cmd/kwok
)
HELM_PACKAGES=(helm.sh/helm/v4/cmd/helm)
BINARIES=(
    etcd etcdctl kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm
)

need_go() {
    command -v go >/dev/null || cp_die "go is not on PATH; install Go 1.26 or newer"
    local minor
    minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
    ((minor >= 26)) || cp_die "Go $(go env GOVERSION) is too old: k8s.io/kubernetes needs 1.26"
}

# start.sh needs openssl for the certificates and curl for health checks; they are installed
# here, where root is expected.
need_system_tools() {
    local tool missing=()
    for tool in openssl curl; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        cp_die "missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})"
    fi
    cp_log "installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Stamps the version the binaries report (kubectl version, /version, Helm's capabilities)
# the way the Kubernetes release build does; a plain go build reports v0.0.0-master.
ldflags() {
    local v="$1" major minor flags="-s -w" pkg
    major="$(echo "${v#v}" | cut -d. -f1)"
    minor="$(echo "${v#v}" | cut -d. -f2)"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

cache_key() {
    {
        cat "$CP_TOOLS/go.mod" "$CP_TOOLS/go.sum" "$CP_TOOLS/helm/go.mod" "$CP_TOOLS/helm/go.sum"
        echo "${MAIN_PACKAGES[*]} ${HELM_PACKAGES[*]} ${BINARIES[*]}"
        ldflags "$(cp_k8s_version)"
    } | sha256sum | cut -d' ' -f1
}

cache_is_current() {
    local bin="$1" key="$2" name
    [[ -f "$bin/.key" && "$(cat "$bin/.key")" == "$key" ]] || return 1
    for name in "${BINARIES[@]}"; do
        [[ -x "$bin/$name" ]] || return 1
    done
}

# go build of several main packages with -o DIR/ writes one binary per package, named after
# the last path element before any /vN suffix; etcd's server comes out as "server".
build_module() {
    local module_dir="$1" out="$2" flags="$3"
    shift 3
    (
        cd "$module_dir"
        go build -p 2 -trimpath -ldflags="$flags" -o "$out/" "$@"
    )
}

main() {
    local version bin key started t0
    version="$(cp_k8s_version)"
    [[ -n $version ]] || cp_die "found no k8s.io/kubernetes version in $CP_TOOLS/go.mod"
    bin="$(cp_bin_dir)"
    started=$SECONDS

    need_system_tools
    key="$(cache_key)"
    mkdir -p "$(dirname "$bin")"

    # One build at a time per cache: a second caller waits, then finds the cache current.
    exec 9>"$(dirname "$bin")/build.lock"
    if ! flock -w "$LOCK_TIMEOUT_SECONDS" 9; then
        cp_die "waited ${LOCK_TIMEOUT_SECONDS}s for $(dirname "$bin")/build.lock;" \
            "another build.sh probably hung (see ps for go build)"
    fi

    if cache_is_current "$bin" "$key"; then
        cp_log "control plane $version is already built in $bin ($((SECONDS - started))s)"
        echo "$bin"
        return 0
    fi

    need_go
    export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"
    # Global, not local: the EXIT trap may run after main has returned.
    tmp="$bin.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    cp_log "building control plane $version into $bin (go $(go env GOVERSION))"

    t0=$SECONDS
    (cd "$CP_TOOLS" && go mod download)
    (cd "$CP_TOOLS/helm" && go mod download)
    cp_log "downloaded modules in $((SECONDS - t0))s"

    t0=$SECONDS
    build_module "$CP_TOOLS" "$tmp" "$(ldflags "$version")" "${MAIN_PACKAGES[@]}"
    mv "$tmp/server" "$tmp/etcd"
    cp_log "built etcd, etcdctl, kube-*, kubectl, kwok in $((SECONDS - t0))s"

    t0=$SECONDS
    build_module "$CP_TOOLS/helm" "$tmp" "-s -w" "${HELM_PACKAGES[@]}"
    cp_log "built helm in $((SECONDS - t0))s"

    echo "$key" >"$tmp/.key"
    rm -rf "$bin"
    mv "$tmp" "$bin"
    trap - EXIT
    cp_log "control plane $version built in $((SECONDS - started))s"
    echo "$bin"
}

main "$@"
