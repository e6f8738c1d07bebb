#!/usr/bin/env bash
# Proves the control plane does what the operator's end-to-end tests rely on.
#
#   e2e/controlplane/smoke.sh [STATE_DIR]    (default: a new temporary folder, removed after)
#
# Builds (or reuses the cache), starts a cluster with 3 fake nodes, then checks that a
# Deployment and a StatefulSet with a volumeClaimTemplate get Running, Ready pods with IPs on
# the fake nodes, that claims are bound, that ServiceAccount tokens are issued, that a CRD's
# objects own others, that Helm installs a chart, and that deleting owners removes their
# children (the garbage collector), and stops the cluster.
# Exits non-zero at the first failed check, saying what probably hung.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bounds of each wait, in seconds.
ROLLOUT_TIMEOUT=90
DELETE_TIMEOUT=90
NS=dolphin-smoke
PASSED=0

pass() {
    PASSED=$((PASSED + 1))
    cp_log "ok: $*"
}

kube() {
    "$DOLPHIN_CP_BIN/kubectl" --request-timeout=10s "$@"
}

jsonpath() {
    kube get --namespace "$NS" "$1" -o "jsonpath=$2" 2>/dev/null
}

equals() {
    [[ "$(jsonpath "$1" "$2")" == "$3" ]]
}

# True if `kubectl get ARGS` in the test namespace lists nothing. A failing kubectl is not
# "nothing": it makes the wait go on, and time out with its message.
none_left() {
    local out
    out="$(kube get --namespace "$NS" "$@" -o name 2>/dev/null)" || return 1
    [[ -z $out ]]
}

# Each pod with LABEL is Running, Ready, on a fake node and has a pod IP.
pods_running_on_fake_nodes() {
    local label="$1" want="$2" lines line
    local template='{range .items[*]}{.status.phase} {.spec.nodeName} {.status.podIP} '
    template+='{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}'
    lines="$(kube get pods --namespace "$NS" -l "$label" -o "jsonpath=$template" 2>/dev/null)"
    [[ "$(grep -c . <<<"$lines")" == "$want" ]] || return 1
    while read -r line; do
        [[ $line =~ ^Running\ fake-node-[1-3]\ [0-9.]+\ True$ ]] || return 1
    done <<<"$lines"
}

apply_workloads() {
    kube apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: $NS
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          # Never pulled: the fake nodes run no containers.
          image: example.invalid/dolphin/web:smoke
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: $NS
spec:
  clusterIP: None
  selector: {app: db}
  ports:
    - port: 5000
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: $NS
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  # Claims are owned by the StatefulSet, so deleting it must remove them too.
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Delete
    whenScaled: Delete
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
        - name: db
          image: example.invalid/dolphin/db:smoke
          volumeMounts:
            - name: data
              mountPath: /data
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
EOF
}

check_workloads() {
    cp_wait "$ROLLOUT_TIMEOUT" "Deployment web to report readyReplicas=2" \
        "the scheduler or kwok's pod Stage (logs/kube-scheduler.log, logs/kwok.log)" \
        equals deployment/web '{.status.readyReplicas}' 2
    cp_wait 10 "2 pods of web Running and Ready on fake nodes" \
        "kwok's pod Stage (logs/kwok.log)" pods_running_on_fake_nodes app=web 2
    pass "Deployment web has 2 ready replicas, Running on fake nodes with pod IPs"

    cp_wait "$ROLLOUT_TIMEOUT" "claims data-db-0 and data-db-1 to be Bound" \
        "the host-path provisioner (logs/kube-controller-manager.log)" \
        equals pvc '{.items[*].status.phase}' 'Bound Bound'
    pass "StatefulSet claims are Bound to provisioned volumes"

    cp_wait "$ROLLOUT_TIMEOUT" "StatefulSet db to report readyReplicas=2" \
        "the scheduler's volume binding or kwok (logs/kube-scheduler.log, logs/kwok.log)" \
        equals statefulset/db '{.status.readyReplicas}' 2
    cp_wait 10 "2 pods of db Running and Ready on fake nodes" \
        "kwok's pod Stage (logs/kwok.log)" pods_running_on_fake_nodes app=db 2
    pass "StatefulSet db has 2 ready replicas, Running on fake nodes with pod IPs"
}

