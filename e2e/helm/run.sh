#!/usr/bin/env bash
# The Helm chart's end-to-end test against a real Kubernetes control plane on loopback.
#
#   e2e/helm/run.sh [STATE_DIR]    (default: a new temporary folder, removed after success)
#
# Checks that charts/dolphin carries current copies of the CRD, dashboards and alerts; that
# `helm lint --strict` and `helm template` pass with the default values and with everything
# enabled, and refuse values that break values.schema.json; then, in the control plane of
# e2e/controlplane (fake nodes, so no container runs), that the API server accepts what the
# chart renders (server-side dry run), that `helm install` creates what docs/helm.md says, and
# that the chart's operator works: the operator binary runs on this machine with the command
# line of the chart's Deployment and the token of the chart's ServiceAccount, and turns the
# example ImCluster Ready. Ends with `helm uninstall`. docs/helm.md lists every check.
# Exits non-zero at the first failed check, saying what probably hung; the control plane and
# the operator are stopped however it ends, and the logs of a failed run are kept.
#
# DOLPHIN_OPERATOR_BIN=PATH uses that binary instead of building one with cargo.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../controlplane/lib.sh"

ROOT="$(cd "$CP_DIR/../.." && pwd)"
CHART="$ROOT/charts/dolphin"
RELEASE=dolphin
NS=dolphin-system
# The names the chart gives a release called dolphin.
OPERATOR=dolphin-operator
OPERATOR_USER=system:serviceaccount:$NS:$OPERATOR
# Where the example values put the ImCluster: the release's namespace.
CLUSTER=chat
# Everything the chart can render, for lint, template, the dry run and the install.
ALL_ON=(-f "$CHART/examples/first-cluster.yaml"
    --set dashboards.enabled=true,alerts.enabled=true,metrics.serviceMonitor.enabled=true)
ROLLOUT_TIMEOUT=180
RECONCILE_TIMEOUT=60
PASSED=0

pass() {
    PASSED=$((PASSED + 1))
    cp_log "ok: $*"
}

kube() {
    "$DOLPHIN_CP_BIN/kubectl" --request-timeout=10s "$@"
}

helm() {
    "$HELM_BIN" "$@"
}

jsonpath() {
    kube get --namespace "$NS" "$1" -o "jsonpath=$2" 2>/dev/null
}

equals() {
    [[ "$(jsonpath "$1" "$2")" == "$3" ]]
}

# --- without a cluster ----------------------------------------------------------------------

# The chart ships copies (Helm reads files inside the chart only); a stale copy would install
# an old CRD or old dashboards.
check_copies_are_current() {
    cmp -s "$ROOT/crds/imcluster.yaml" "$CHART/crds/imcluster.yaml" ||
        cp_die "charts/dolphin/crds/imcluster.yaml differs from crds/imcluster.yaml;" \
            "copy it: cp crds/imcluster.yaml charts/dolphin/crds/"
    local out
    out="$(diff -r "$ROOT/dashboards" "$CHART/dashboards" 2>&1)" ||
        cp_die "charts/dolphin/dashboards/ differs from dashboards/ ($out);" \
            "copy them: cp dashboards/* charts/dolphin/dashboards/"
    pass "the chart's CRD, dashboards and alerts are the same files as crds/ and dashboards/"
}

check_lint_and_template() {
    local out
    out="$(helm lint --strict "$CHART" 2>&1)" || cp_die "helm lint --strict fails: $out"
    out="$(helm lint --strict "$CHART" "${ALL_ON[@]}" 2>&1)" ||
        cp_die "helm lint --strict fails with everything enabled: $out"
    helm template "$RELEASE" "$CHART" --namespace "$NS" >"$STATE/default.yaml" 2>"$STATE/err" ||
        cp_die "helm template fails with the default values: $(cat "$STATE/err")"
    helm template "$RELEASE" "$CHART" --namespace "$NS" "${ALL_ON[@]}" >"$STATE/all.yaml" \
        2>"$STATE/err" || cp_die "helm template fails with everything enabled: $(cat "$STATE/err")"
    local kinds
    kinds="$(kinds_of "$STATE/default.yaml")"
    [[ $kinds == "ClusterRole ClusterRoleBinding Deployment Role RoleBinding Service"* ]] ||
        cp_die "the default values render: $kinds"
    kinds="$(kinds_of "$STATE/all.yaml")"
    [[ $kinds == *"ConfigMap ConfigMap ConfigMap ConfigMap ConfigMap"* && \
        $kinds == *ImCluster* && $kinds == *PrometheusRule* && $kinds == *ServiceMonitor* ]] ||
        cp_die "everything enabled renders: $kinds"
    pass "helm lint --strict and helm template pass, with the default values and everything on"
}

