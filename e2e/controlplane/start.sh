#!/usr/bin/env bash
# Starts a Kubernetes control plane on loopback, with fake nodes and no containers.
#
#   e2e/controlplane/start.sh STATE_DIR [NODES]
#
# Runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (1 to 3 fake
# nodes, default 3) from the binaries of build.sh, which it runs first (a no-op when the cache
# is current). Writes STATE_DIR/kubeconfig (cluster admin), STATE_DIR/env (KEY=value lines:
# KUBECONFIG, the API server address, the binaries folder, every PID) and STATE_DIR/logs/.
# Returns once /readyz is ok, every node is Ready and the default ServiceAccount exists.
# stop.sh STATE_DIR stops it all. STATE_DIR must be new, empty, or used by start.sh before.
#
# DOLPHIN_CP_CRDS=PATH (a file or a folder of YAML) installs those CustomResourceDefinitions
# before the controller manager starts, so its garbage collector watches their kinds from the
# beginning; a CRD installed later is picked up by the collector's 30 s rediscovery, and a
# cascade from one of its objects can wait that long.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bounds of each wait, in seconds. Generous for 2 busy cores; a healthy start takes ~10 s.
ETCD_TIMEOUT=30
APISERVER_TIMEOUT=90
COMPONENT_TIMEOUT=60
NODES_TIMEOUT=60
SERVICE_ACCOUNT_TIMEOUT=60

SERVICE_CIDR=10.96.0.0/16
# The first address of SERVICE_CIDR, which the "kubernetes" Service takes.
API_SERVICE_IP=10.96.0.1
POD_CIDR=10.244.0.0/16
# The annotation that tells kwok which nodes to act for.
KWOK_NODE_ANNOTATION=kwok.x-k8s.io/node=fake
MARKER=.dolphin-controlplane

usage() {
    cp_die "usage: start.sh STATE_DIR [NODES (1-3, default 3)]"
}

# Ports handed out in this run, so two components never draw the same one.
TAKEN_PORTS=" "
new_port() {
    local port
    while :; do
        port="$(cp_free_port)"
        if [[ $TAKEN_PORTS != *" $port "* ]]; then
            TAKEN_PORTS+="$port "
            echo "$port"
            return 0
        fi
    done
}

prepare_state_dir() {
    if [[ -e $STATE && ! -f $STATE/$MARKER && -n "$(ls -A "$STATE")" ]]; then
        cp_die "$STATE is not empty and was not made by start.sh; give a new or empty folder"
    fi
    if [[ -f $STATE/env ]] && "$CP_DIR/stop.sh" --check "$STATE"; then
        cp_die "a control plane recorded in $STATE/env is still running; run stop.sh first"
    fi

    # A previous run's data is ours to remove (the marker says so): each start is a new cluster.
    rm -rf "$STATE/etcd" "$STATE/pki" "$STATE/logs" "$STATE/pids" "$STATE/env" "$STATE/helm"
    mkdir -p "$STATE/pki" "$STATE/logs" "$STATE/pids"
    touch "$STATE/$MARKER"
}