check_service_account_tokens() {
    local token user
    token="$(kube create token default --namespace "$NS" --duration=10m)"
    [[ $token == *.*.* ]] || cp_die "kubectl create token printed no JWT: $token"

    # The token alone authenticates as the ServiceAccount: the signing and verifying keys
    # match. SelfSubjectReview is what `kubectl auth whoami` asks for.
    user="$(curl --fail --silent --max-time 10 --cacert "$DOLPHIN_CP_STATE/pki/ca.crt" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
        "$DOLPHIN_CP_API_SERVER/apis/authentication.k8s.io/v1/selfsubjectreviews" |
        sed -n 's/.*"username": *"\([^"]*\)".*/\1/p')"
    [[ $user == "system:serviceaccount:$NS:default" ]] ||
        cp_die "the token of ServiceAccount $NS/default authenticated as '$user'"
    pass "ServiceAccount tokens are issued and accepted"
}

# A CRD in the operator's shape, installed by start.sh through DOLPHIN_CP_CRDS.
write_crd() {
    cat >"$1" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.dolphin.e2e
spec:
  group: smoke.dolphin.e2e
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
EOF
}

# The operator's own shape: a custom resource that owns a plain object. Deleting the custom
# resource must delete what it owns, which needs the garbage collector to watch the CRD's kind.
check_custom_resource_ownership() {
    cp_wait 30 "CRD widgets.smoke.dolphin.e2e to be Established" \
        "the API server's CRD controllers (logs/kube-apiserver.log)" \
        equals_cluster crd/widgets.smoke.dolphin.e2e \
        '{.status.conditions[?(@.type=="Established")].status}' True
    kube apply --namespace "$NS" -f - >/dev/null <<EOF
apiVersion: smoke.dolphin.e2e/v1
kind: Widget
metadata:
  name: owner
spec: {size: 1}
EOF
    local uid
    uid="$(jsonpath widget/owner '{.metadata.uid}')"
    [[ -n $uid ]] || cp_die "the Widget owner was not created"
    kube apply --namespace "$NS" -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned-by-widget
  ownerReferences:
    - apiVersion: smoke.dolphin.e2e/v1
      kind: Widget
      name: owner
      uid: $uid
      controller: true
      blockOwnerDeletion: true
data: {}
EOF
    kube patch widget owner --namespace "$NS" --subresource=status --type=merge \
        -p '{"status":{"phase":"Ready"}}' >/dev/null
    equals widget/owner '{.status.phase}' Ready ||
        cp_die "the status subresource of Widget owner did not take the patch"

    kube delete widget owner --namespace "$NS" --wait=false >/dev/null
    cp_wait "$DELETE_TIMEOUT" "ConfigMap owned-by-widget to be deleted with its Widget" \
        "the garbage collector's discovery of the CRD (logs/kube-controller-manager.log)" \
        none_left configmap/owned-by-widget --ignore-not-found
    pass "a custom resource with a status subresource cascades deletion to what it owns"
}

# Helm from the same cache: a scaffolded chart installs and waits for its Deployment.
check_helm() {
    local chart="$DOLPHIN_CP_STATE/helm/smoke"
    export HELM_CACHE_HOME="$DOLPHIN_CP_STATE/helm/cache"
    export HELM_CONFIG_HOME="$DOLPHIN_CP_STATE/helm/config"
    export HELM_DATA_HOME="$DOLPHIN_CP_STATE/helm/data"
    rm -rf "$chart"
    mkdir -p "$(dirname "$chart")"
    "$DOLPHIN_CP_BIN/helm" create "$chart" >/dev/null
    "$DOLPHIN_CP_BIN/helm" install smoke "$chart" --namespace "$NS" --wait \
        --timeout 90s >/dev/null ||
        cp_die "helm install --wait of a scaffolded chart failed (see the lines above)"
    equals deployment/smoke '{.status.readyReplicas}' 1 ||
        cp_die "helm reported success but Deployment smoke is not ready"
    "$DOLPHIN_CP_BIN/helm" uninstall smoke --namespace "$NS" --wait --timeout 60s >/dev/null
    pass "helm installs a chart and waits for it, and uninstalls it"
}