kinds_of() {
    grep '^kind: ' "$1" | sed 's/^kind: //' | sort | tr '\n' ' '
}

# refused WHAT MESSAGE: the values on stdin must make both lint and template fail, naming the
# problem.
refused() {
    local what="$1" message="$2" values="$STATE/bad-values.yaml" out
    cat >"$values"
    if out="$(helm template "$RELEASE" "$CHART" -f "$values" 2>&1)"; then
        cp_die "helm template accepted $what"
    fi
    [[ $out == *"$message"* ]] || cp_die "helm template refused $what, not with '$message': $out"
    if out="$(helm lint --strict "$CHART" -f "$values" 2>&1)"; then
        cp_die "helm lint accepted $what"
    fi
    [[ $out == *"$message"* ]] || cp_die "helm lint refused $what, not with '$message': $out"
    REFUSED=$((REFUSED + 1))
}

check_bad_values_are_refused() {
    REFUSED=0
    refused "0 replicas" "at '/replicaCount': minimum: got 0, want 1" <<<'replicaCount: 0'
    refused "2 replicas without leader election" \
        "at '/leaderElection/enabled': value must be true" <<'EOF'
replicaCount: 2
leaderElection: {enabled: false, leaseSeconds: 15}
EOF
    refused "a log format of xml" "at '/logFormat': value must be one of 'text', 'json'" \
        <<<'logFormat: xml'
    refused "a misspelt key (replicas)" "additional properties 'replicas' not allowed" \
        <<<'replicas: 3'
    refused "dashboards.enabled as a string" "at '/dashboards/enabled': got string, want boolean" \
        <<<'dashboards: {enabled: "yes", namespace: "", labels: {grafana_dashboard: "1"}}'
    refused "a metrics port above 65535" "at '/metrics/port': maximum" <<'EOF'
metrics:
  port: 70000
  service: {enabled: true, type: ClusterIP, port: 8080}
  serviceMonitor: {enabled: false, interval: 30s}
EOF
    refused "an unknown pull policy" "at '/image/pullPolicy': value must be one of" <<'EOF'
image: {repository: registry.example.com/dolphin-operator, tag: "", pullPolicy: Sometimes}
EOF
    refused "a lease of 1 s" "at '/leaderElection/leaseSeconds': minimum" \
        <<<'leaderElection: {enabled: true, leaseSeconds: 1}'
    refused "an example cluster name of 41 characters" "at '/exampleCluster/name'" <<'EOF'
exampleCluster: {enabled: true, name: a-name-that-is-longer-than-forty-characters, namespace: "",
                 spec: {image: x, sequencer: {}, queue: {}}}
EOF
    pass "helm lint and helm template refuse $REFUSED kinds of bad values, naming the value"
}

# --- in the control plane -------------------------------------------------------------------

# dry_run FILE WHAT: the API server must accept every object of FILE, without storing them.
dry_run() {
    local out
    out="$(kube apply --server-side --dry-run=server --field-manager helm-e2e -f "$1" 2>&1)" ||
        cp_die "the API server refuses $2: $out"
}

check_default_render_is_accepted() {
    dry_run "$STATE/default.yaml" "the chart rendered with the default values"
    pass "the API server accepts the default render (server-side dry run)"
}