# Makes a key and a certificate signed by the cluster CA. EC P-256 keys: fast to make and
# accepted by every client the tests use.
make_cert() {
    local name="$1" subject="$2" extensions="$3"
    local pki="$STATE/pki"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" \
        2>/dev/null
    openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
    printf '%s\n' "$extensions" >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 365 -sha256 -extfile "$pki/$name.ext" \
        -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
    local pki="$STATE/pki"
    local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    local tool
    for tool in openssl curl; do
        command -v "$tool" >/dev/null || cp_die "$tool is missing; build.sh installs it as root"
    done

    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/ca.key" \
        2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=dolphin-e2e-ca" -days 365 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$pki/ca.crt" 2>/dev/null

    make_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$API_SERVICE_IP,DNS:localhost,DNS:kubernetes,\
DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    # system:masters is the group that RBAC always allows: the tests' cluster-admin.
    make_cert admin "/O=system:masters/CN=dolphin-e2e-admin" "$client"
    # The names that the bootstrap RBAC roles are bound to.
    make_cert controller-manager "/CN=system:kube-controller-manager" "$client"
    make_cert scheduler "/CN=system:kube-scheduler" "$client"
    # The API server's identity towards aggregated API servers (front proxy); published in
    # kube-system/extension-apiserver-authentication, which the other components read.
    make_cert front-proxy-client "/CN=front-proxy-client" "$client"

    # Signs ServiceAccount tokens (API server) and verifies them; the controller manager signs
    # the legacy token Secrets with it too.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key" \
        2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    chmod 600 "$pki"/*.key
}

write_kubeconfig() {
    local file="$1" user="$2"
    local pki="$STATE/pki"
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: dolphin-e2e
    cluster:
      server: $API_URL
      certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
  - name: $user
    user:
      client-certificate-data: $(base64 -w0 "$pki/$user.crt")
      client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
  - name: dolphin-e2e
    context:
      cluster: dolphin-e2e
      user: $user
current-context: dolphin-e2e
EOF
    chmod 600 "$file"
}

# Starts a program detached from this shell (setsid: a signal to the caller's process group
# does not reach it) with its output in logs/NAME.log, and records its PID.
launch() {
    local name="$1"
    shift
    setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$STATE/pids/$name"
    cp_log "started $name (pid $pid)"
}

# Fails fast with the log's tail when the component has exited, instead of waiting out the
# timeout for something that can no longer happen.
alive_and() {
    local name="$1"
    shift
    if ! cp_pid_alive "$(cat "$STATE/pids/$name")"; then
        echo "$name exited; last lines of $STATE/logs/$name.log:" >&2
        tail -n 25 "$STATE/logs/$name.log" >&2
        return 2
    fi
    "$@"
}

# cp_wait with a liveness check of NAME on each poll.
wait_for() {
    local name="$1" timeout="$2" what="$3" hint="$4"
    shift 4
    local deadline=$((SECONDS + timeout)) rc
    while :; do
        rc=0
        alive_and "$name" "$@" >/dev/null 2>"$STATE/logs/.probe" || rc=$?
        ((rc == 0)) && return 0
        if ((rc == 2)); then
            cat "$STATE/logs/.probe" >&2
            cp_die "$name exited while waiting for $what"
        fi
        if ((SECONDS >= deadline)); then
            echo "last lines of $STATE/logs/$name.log:" >&2
            tail -n 15 "$STATE/logs/$name.log" >&2
            cp_die "timed out after ${timeout}s waiting for $what; $hint"
        fi
        sleep 0.2
    done
}

kube() {
    "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" --request-timeout=5s "$@"
}

# Anonymous GET of /healthz on a component's own HTTPS port: allowed without credentials.
# curl, not kubectl, which asks for a user name on stdin when it has no credentials.
healthz() {
    curl --fail --silent --insecure --max-time 2 "https://127.0.0.1:$1/healthz"
}

start_etcd() {
    ETCD_PORT="$(new_port)"
    local peer_port
    peer_port="$(new_port)"
    # --unsafe-no-fsync: a test cluster lives for minutes and is thrown away; fsync on every
    # write is most of etcd's latency on a shared disk.
    launch etcd "$BIN/etcd" \
        --name=dolphin-e2e \
        --data-dir="$STATE/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
        --initial-cluster="dolphin-e2e=http://127.0.0.1:$peer_port" \
        --unsafe-no-fsync \
        --log-level=warn
    wait_for etcd "$ETCD_TIMEOUT" "etcd to be healthy on 127.0.0.1:$ETCD_PORT" \
        "etcd probably failed to bind its port or open $STATE/etcd" \
        "$BIN/etcdctl" --endpoints="http://127.0.0.1:$ETCD_PORT" --command-timeout=2s \
        endpoint health
}

start_apiserver() {
    local pki="$STATE/pki"
    # --endpoint-reconciler-type=none: the reconciler refuses a loopback address for the
    # "kubernetes" Service's endpoints. Nothing here runs in a pod to need them.
    launch kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --endpoint-reconciler-type=none \
        --secure-port="$API_PORT" \
        --tls-cert-file="$pki/apiserver.crt" \
        --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --requestheader-client-ca-file="$pki/ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User \
        --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$pki/front-proxy-client.crt" \
        --proxy-client-key-file="$pki/front-proxy-client.key" \
        --authorization-mode=Node,RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" \
        --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --allow-privileged=true \
        --profiling=false \
        --v=1
    wait_for kube-apiserver "$APISERVER_TIMEOUT" "kube-apiserver /readyz on $API_URL" \
        "see which check /readyz?verbose lists as failed (etcd reachable? post-start hooks?)" \
        kube get --raw /readyz
}

install_crds() {
    [[ -n ${DOLPHIN_CP_CRDS:-} ]] || return 0
    [[ -e $DOLPHIN_CP_CRDS ]] || cp_die "DOLPHIN_CP_CRDS names nothing: $DOLPHIN_CP_CRDS"
    kube apply --recursive -f "$DOLPHIN_CP_CRDS" >/dev/null
    wait_for kube-apiserver "$COMPONENT_TIMEOUT" "the CRDs of $DOLPHIN_CP_CRDS to be Established" \
        "one of them is probably invalid or names a taken group (kubectl get crd -o yaml)" \
        kube wait --for=condition=Established crd --all --timeout=1s
    cp_log "installed the CRDs of $DOLPHIN_CP_CRDS"
}

start_controller_manager() {
    local pki="$STATE/pki" kubeconfig="$STATE/controller-manager.kubeconfig"
    KCM_PORT="$(new_port)"
    write_kubeconfig "$kubeconfig" controller-manager
    # The garbage collector (ownerReference cascades) and the ServiceAccount controllers are
    # among the default controllers. The host-path provisioner serves the "standard"
    # StorageClass, so a PVC gets a PV without any storage driver.
    launch kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$kubeconfig" \
        --authentication-kubeconfig="$kubeconfig" \
        --authorization-kubeconfig="$kubeconfig" \
        --bind-address=127.0.0.1 \
        --secure-port="$KCM_PORT" \
        --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file="$pki/sa.key" \
        --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" \
        --cluster-signing-key-file="$pki/ca.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --enable-hostpath-provisioner=true \
        --profiling=false \
        --v=1
}

start_scheduler() {
    local kubeconfig="$STATE/scheduler.kubeconfig"
    SCHEDULER_PORT="$(new_port)"
    write_kubeconfig "$kubeconfig" scheduler
    launch kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig="$kubeconfig" \
        --authentication-kubeconfig="$kubeconfig" \
        --authorization-kubeconfig="$kubeconfig" \
        --bind-address=127.0.0.1 \
        --secure-port="$SCHEDULER_PORT" \
        --leader-elect=false \
        --profiling=false \
        --v=1
}

# Nodes are plain API objects; kwok acts for those with its annotation. Each gets a zone of
# its own, so topology spread and anti-affinity rules have something to spread over.
create_nodes() {
    local i manifest=""
    for ((i = 1; i <= NODES; i++)); do
        manifest+="---
apiVersion: v1
kind: Node
metadata:
  name: fake-node-$i
  annotations:
    ${KWOK_NODE_ANNOTATION%%=*}: ${KWOK_NODE_ANNOTATION#*=}
  labels:
    kubernetes.io/hostname: fake-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: fake-zone-$i
    dolphin.e2e/fake-node: \"true\"
"
    done
    printf '%s' "$manifest" | kube apply -f - >/dev/null
}

# The default StorageClass: provisioned by the controller manager's host-path provisioner,
# which makes a folder /tmp/hostpath_pv/<uid> per volume (stop.sh removes those left over).
# WaitForFirstConsumer: the scheduler picks the node first and waits in PreBind for the
# volume, where Immediate binding fails the pod's first scheduling attempt and leaves it in
# back-off for up to ~15 s after the claim is bound.
create_storage_class() {
    kube apply -f - >/dev/null <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
EOF
}

start_kwok() {
    local kubeconfig="$STATE/kwok.kubeconfig"
    sed "s/@K8S_VERSION@/$VERSION/g" "$CP_DIR/kwok-stages.yaml" >"$STATE/kwok-stages.yaml"
    cp "$STATE/kubeconfig" "$kubeconfig"
    # Leases keep the fake nodes alive for the node lifecycle controller; the node address is
    # loopback so that an API server call to a "kubelet" stays on this machine.
    launch kwok "$BIN/kwok" \
        --kubeconfig="$kubeconfig" \
        --config="$STATE/kwok-stages.yaml" \
        --manage-all-nodes=false \
        --manage-nodes-with-annotation-selector="$KWOK_NODE_ANNOTATION" \
        --node-ip=127.0.0.1 \
        --cidr="$POD_CIDR" \
        --node-lease-duration-seconds=40
}

ready_nodes() {
    local ready
    ready="$(kube get nodes -l dolphin.e2e/fake-node=true -o \
        jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$' || true)"
    ((ready == NODES))
}

write_env() {
    local name env="$STATE/env"
    {
        echo "KUBECONFIG=$STATE/kubeconfig"
        echo "DOLPHIN_CP_STATE=$STATE"
        echo "DOLPHIN_CP_BIN=$BIN"
        echo "DOLPHIN_CP_K8S_VERSION=$VERSION"
        echo "DOLPHIN_CP_API_SERVER=$API_URL"
        echo "DOLPHIN_CP_ETCD=http://127.0.0.1:$ETCD_PORT"
        echo "DOLPHIN_CP_NODES=$NODES"
        for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
            echo "$(echo "${name^^}" | tr - _)_PID=$(cat "$STATE/pids/$name")"
        done
    } >"$env.tmp"
    mv "$env.tmp" "$env"
}

# On any failure, stop what this run started: no stray etcd keeps a port or eats a core.
on_exit() {
    local rc=$?
    if ((rc != 0)) && [[ -d ${STATE:-}/pids ]]; then
        cp_log "start failed; stopping what was started (logs stay in $STATE/logs)"
        "$CP_DIR/stop.sh" "$STATE" >/dev/null 2>&1 || true
    fi
    exit "$rc"
}

main() {
    (($# >= 1 && $# <= 2)) || usage
    NODES="${2:-3}"
    [[ $NODES =~ ^[1-3]$ ]] || usage
    [[ $1 != *[[:space:]]* ]] || cp_die "STATE_DIR may not contain white space: $1"
    mkdir -p "$1"
    STATE="$(cd "$1" && pwd)"
    VERSION="$(cp_k8s_version)"
    local started=$SECONDS

    BIN="$("$CP_DIR/build.sh" | tail -n 1)"
    [[ -x $BIN/kube-apiserver ]] || cp_die "build.sh gave no binaries in '$BIN'"

    prepare_state_dir
    trap on_exit EXIT
    make_pki
    API_PORT="$(new_port)"
    API_URL="https://127.0.0.1:$API_PORT"
    write_kubeconfig "$STATE/kubeconfig" admin

    start_etcd
    start_apiserver
    install_crds
    start_controller_manager
    start_scheduler
    create_storage_class
    create_nodes
    start_kwok
    write_env

    wait_for kube-controller-manager "$COMPONENT_TIMEOUT" \
        "kube-controller-manager /healthz on 127.0.0.1:$KCM_PORT" \
        "see its log for a controller that failed to start" healthz "$KCM_PORT"
    wait_for kube-scheduler "$COMPONENT_TIMEOUT" \
        "kube-scheduler /healthz on 127.0.0.1:$SCHEDULER_PORT" \
        "see its log for a failed informer sync or an RBAC denial" healthz "$SCHEDULER_PORT"
    wait_for kwok "$NODES_TIMEOUT" "$NODES fake node(s) to be Ready" \
        "kwok probably rejected its Stages or cannot reach the API server" ready_nodes
    wait_for kube-controller-manager "$SERVICE_ACCOUNT_TIMEOUT" \
        "the ServiceAccount default/default" \
        "the controller manager's serviceaccount controller probably did not start" \
        kube get serviceaccount default --namespace default

    cp_log "control plane $VERSION ready at $API_URL with $NODES fake node(s)" \
        "in $((SECONDS - started))s; KUBECONFIG=$STATE/kubeconfig"
}

main "$@"