equals_cluster() {
    [[ "$(kube get "$1" -o "jsonpath=$2" 2>/dev/null)" == "$3" ]]
}

check_cascading_delete() {
    kube delete deployment web --namespace "$NS" --cascade=foreground --wait=false >/dev/null
    cp_wait "$DELETE_TIMEOUT" "Deployment web's ReplicaSet and pods to be deleted" \
        "the garbage collector (logs/kube-controller-manager.log) or kwok's delete Stage" \
        none_left replicasets,pods -l app=web
    cp_wait 10 "Deployment web itself to be deleted" \
        "the garbage collector, which removes the foregroundDeletion finalizer" \
        none_left deployment/web --ignore-not-found
    pass "foreground delete of the Deployment removed its ReplicaSet and pods"

    kube delete statefulset db --namespace "$NS" --wait=false >/dev/null
    cp_wait "$DELETE_TIMEOUT" "StatefulSet db's pods and claims to be deleted" \
        "the garbage collector (logs/kube-controller-manager.log) or kwok's delete Stage" \
        none_left pods,pvc -l app=db
    pass "background delete of the StatefulSet removed its pods and claims"

    kube delete namespace "$NS" --wait=false >/dev/null
    cp_wait "$DELETE_TIMEOUT" "namespace $NS to be deleted" \
        "the namespace controller (logs/kube-controller-manager.log)" \
        none_left_cluster namespace "$NS"
    cp_wait "$DELETE_TIMEOUT" "the released volumes to be deleted" \
        "the host-path deleter (logs/kube-controller-manager.log)" none_left_cluster pv
    pass "namespace deletion finished and the volumes were reclaimed"
}

none_left_cluster() {
    local out
    out="$(kube get "$@" -o name --ignore-not-found 2>/dev/null)" || return 1
    [[ -z $out ]]
}

main() {
    local started=$SECONDS
    # Globals: the EXIT trap runs after main has returned.
    state="${1:-}"
    own_state=false
    if [[ -z $state ]]; then
        state="$(mktemp -d /tmp/dolphin-smoke.XXXXXX)"
        own_state=true
    fi
    # Stop the cluster however this script ends; keep the state and logs of a failed run.
    crd_file=""
    trap 'rc=$?
          "$CP_DIR/stop.sh" "$state" >/dev/null 2>&1 || true
          rm -f "$crd_file"
          if ((rc == 0)) && [[ $own_state == true ]]; then rm -rf "$state"; fi
          if ((rc != 0)); then cp_log "smoke failed; logs are in $state/logs"; fi' EXIT

    local t0=$SECONDS
    "$CP_DIR/build.sh" >/dev/null
    cp_log "build: $((SECONDS - t0))s"
    t0=$SECONDS
    crd_file="$(mktemp /tmp/dolphin-smoke-crd.XXXXXX)"
    write_crd "$crd_file"
    DOLPHIN_CP_CRDS="$crd_file" "$CP_DIR/start.sh" "$state" 3
    rm -f "$crd_file"
    cp_log "start: $((SECONDS - t0))s"

    set -a
    # shellcheck source=/dev/null
    source "$state/env"
    set +a
    t0=$SECONDS
    apply_workloads
    check_workloads
    check_service_account_tokens
    check_custom_resource_ownership
    check_helm
    check_cascading_delete
    cp_log "checks: $((SECONDS - t0))s"

    t0=$SECONDS
    "$CP_DIR/stop.sh" "$state"
    if "$CP_DIR/stop.sh" --check "$state"; then
        cp_die "a component still runs after stop.sh $state"
    fi
    pass "stop.sh stopped every component"
    cp_log "stop: $((SECONDS - t0))s; total: $((SECONDS - started))s"
    echo "smoke: $PASSED passed, 0 failed"
}

main "$@"