check_install() {
    local out
    out="$(helm install "$RELEASE" "$CHART" --namespace "$NS" "${ALL_ON[@]}" \
        --wait --timeout 180s 2>&1)" ||
        cp_die "helm install failed (the Deployment's rollout, controlplane/logs/kwok.log): $out"
    [[ $out == *"Create a first Dolphin cluster"* && $out == *"kind: ImCluster"* ]] ||
        cp_die "the install's notes do not show how to create an ImCluster: $out"
    cp_wait 30 "CRD imclusters.im.dolphin.dev to be Established" \
        "Helm's install of crds/ or the API server's CRD controllers" \
        equals_cluster crd/imclusters.im.dolphin.dev \
        '{.status.conditions[?(@.type=="Established")].status}' True
    equals deployment/$OPERATOR '{.spec.replicas} {.status.readyReplicas}' "2 2" ||
        cp_die "Deployment $OPERATOR is not 2 ready replicas: $(jsonpath deployment/$OPERATOR \
            '{.status}')"
    local nodes
    nodes="$(kube get pods --namespace "$NS" -l app.kubernetes.io/name=dolphin-operator \
        -o 'jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | grep -c .)"
    ((nodes == 2)) || cp_die "the 2 operator pods share a node despite the anti-affinity"
    pass "helm install --wait: the CRD is Established, 2 operator replicas on 2 nodes, the notes"

    local want got
    want="$(rules_of ClusterRole)"
    got="$(kube get clusterrole $OPERATOR -o 'jsonpath={.rules}')"
    [[ -n $got && $got == "$want" ]] ||
        cp_die "the chart's ClusterRole differs from operator/deploy/rbac.yaml: $got"
    want="$(rules_of Role)"
    got="$(kube get role $OPERATOR-election --namespace "$NS" -o 'jsonpath={.rules}')"
    [[ -n $got && $got == "$want" ]] ||
        cp_die "the chart's election Role differs from operator/deploy/rbac.yaml: $got"
    pass "the chart's ClusterRole and Role hold the rules of operator/deploy/rbac.yaml"

    local file name
    [[ "$(kube get configmap --namespace "$NS" -l grafana_dashboard=1 -o name | grep -c .)" == \
        "$(find "$ROOT/dashboards" -name '*.json' | grep -c .)" ]] ||
        cp_die "not one ConfigMap labelled grafana_dashboard=1 per dashboard"
    for file in "$ROOT"/dashboards/*.json; do
        name="$(basename "$file" .json)"
        got="$(jsonpath "configmap/$RELEASE-dashboard-$name" "{.data.$name\\.json}")"
        [[ $got == "$(cat "$file")" ]] ||
            cp_die "ConfigMap $RELEASE-dashboard-$name does not hold dashboards/$name.json"
    done
    want="$(kube create --dry-run=client -f "$ROOT/dashboards/alerts.yaml" -o 'jsonpath={.spec}')"
    got="$(jsonpath prometheusrule/$RELEASE '{.spec}')"
    [[ -n $got && $got == "$want" ]] ||
        cp_die "PrometheusRule $RELEASE does not hold the rules of dashboards/alerts.yaml"
    equals servicemonitor/$OPERATOR '{.spec.endpoints[0].port}' metrics ||
        cp_die "ServiceMonitor $OPERATOR does not scrape the metrics port"
    equals service/$OPERATOR-metrics '{.spec.ports[0].targetPort}' metrics ||
        cp_die "Service $OPERATOR-metrics does not point at the metrics port"
    pass "dashboards as labelled ConfigMaps, the alerts as a PrometheusRule, a ServiceMonitor"
}

# rules_of KIND: the rules of the one KIND in operator/deploy/rbac.yaml, as JSON.
rules_of() {
    kube create --dry-run=client -f "$ROOT/operator/deploy/rbac.yaml" \
        -o 'jsonpath={.kind}{"\t"}{.rules}{"\n"}' |
        awk -F '\t' -v kind="$1" '$1 == kind { print $2 }'
}

equals_cluster() {
    [[ "$(kube get "$1" -o "jsonpath=$2" 2>/dev/null)" == "$3" ]]
}

# The same rendering as the install, as another release in another namespace (so that no
# object exists yet): now that Helm installed the CRD, the example ImCluster is checked by the
# CRD's schema and rules too.
check_everything_enabled_is_accepted() {
    kube create namespace dolphin-dry >/dev/null
    helm template dry "$CHART" --namespace dolphin-dry "${ALL_ON[@]}" >"$STATE/dry.yaml"
    dry_run "$STATE/dry.yaml" "the chart rendered with everything enabled"
    [[ "$(kube get imcluster --namespace dolphin-dry -o name 2>/dev/null)" == "" ]] ||
        cp_die "the server-side dry run stored an object"
    # The schema checks the example spec in outline only; the CRD checks the rest.
    helm template dry "$CHART" --namespace dolphin-dry "${ALL_ON[@]}" \
        --set exampleCluster.spec.sequencer.replicas=2 >"$STATE/dry-bad.yaml"
    local out
    if out="$(kube apply --server-side --dry-run=server -f "$STATE/dry-bad.yaml" 2>&1)"; then
        cp_die "the API server accepted an example ImCluster with 2 replicas per shard"
    fi
    [[ $out == *"sequencer.replicas must be 1, 3 or 5"* ]] ||
        cp_die "an example ImCluster with 2 replicas was refused, but not by the CRD: $out"
    pass "the API server accepts everything enabled (server-side dry run, $(kinds_of \
        "$STATE/dry.yaml" | tr ' ' '\n' | sort -u | grep -c .) kinds), and refuses a bad" \
        "example spec"
}

# The operator runs as the chart's ServiceAccount, with a token, so that the reconcile below
# proves that the chart's RBAC grants enough.
make_operator_kubeconfig() {
    cp_token_kubeconfig "$OPERATOR" "$NS" "$CP_STATE/pki/ca.crt" "$STATE/operator.kubeconfig"
    local verb
    for verb in "delete statefulsets" "create pods" "update leases -n default" "list secrets"; do
        # shellcheck disable=SC2086
        if kube auth can-i $verb --as "$OPERATOR_USER" >/dev/null 2>&1; then
            cp_die "the chart's RBAC grants more than the operator needs: $verb"
        fi
    done
    pass "the chart's ServiceAccount authenticates, and may not do what the operator never does"
}

# Runs the operator as the chart's Deployment would: its command line and environment, the
# identity of one of its pods (what the downward API gives), and its namespace for the Lease.
# Only the metrics address changes, to a free port on loopback.
start_chart_operator() {
    local args=() arg listen_next=false port
    port="$(cp_free_port)"
    while IFS= read -r arg; do
        if [[ $listen_next == true ]]; then
            arg="127.0.0.1:$port"
            listen_next=false
        fi
        [[ $arg != --metrics-listen ]] || listen_next=true
        args+=("$arg")
    done < <(jsonpath deployment/$OPERATOR \
        '{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
    [[ "${args[*]}" == "run --metrics-listen 127.0.0.1:$port"* ]] ||
        cp_die "the Deployment's arguments are not what the test expects: ${args[*]}"
    equals deployment/$OPERATOR '{.spec.template.spec.containers[0].command[0]}' \
        dolphin-operator || cp_die "the Deployment does not run dolphin-operator"
    POD="$(kube get pods --namespace "$NS" -l app.kubernetes.io/name=dolphin-operator \
        -o 'jsonpath={.items[0].metadata.name}')"
    local rust_log
    rust_log="$(jsonpath deployment/$OPERATOR \
        '{.spec.template.spec.containers[0].env[?(@.name=="RUST_LOG")].value}')"
    KUBECONFIG="$STATE/operator.kubeconfig" POD_NAME="$POD" RUST_LOG="$rust_log" \
        DOLPHIN_OPERATOR_LEASE_NAMESPACE="$NS" "$OPERATOR_BIN" "${args[@]}" \
        >"$STATE/operator.log" 2>&1 &
    OPERATOR_PID=$!
    OPERATOR_PORT=$port
    cp_wait 30 "the operator to serve /healthz on port $port" \
        "the operator's start (operator.log)" \
        curl --fail --silent --max-time 2 "http://127.0.0.1:$port/healthz"
    cp_log "the operator runs as pod $POD: ${args[*]}"
}

lease_held_by() {
    [[ "$(kube get lease "$OPERATOR" --namespace "$NS" \
        -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null)" == "$1" ]]
}

condition_is() {
    [[ "$(jsonpath imcluster/$CLUSTER "{.status.conditions[?(@.type==\"$1\")].status}")" == "$2" ]]
}

# metric NAME: the sum of every series of NAME on the operator (0 when absent).
metric() {
    curl --fail --silent --max-time 5 "http://127.0.0.1:$OPERATOR_PORT/metrics" |
        awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $2 }
                          END { print sum + 0 }'
}

check_chart_operator_reconciles() {
    start_chart_operator
    cp_wait 30 "the operator to take Lease $OPERATOR in $NS as $POD" \
        "its election (operator.log) or the chart's Role for Leases" lease_held_by "$POD"
    cp_wait "$ROLLOUT_TIMEOUT" "the example ImCluster $CLUSTER to turn Ready" \
        "the operator (operator.log) or kwok (controlplane/logs/kwok.log)" ready_or_failed
    [[ "$(metric dolphin_operator_failures_total)" == 0 ]] ||
        cp_die "the operator failed a reconcile (a 'forbidden' is missing RBAC): $(grep -m1 \
            -i 'failed' "$STATE/operator.log")"
    equals imcluster/$CLUSTER '{.status.shards[*].readyReplicas} {.status.edge.readyReplicas}' \
        "3 2" || cp_die "ImCluster $CLUSTER is Ready with $(jsonpath imcluster/$CLUSTER \
            '{.status}')"
    equals podmonitor/$CLUSTER '{.metadata.name}' "$CLUSTER" ||
        cp_die "the operator did not create PodMonitor $CLUSTER (the podmonitors rule)"
    ! grep -qi forbidden "$STATE/operator.log" ||
        cp_die "the API server refused the operator something: $(grep -i -m1 forbidden \
            "$STATE/operator.log")"
    pass "the operator, with the chart's command line and account, turns ImCluster $CLUSTER" \
        "Ready with no failure: 3 replicas, 2 edges, a PodMonitor"
}

# Stops the wait for Ready early when a reconcile failed: a failure is retried with a growing
# back-off, so waiting on would only delay the message.
ready_or_failed() {
    condition_is Ready True || (($(metric dolphin_operator_failures_total) > 0))
}

stop_operator() {
    [[ -n ${OPERATOR_PID:-} ]] || return 0
    kill -TERM "$OPERATOR_PID" 2>/dev/null || true
    cp_wait 30 "the operator to exit after SIGTERM" "its shutdown (operator.log)" \
        process_gone "$OPERATOR_PID"
    OPERATOR_PID=""
}

process_gone() {
    ! cp_pid_alive "$1"
}

# Helm installs crds/ once and never upgrades it; docs/helm.md tells to apply the new chart's
# CRD server-side, taking the fields over from Helm, before an upgrade. A CRD that differs
# from the installed one (a changed description stands for a newer release) must get through.
check_crd_upgrade_command() {
    local newer="$STATE/imcluster-newer.yaml" out path
    path='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.description}'
    sed 's/^\( *description: "A Dolphin cluster\)/\1 (newer)/' "$CHART/crds/imcluster.yaml" \
        >"$newer"
    ! cmp -s "$newer" "$CHART/crds/imcluster.yaml" || cp_die "could not make a changed CRD"
    out="$(kube apply --server-side --force-conflicts -f "$newer" 2>&1)" ||
        cp_die "the documented CRD upgrade (kubectl apply --server-side) fails: $out"
    [[ "$(kube get crd imclusters.im.dolphin.dev -o "jsonpath=$path")" == \
        "A Dolphin cluster (newer):"* ]] || cp_die "the applied CRD did not replace Helm's"
    kube apply --server-side --force-conflicts -f "$CHART/crds/imcluster.yaml" >/dev/null
    helm upgrade "$RELEASE" "$CHART" --namespace "$NS" --reuse-values --set replicaCount=3 \
        --wait --timeout 120s >/dev/null 2>"$STATE/err" ||
        cp_die "helm upgrade failed: $(cat "$STATE/err")"
    equals deployment/$OPERATOR '{.status.readyReplicas}' 3 ||
        cp_die "helm upgrade did not scale the operator to 3 replicas"
    [[ "$(kube get crd imclusters.im.dolphin.dev -o "jsonpath=$path")" == \
        "A Dolphin cluster:"* ]] || cp_die "the CRD changed during helm upgrade"
    pass "a changed CRD applies server-side over Helm's; helm upgrade scales the operator to 3"
}

check_uninstall() {
    stop_operator
    local out
    out="$(helm uninstall "$RELEASE" --namespace "$NS" --wait --timeout 120s 2>&1)" ||
        cp_die "helm uninstall failed: $out"
    local left
    left="$(kube get deployment,serviceaccount,role,rolebinding,service,configmap,imcluster,\
prometheusrule,servicemonitor --namespace "$NS" -l app.kubernetes.io/instance=$RELEASE \
        -o name 2>&1)"
    left+="$(kube get clusterrole,clusterrolebinding -l app.kubernetes.io/instance=$RELEASE \
        -o name 2>&1)"
    [[ -z $left ]] || cp_die "helm uninstall left: $left"
    equals_cluster crd/imclusters.im.dolphin.dev '{.metadata.name}' imclusters.im.dolphin.dev ||
        cp_die "helm uninstall removed the CRD, and with it every ImCluster of the cluster"
    pass "helm uninstall removes the release's objects and keeps the CRD"
}

stop_all() {
    if [[ -n ${OPERATOR_PID:-} ]]; then
        kill -TERM "$OPERATOR_PID" 2>/dev/null || true
        wait "$OPERATOR_PID" 2>/dev/null || true
    fi
    [[ $CP_STARTED != true ]] || "$CP_DIR/stop.sh" "$CP_STATE" >/dev/null 2>&1 || true
}

main() {
    local started=$SECONDS t0
    STATE="${1:-}"
    OWN_STATE=false
    OPERATOR_PID=""
    CP_STARTED=false
    if [[ -z $STATE ]]; then
        STATE="$(mktemp -d /tmp/dolphin-helm-e2e.XXXXXX)"
        OWN_STATE=true
    fi
    mkdir -p "$STATE"
    # The control plane's own folder (start.sh wants it new or its own); this script's files
    # (renders, the operator's log) stay beside it.
    CP_STATE="$STATE/controlplane"
    CRDS=""
    trap 'rc=$?
          stop_all
          [[ -z $CRDS ]] || rm -rf "$CRDS"
          if ((rc == 0)) && [[ $OWN_STATE == true ]]; then rm -rf "$STATE"; fi
          if ((rc != 0)); then cp_log "helm e2e failed; files and logs are in $STATE"; fi' EXIT

    t0=$SECONDS
    "$CP_DIR/build.sh" >/dev/null
    HELM_BIN="$(cp_bin_dir)/helm"
    # Helm's caches and settings stay in the state folder, not in $HOME.
    export HELM_CACHE_HOME="$STATE/helm/cache" HELM_CONFIG_HOME="$STATE/helm/config"
    export HELM_DATA_HOME="$STATE/helm/data"
    cp_log "control plane build: $((SECONDS - t0))s"
    t0=$SECONDS
    if [[ -n ${DOLPHIN_OPERATOR_BIN:-} ]]; then
        OPERATOR_BIN="$DOLPHIN_OPERATOR_BIN"
    else
        (cd "$ROOT" && cargo build -j2 --quiet -p dolphin-operator)
        OPERATOR_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dolphin-operator"
    fi
    [[ -x $OPERATOR_BIN ]] || cp_die "no operator binary at $OPERATOR_BIN"
    cp_log "operator build: $((SECONDS - t0))s"

    t0=$SECONDS
    check_copies_are_current
    check_lint_and_template
    check_bad_values_are_refused
    cp_log "chart checks without a cluster: $((SECONDS - t0))s"

    # The Prometheus Operator's kinds go in before the controller manager starts; the ImCluster
    # CRD does not: installing it is the chart's job.
    t0=$SECONDS
    CRDS="$(mktemp -d /tmp/dolphin-helm-crds.XXXXXX)"
    cp "$CP_DIR/../operator/podmonitor-crd.yaml" "$CP_DIR/../helm/monitoring-crds.yaml" "$CRDS/"
    CP_STARTED=true
    DOLPHIN_CP_CRDS="$CRDS" "$CP_DIR/start.sh" "$CP_STATE" 3
    rm -rf "$CRDS"
    CRDS=""
    cp_log "control plane start: $((SECONDS - t0))s"
    set -a
    # shellcheck source=/dev/null
    source "$CP_STATE/env"
    set +a
    kube create namespace "$NS" >/dev/null

    t0=$SECONDS
    check_default_render_is_accepted
    check_install
    check_everything_enabled_is_accepted
    make_operator_kubeconfig
    check_chart_operator_reconciles
    check_crd_upgrade_command
    check_uninstall
    cp_log "checks in the control plane: $((SECONDS - t0))s; total: $((SECONDS - started))s"
    echo "helm e2e: $PASSED passed, 0 failed"
}

main "$@"
