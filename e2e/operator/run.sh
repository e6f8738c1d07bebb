#!/usr/bin/env bash
# The operator's end-to-end test against a real Kubernetes control plane on loopback.
#
#   e2e/operator/run.sh [STATE_DIR]    (default: a new temporary folder, removed after success)
#
# Builds the control plane (cached) and the operator, starts the control plane with the
# ImCluster CRD of crds/, a stand-in PodMonitor CRD and 3 fake nodes, runs the operator as
# processes with the token of the ServiceAccount of operator/deploy/rbac.yaml, and checks what
# a user sees: bad ImClusters refused by the API server with readable messages, a valid one
# turned into every child object, its status, Events, day-2 changes (edge, policy, image roll,
# refused shard and replica changes), recreation of a deleted child, leader election and a
# handover without writes, and deletion. docs/operator.md lists every check.
# Exits non-zero at the first failed check, saying what probably hung; the control plane and
# the operators are stopped however it ends, and the logs of a failed run are kept.
#
# DOLPHIN_OPERATOR_BIN=PATH uses that binary instead of building one with cargo.
set -euo pipefail
# `imcluster ... | refuse ...` runs refuse in this shell, so that it can count.
shopt -s lastpipe

source "$(dirname "${BASH_SOURCE[0]}")/../controlplane/lib.sh"

ROOT="$(cd "$CP_DIR/../.." && pwd)"
NS=dolphin-e2e
# The namespace and ServiceAccount of operator/deploy/rbac.yaml.
OPERATOR_NS=dolphin-system
OPERATOR_USER=system:serviceaccount:dolphin-system:dolphin-operator
# Bounds of each wait, in seconds. Pods of a StatefulSet start one after another, each after
# its claim is provisioned, so a rollout of 3 replicas on 2 busy cores takes a while.
ROLLOUT_TIMEOUT=180
RECONCILE_TIMEOUT=60
DELETE_TIMEOUT=120
# Short, so that a failover after a crash would show within a test; a clean stop releases the
# Lease and the standby takes over well before this.
LEASE_SECONDS=15
PASSED=0
CHILD_KINDS=statefulsets,deployments,services,configmaps,secrets,poddisruptionbudgets
CHILD_KINDS+=,networkpolicies,podmonitors

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

contains() {
    [[ "$(jsonpath "$1" "$2")" == *"$3"* ]]
}

none_left() {
    local out
    out="$(kube get --namespace "$NS" "$@" -o name 2>/dev/null)" || return 1
    [[ -z $out ]]
}

condition() {
    jsonpath imcluster/chat "{.status.conditions[?(@.type==\"$1\")].$2}"
}

condition_is() {
    [[ "$(condition "$1" status)" == "$2" ]] || return 1
    [[ -z ${3:-} || "$(condition "$1" reason)" == "$3" ]]
}

# An ImCluster named NAME with the given sequencer and redis (YAML flow maps) and extra spec
# lines.
imcluster() {
    cat <<EOF
apiVersion: im.dolphin.dev/v1alpha1
kind: ImCluster
metadata: {name: $1, namespace: $NS}
spec:
  image: ${IMAGE:-registry.example.com/dolphin:0.1.0}
  sequencer: $2
  queue: {redis: $3}
${4:-}
EOF
}

SEQ='{shards: 2, replicas: 3, storage: {size: 1Gi}}'
MANAGED='{managed: {storage: {size: 1Gi}}}'

# --- the operator process -------------------------------------------------------------------

# start_operator ID: runs an operator replica called ID in the background, with its own
# metrics port and log; sets OPERATOR_PID_<ID> and OPERATOR_PORT_<ID>.
start_operator() {
    local id="$1" port
    port="$(cp_free_port)"
    KUBECONFIG="$STATE/operator.kubeconfig" "$OPERATOR_BIN" run \
        --metrics-listen "127.0.0.1:$port" --leader-election --lease-namespace "$OPERATOR_NS" \
        --lease-seconds "$LEASE_SECONDS" --identity "$id" \
        >"$STATE/logs/operator-$id.log" 2>&1 &
    local pid=$!
    OPERATOR_PIDS+=("$pid")
    printf -v "OPERATOR_PID_$id" '%s' "$pid"
    printf -v "OPERATOR_PORT_$id" '%s' "$port"
    cp_wait 30 "operator $id to serve /healthz on port $port" \
        "the operator's start (logs/operator-$id.log)" \
        curl --fail --silent --max-time 2 "http://127.0.0.1:$port/healthz"
}

# metric ID NAME: the sum of every series of NAME on operator ID (0 when absent).
metric() {
    local port_var="OPERATOR_PORT_$1"
    curl --fail --silent --max-time 5 "http://127.0.0.1:${!port_var}/metrics" |
        awk -v name="$2" '$1 == name || index($1, name "{") == 1 { sum += $2 }
                          END { print sum + 0 }'
}

metric_is() {
    [[ "$(metric "$1" "$2")" == "$3" ]]
}

metric_above() {
    (($(metric "$1" "$2") > $3))
}

log_has() {
    grep -q -- "$2" "$STATE/logs/operator-$1.log"
}

stop_operator() {
    local pid_var="OPERATOR_PID_$1"
    kill -TERM "${!pid_var}" 2>/dev/null || true
    cp_wait 30 "operator $1 to exit after SIGTERM" \
        "its graceful shutdown (logs/operator-$1.log)" process_gone "${!pid_var}"
}

process_gone() {
    ! cp_pid_alive "$1"
}

lease_holder() {
    kube get lease dolphin-operator --namespace "$OPERATOR_NS" \
        -o 'jsonpath={.spec.holderIdentity}'
}

lease_held_by() {
    [[ "$(lease_holder 2>/dev/null)" == "$1" ]]
}

# The operator runs as the ServiceAccount of operator/deploy/rbac.yaml, with a token, so that
# every check below also proves that the ClusterRole grants enough.
install_operator_identity() {
    kube apply -f "$ROOT/operator/deploy/rbac.yaml" >/dev/null
    kube apply --dry-run=server -f "$ROOT/operator/deploy/operator.yaml" >/dev/null ||
        cp_die "the API server refuses operator/deploy/operator.yaml"
    cp_token_kubeconfig dolphin-operator "$OPERATOR_NS" "$STATE/pki/ca.crt" \
        "$STATE/operator.kubeconfig"
    local verb
    for verb in "delete statefulsets" "create pods" "update leases -n $NS" "list secrets"; do
        # shellcheck disable=SC2086
        if kube auth can-i $verb --as "$OPERATOR_USER" >/dev/null 2>&1; then
            cp_die "the operator's role grants more than it needs: $verb"
        fi
    done
    pass "operator/deploy: the operator authenticates as its ServiceAccount, with no extra rights"
}

# --- the checks -----------------------------------------------------------------------------

check_crd() {
    cp_wait 30 "CRD imclusters.im.dolphin.dev to be Established" \
        "the API server's CRD controllers (logs/kube-apiserver.log)" \
        equals_cluster crd/imclusters.im.dolphin.dev \
        '{.status.conditions[?(@.type=="Established")].status}' True
    diff <("$OPERATOR_BIN" crd) "$ROOT/crds/imcluster.yaml" >/dev/null ||
        cp_die "crds/imcluster.yaml differs from what 'dolphin-operator crd' prints"
    [[ "$(kube get crd imclusters.im.dolphin.dev \
        -o 'jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}')" == \
        "Ready Shards Edge Age" ]] || cp_die "the CRD lacks the printer columns"
    pass "the CRD of crds/ is installed, Established, current, with printer columns"
}

# refuse WHAT MESSAGE: creating the ImCluster on stdin must fail with MESSAGE.
refuse() {
    local what="$1" message="$2" out
    if out="$(kube create -f - 2>&1)"; then
        cp_die "the API server accepted an ImCluster with $what"
    fi
    [[ $out == *"$message"* ]] ||
        cp_die "an ImCluster with $what was refused, but not with \"$message\": $out"
    REFUSED=$((REFUSED + 1))
}

check_invalid_input_is_refused() {
    REFUSED=0
    imcluster bad "{shards: 2, replicas: 2, storage: {size: 1Gi}}" "$MANAGED" |
        refuse "2 replicas" "sequencer.replicas must be 1, 3 or 5"
    imcluster bad "{shards: 0, replicas: 3, storage: {size: 1Gi}}" "$MANAGED" |
        refuse "0 shards" "sequencer.shards must be between 1 and 256"
    imcluster bad "{shards: 300, replicas: 3, storage: {size: 1Gi}}" "$MANAGED" |
        refuse "300 shards" "sequencer.shards must be between 1 and 256"
    imcluster bad "$SEQ" "{managed: {storage: {size: 1Gi}}, external: {url: 'redis://r'}}" |
        refuse "a managed and an external Redis" "queue.redis must set exactly one of managed"
    imcluster bad "$SEQ" "{}" |
        refuse "no Redis at all" "queue.redis must set exactly one of managed"
    imcluster bad "$SEQ" "{external: {url: 'http://r:6379'}}" |
        refuse "an http:// Redis URL" "queue.redis.external.url must be a URL such as redis://"
    imcluster bad "{shards: 1, replicas: 3, storage: {size: lots}}" "$MANAGED" |
        refuse "a storage size that is no quantity" "storage.size must be a positive quantity"
    imcluster bad "{shards: 1, replicas: 3, storage: {size: 1Gi, storageClassName: Fast_SSD}}" \
        "$MANAGED" | refuse "a bad StorageClass name" "storage.storageClassName must be a valid"
    imcluster bad "$SEQ" "$MANAGED" "  auth: {jwtSecretRef: {name: Chat_JWT, key: secret}}" |
        refuse "a bad Secret name" "a Secret name must be a valid object name"
    imcluster bad "$SEQ" "$MANAGED" "  edge: {replicas: 0}" |
        refuse "0 edges" "edge.replicas must be between 1 and 1000"
    imcluster bad "$SEQ" "$MANAGED" "  edge: {service: {port: 70000}}" |
        refuse "port 70000" "edge.service.port must be a TCP port, 1 to 65535"
    imcluster bad "$SEQ" "$MANAGED" "  policy: {sendRate: 0}" |
        refuse "a send rate of 0" "policy.sendRate must be at least 1"
    IMAGE="dolphin 0.1" imcluster bad "$SEQ" "$MANAGED" |
        refuse "an image with a space" "image must be an image reference"
    imcluster a-name-that-is-much-longer-than-forty-characters "$SEQ" "$MANAGED" |
        refuse "a 48-character name" "the name of an ImCluster must be at most 40 characters"
    imcluster bad "$SEQ" "$MANAGED" "  edge: {service: {type: Ingress}}" |
        refuse "an unknown Service type" 'Unsupported value: "Ingress"'
    none_left imcluster --ignore-not-found || cp_die "a refused ImCluster was stored"
    pass "the API server refuses $REFUSED kinds of bad ImCluster, each with its message"
}

check_missing_secret_degrades() {
    imcluster chat "$SEQ" "$MANAGED" "  auth: {jwtSecretRef: {name: chat-jwt, key: secret}}
  edge: {replicas: 2}" | kube apply -f - >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "condition Degraded=True reason SecretMissing" \
        "the operator's reconcile (logs/operator-a.log)" condition_is Degraded True SecretMissing
    local message
    message="$(condition Degraded message)"
    [[ $message == *'auth.jwtSecretRef names the key "secret" of the Secret "chat-jwt"'* ]] ||
        cp_die "the Degraded message does not say which Secret is missing: $message"
    cp_wait 30 "a Warning Event Refused on ImCluster chat" \
        "the operator's event recorder (logs/operator-a.log)" event_recorded Refused
    pass "a missing JWT Secret makes the cluster Degraded, with the field, the Secret and an Event"

    kube create secret generic chat-jwt --namespace "$NS" \
        --from-literal=secret=e2e-signing-secret >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "condition Degraded=False once the Secret exists" \
        "the operator's requeue of a not-ready cluster (logs/operator-a.log)" \
        condition_is Degraded False AsSpecified
    pass "creating the Secret clears the Degraded condition"
}

event_recorded() {
    kube get events --namespace "$NS" \
        --field-selector "involvedObject.kind=ImCluster,involvedObject.name=chat,reason=$1" \
        -o name 2>/dev/null | grep -q .
}

# owned KIND/NAME COMPONENT: the object exists, the ImCluster controls it and it carries the
# standard labels.
owned() {
    local object="$1" component="$2" got want template label
    template='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].uid}/'
    template+='{.metadata.ownerReferences[0].controller}'
    for label in name instance component part-of managed-by; do
        template+=" {.metadata.labels.app\\.kubernetes\\.io/$label}"
    done
    got="$(jsonpath "$object" "$template")"
    want="ImCluster/$CHAT_UID/true dolphin chat $component dolphin dolphin-operator"
    [[ $got == "$want" ]] || cp_die "$object: owner and labels are '$got', expected '$want'"
}

check_children() {
    CHAT_UID="$(jsonpath imcluster/chat '{.metadata.uid}')"
    cp_wait "$RECONCILE_TIMEOUT" "Deployment chat-edge, the last object the operator applies" \
        "the operator's apply (logs/operator-a.log)" \
        equals deployment/chat-edge '{.metadata.name}' chat-edge
    owned configmap/chat-topology topology
    owned secret/chat-internal secrets
    local id
    for id in 0 1; do
        owned "statefulset/chat-shard-$id" sequencer
        owned "service/chat-shard-$id" sequencer
        owned "poddisruptionbudget/chat-shard-$id" sequencer
    done
    owned statefulset/chat-redis redis
    owned service/chat-redis redis
    owned deployment/chat-edge edge
    owned service/chat-edge edge
    owned poddisruptionbudget/chat-edge edge
    local policies
    policies="$(kube get networkpolicy --namespace "$NS" -l app.kubernetes.io/instance=chat \
        -o name)"
    [[ "$(grep -c . <<<"$policies")" == 2 ]] || cp_die "expected 2 NetworkPolicies: $policies"
    for id in $policies; do
        owned "$id" network
    done
    owned podmonitor/chat monitoring
    equals podmonitor/chat '{.spec.selector.matchExpressions[0].values[*]}' "sequencer edge" ||
        cp_die "PodMonitor chat does not select the replicas and edges"
    pass "every child exists, controlled by the ImCluster, with the app.kubernetes.io labels"

    equals statefulset/chat-shard-1 \
        '{.spec.replicas} {.spec.serviceName} {.spec.template.spec.containers[0].image}' \
        "3 chat-shard-1 registry.example.com/dolphin:0.1.0" ||
        cp_die "StatefulSet chat-shard-1 has the wrong spec"
    equals service/chat-shard-0 '{.spec.clusterIP}' None ||
        cp_die "Service chat-shard-0 is not headless"
    equals poddisruptionbudget/chat-shard-0 '{.spec.minAvailable}' 2 ||
        cp_die "PDB chat-shard-0 does not keep quorum (minAvailable 2 of 3)"
    equals deployment/chat-edge '{.spec.replicas}' 2 || cp_die "Deployment chat-edge != 2"
    topology_version_is 1 || cp_die "the topology ConfigMap is not at version 1"
    [[ "$(jsonpath configmap/chat-topology '{.data.topology\.yaml}')" == \
        *"chat-shard-1-3.chat-shard-1.$NS.svc:7000"* ]] ||
        cp_die "the topology lacks the address of shard 1's replica 3"
    [[ -n "$(jsonpath secret/chat-internal '{.data}')" ]] || cp_die "chat-internal is empty"
    pass "shards, headless Services, quorum PDBs, edge and topology v1 have the right spec"
}

topology_version_is() {
    jsonpath configmap/chat-topology '{.data.topology\.yaml}' | grep -qx "version: $1"
}

check_status() {
    cp_wait "$ROLLOUT_TIMEOUT" "ImCluster chat to turn Ready" \
        "pods not ready (kwok, logs/kwok.log; claims, logs/kube-controller-manager.log)" \
        condition_is Ready True Serving
    cp_wait "$RECONCILE_TIMEOUT" "Progressing=False once every pod is ready" \
        "the operator's status (logs/operator-a.log)" condition_is Progressing False Stable
    local generation
    generation="$(jsonpath imcluster/chat '{.metadata.generation}')"
    equals imcluster/chat '{.status.observedGeneration}' "$generation" ||
        cp_die "status.observedGeneration is not the generation $generation"
    equals imcluster/chat '{.status.shards[*].id} {.status.shards[*].readyReplicas}' "0 1 3 3" ||
        cp_die "status.shards is $(jsonpath imcluster/chat '{.status.shards}')"
    # The fake nodes run no process, so no replica answers on its admin API.
    equals imcluster/chat '{.status.shards[*].leader}' "" ||
        cp_die "status names a leader although no replica can be reached"
    equals imcluster/chat '{.status.edge.readyReplicas}' 2 || cp_die "edge.readyReplicas != 2"
    equals imcluster/chat '{.status.endpoint}' "chat-edge.$NS.svc:443" ||
        cp_die "status.endpoint is $(jsonpath imcluster/chat '{.status.endpoint}')"
    local row
    row="$(kube get imcluster chat --namespace "$NS" --no-headers)"
    [[ $row =~ ^chat\ +True\ +2\ +2\ + ]] ||
        cp_die "kubectl get imcluster shows: $row"
    cp_wait 30 "Event TopologyWritten on ImCluster chat" "the operator's event recorder" \
        event_recorded TopologyWritten
    cp_wait 30 "Event Ready on ImCluster chat" "the operator's event recorder" \
        event_recorded Ready
    # Counted from the operator's cache every 10 s.
    cp_wait 30 "dolphin_operator_clusters to count one Ready cluster" "operator a's /metrics" \
        metric_is a 'dolphin_operator_clusters{condition="Ready",status="True"}' 1
    pass "status: Ready, Stable, observedGeneration, 3/3 per shard, leader unknown, 2 edges," \
        "Events, counted Ready in /metrics"
}

# A reconcile of an unchanged cluster writes nothing: poke the ImCluster (an annotation
# changes no spec) and compare the write counter around the reconcile it triggers.
check_steady_state_writes_nothing() {
    local reconciles writes
    reconciles="$(metric a dolphin_operator_reconciles_total)"
    writes="$(metric a dolphin_operator_writes_total)"
    kube annotate imcluster chat --namespace "$NS" --overwrite e2e.dolphin.dev/poke=1 >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "a reconcile after the poke" "the operator's watch" \
        metric_above a dolphin_operator_reconciles_total "$reconciles"
    [[ "$(metric a dolphin_operator_writes_total)" == "$writes" ]] ||
        cp_die "a reconcile of an unchanged cluster wrote objects (logs/operator-a.log)"
    pass "a reconcile of an unchanged cluster writes no object"
}

check_edge_scale_leaves_shards_alone() {
    local before pods
    before="$(jsonpath statefulset/chat-shard-0 '{.metadata.generation}')"
    pods="$(shard_pod_uids)"
    kube patch imcluster chat --namespace "$NS" --type merge \
        -p '{"spec":{"edge":{"replicas":3},"policy":{"sendRate":5,"sendBurst":10}}}' >/dev/null
    cp_wait "$ROLLOUT_TIMEOUT" "status.edge.readyReplicas=3 after scaling the edge" \
        "the Deployment's rollout or the operator's status" \
        equals imcluster/chat '{.status.edge.readyReplicas}' 3
    equals deployment/chat-edge '{.spec.replicas}' 3 || cp_die "chat-edge was not scaled"
    contains deployment/chat-edge '{.spec.template.spec.containers[0].env}' \
        '{"name":"DOLPHIN_SEND_RATE","value":"5"}' || cp_die "the edges lack the new send rate"
    equals statefulset/chat-shard-0 '{.metadata.generation}' "$before" ||
        cp_die "the edge and policy change reached StatefulSet chat-shard-0"
    [[ "$(shard_pod_uids)" == "$pods" ]] || cp_die "the edge and policy change restarted shards"
    topology_version_is 1 || cp_die "the edge and policy change altered the topology"
    pass "scaling the edge to 3 and a new policy reach the edges only: no shard pod restarts"
}

shard_pod_uids() {
    kube get pods --namespace "$NS" -l app.kubernetes.io/component=sequencer \
        -o 'jsonpath={.items[*].metadata.uid}'
}

# The operator restarts each shard's pods one at a time (the StatefulSets use OnDelete). No
# replica answers on its admin API here, so the leader is unknown and the order is by id.
check_image_change_rolls_shards_one_replica_at_a_time() {
    local image=registry.example.com/dolphin:0.2.0 object
    kube patch imcluster chat --namespace "$NS" --type merge \
        -p "{\"spec\":{\"image\":\"$image\"}}" >/dev/null
    for object in statefulset/chat-shard-0 statefulset/chat-shard-1 deployment/chat-edge; do
        cp_wait "$RECONCILE_TIMEOUT" "$object to run image $image" \
            "the operator's apply (logs/operator-a.log)" \
            equals "$object" '{.spec.template.spec.containers[0].image}' "$image"
    done
    contains statefulset/chat-redis '{.spec.template.spec.containers[0].image}' redis: ||
        cp_die "the dolphin image change reached the Redis StatefulSet"
    for object in statefulset/chat-shard-0 statefulset/chat-shard-1; do
        cp_wait "$ROLLOUT_TIMEOUT" "$object to have 3 ready pods of the new template" \
            "the operator's roll (logs/operator-a.log) or kwok (logs/kwok.log)" \
            equals "$object" '{.status.updatedReplicas} {.status.readyReplicas}' "3 3"
    done
    cp_wait "$RECONCILE_TIMEOUT" "ImCluster chat to be Ready and Stable after the roll" \
        "the operator's status (logs/operator-a.log)" condition_is Progressing False Stable
    condition_is Ready True || cp_die "ImCluster chat is not Ready after the image change"
    topology_version_is 1 || cp_die "the image change altered the topology"
    local restarts
    restarts="$(grep -c 'restarted for the new template' "$STATE/logs/operator-a.log")"
    ((restarts == 6)) || cp_die "expected 6 pod restarts (2 shards x 3), the log has $restarts"
    restarted_highest_id_first ||
        cp_die "the pods were not restarted in the order 3, 2, 1 in each shard"
    cp_wait 30 "Events RestartedReplica on ImCluster chat" "the operator's event recorder" \
        event_recorded RestartedReplica
    pass "an image change rolls each shard one pod at a time, not Redis; the cluster is Ready"
}

# The order of the restarts in the operator's log: replicas 3, 2, 1 in each shard. (That no
# restart happens while a replica is down is the roll's unit tests' to show: with fake nodes
# a pod comes back too fast for a check from outside to catch an overlap.)
restarted_highest_id_first() {
    local shard order
    for shard in 0 1; do
        order="$(grep 'restarted for the new template' "$STATE/logs/operator-a.log" |
            grep -o "shard=$shard replica=[0-9]" | sed 's/.*=//' | tr -d '\n')"
        [[ $order == 321 ]] || return 1
    done
}

check_unsupported_changes_are_refused() {
    local out
    if out="$(kube patch imcluster chat --namespace "$NS" --type merge \
        -p '{"spec":{"sequencer":{"shards":1}}}' 2>&1)"; then
        cp_die "the API server let sequencer.shards shrink from 2 to 1"
    fi
    [[ $out == *"sequencer.shards cannot shrink"* ]] || cp_die "shrink refused with: $out"
    pass "shrinking shards is refused by the API server: ${out##*: }"

    kube patch imcluster chat --namespace "$NS" --type merge \
        -p '{"spec":{"sequencer":{"replicas":1}}}' >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "Degraded=True reason ReplicasShrinkUnsupported" \
        "the operator's plan (logs/operator-a.log)" \
        condition_is Degraded True ReplicasShrinkUnsupported
    equals statefulset/chat-shard-0 '{.spec.replicas}' 3 ||
        cp_die "a refused replicas change reached StatefulSet chat-shard-0"
    kube patch imcluster chat --namespace "$NS" --type merge \
        -p '{"spec":{"sequencer":{"replicas":3}}}' >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "Degraded=False after replicas went back to 3" \
        "the operator's plan (logs/operator-a.log)" condition_is Degraded False
    pass "fewer replicas are refused with a Degraded condition, which clears when reverted"
}

# Growing shards from 3 to 5 replicas: the StatefulSets and the topology list five, the first
# three as founders (so the two new replicas wait for their leader to add them; that step
# needs running replicas and is shown against processes by operator/tests/grow_processes.rs).
check_more_replicas_grow_the_shards() {
    kube patch imcluster chat --namespace "$NS" --type merge \
        -p '{"spec":{"sequencer":{"replicas":5}}}' >/dev/null
    cp_wait "$ROLLOUT_TIMEOUT" "StatefulSets chat-shard-0 and -1 to have 5 ready pods" \
        "the operator (logs/operator-c.log) and kwok (logs/kwok.log)" \
        equals imcluster/chat '{.status.shards[*].readyReplicas}' "5 5"
    local doc
    doc="$(jsonpath configmap/chat-topology '{.data.topology\.yaml}')"
    [[ "$(grep -c 'chat-shard-1-5.chat-shard-1' <<<"$doc")" == 1 ]] ||
        cp_die "the topology lacks shard 1's replica 5: $doc"
    [[ "$(grep -c '^  founders:' <<<"$doc")" == 2 ]] ||
        cp_die "the topology does not name each shard's founders: $doc"
    equals poddisruptionbudget/chat-shard-0 '{.spec.minAvailable}' 3 ||
        cp_die "the PDB of shard 0 does not keep a quorum of 5"
    pass "more replicas grow the StatefulSets, the topology names the founders"
}

check_deleted_child_is_recreated() {
    local uid
    uid="$(jsonpath statefulset/chat-shard-1 '{.metadata.uid}')"
    kube delete statefulset chat-shard-1 --namespace "$NS" --wait=false >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "StatefulSet chat-shard-1 to come back with a new uid" \
        "the operator's watch of its StatefulSets (logs/operator-a.log)" \
        uid_changed statefulset/chat-shard-1 "$uid"
    cp_wait "$ROLLOUT_TIMEOUT" "the recreated StatefulSet chat-shard-1 to have 3 ready pods" \
        "kwok (logs/kwok.log)" equals statefulset/chat-shard-1 '{.status.readyReplicas}' 3
    cp_wait "$RECONCILE_TIMEOUT" "ImCluster chat to be Ready with 3 3 ready replicas" \
        "the operator's status (logs/operator-a.log)" \
        equals imcluster/chat '{.status.shards[*].readyReplicas}' "3 3"
    condition_is Ready True || cp_die "ImCluster chat is not Ready after the recreation"
    pass "a deleted shard StatefulSet is recreated and its shard becomes ready again"
}

uid_changed() {
    local now
    now="$(jsonpath "$1" '{.metadata.uid}')"
    [[ -n $now && $now != "$2" ]]
}

# The data plane cannot move slots between shards, so more shards are refused, not applied.
check_more_shards_are_refused() {
    kube patch imcluster chat --namespace "$NS" --type merge \
        -p '{"spec":{"sequencer":{"shards":3}}}' >/dev/null
    cp_wait "$RECONCILE_TIMEOUT" "Degraded=True reason ShardsChangeUnsupported" \
        "the operator's plan (logs/operator-c.log)" \
        condition_is Degraded True ShardsChangeUnsupported
    none_left statefulset/chat-shard-2 --ignore-not-found ||
        cp_die "a third shard was created although its slots cannot be moved"
    topology_version_is 1 || cp_die "the refused change altered the topology"
    cp_wait 30 "a Warning Event Refused naming the shards" "the operator's event recorder" \
        event_recorded Refused
    pass "more shards are refused with ShardsChangeUnsupported: $(condition Degraded message)"
}

# Operator b waits while a holds the Lease; when a stops it releases the Lease, b takes over
# at once and, finding everything as rendered, writes nothing.
check_failover_and_restart_write_nothing() {
    lease_held_by a || cp_die "the Lease is held by '$(lease_holder)', not operator a"
    start_operator b
    cp_wait 30 "operator b to wait for the Lease" "its election (logs/operator-b.log)" \
        log_has b "waiting for the lease"
    [[ "$(metric b dolphin_operator_reconciles_total)" == 0 ]] ||
        cp_die "operator b reconciled without holding the Lease"
    pass "a second operator waits for the Lease and does not reconcile"

    [[ "$(metric a dolphin_operator_failures_total)" == 0 ]] ||
        cp_die "operator a counted failed reconciles (logs/operator-a.log)"
    metric_above a dolphin_operator_reconcile_seconds_count 0 ||
        cp_die "operator a exports no reconcile_seconds histogram"
    local version started
    version="$(jsonpath imcluster/chat '{.metadata.resourceVersion}')"
    started=$SECONDS
    stop_operator a
    cp_wait 10 "operator b to take the released Lease" \
        "the release on stop (logs/operator-a.log) or b's election (logs/operator-b.log)" \
        lease_held_by b
    cp_wait "$RECONCILE_TIMEOUT" "operator b to reconcile ImCluster chat" \
        "its controller (logs/operator-b.log)" metric_above b dolphin_operator_reconciles_total 0
    [[ "$(metric b dolphin_operator_writes_total)" == 0 ]] ||
        cp_die "the new leader wrote objects of an unchanged cluster (logs/operator-b.log)"
    equals imcluster/chat '{.metadata.resourceVersion}' "$version" ||
        cp_die "the new leader rewrote the ImCluster's status"
    pass "no failed reconcile; a stopped leader hands over in $((SECONDS - started))s;" \
        "the new one writes nothing"
}

# A leader that dies without releasing the Lease (SIGKILL) is replaced only once the Lease
# has gone unrenewed for a lease duration, as the waiter measures it: not at once, since the
# old leader might only be slow, and not much later either.
check_crashed_leader_is_replaced_after_the_lease_expires() {
    lease_held_by b || cp_die "the Lease is held by '$(lease_holder)', not operator b"
    start_operator c
    cp_wait 30 "operator c to wait for the Lease" "its election (logs/operator-c.log)" \
        log_has c "waiting for the lease"
    kill -KILL "$OPERATOR_PID_b"
    local killed=$SECONDS elapsed
    cp_wait $((LEASE_SECONDS * 3)) "operator c to take the Lease of the killed operator b" \
        "c's election (logs/operator-c.log)" lease_held_by c
    elapsed=$((SECONDS - killed))
    # c may have seen b's last renewal up to a renewal period (a third of the lease) before
    # the kill, so the earliest takeover is two thirds of a lease duration after it.
    ((elapsed >= LEASE_SECONDS * 2 / 3)) ||
        cp_die "operator c took the Lease ${elapsed}s after b died, before it could expire"
    cp_wait "$RECONCILE_TIMEOUT" "operator c to reconcile ImCluster chat" \
        "its controller (logs/operator-c.log)" metric_above c dolphin_operator_reconciles_total 0
    [[ "$(metric c dolphin_operator_writes_total)" == 0 ]] ||
        cp_die "the operator that took over from a crashed one wrote objects"
    pass "a killed leader's Lease is taken over after ${elapsed}s (lease ${LEASE_SECONDS}s)," \
        "with no write"
}

check_delete_removes_children_keeps_claims() {
    local claims
    claims="$(kube get pvc --namespace "$NS" -o name | grep -c .)"
    ((claims == 11)) || cp_die "expected 11 claims (2 shards x 5, Redis), found $claims"
    kube delete imcluster chat --namespace "$NS" --wait=false >/dev/null
    cp_wait "$DELETE_TIMEOUT" "every child of chat to be deleted" \
        "the garbage collector (logs/kube-controller-manager.log)" \
        none_left "$CHILD_KINDS" -l app.kubernetes.io/instance=chat
    cp_wait "$DELETE_TIMEOUT" "the pods of chat to be deleted" \
        "kwok's delete Stage (logs/kwok.log)" none_left pods -l app.kubernetes.io/instance=chat
    [[ "$(kube get pvc --namespace "$NS" -o name | grep -c .)" == 11 ]] ||
        cp_die "deleting the ImCluster removed claims, which are kept unless deleteWithCluster"
    pass "deleting the ImCluster removes every child and keeps the 11 claims"
}

equals_cluster() {
    [[ "$(kube get "$1" -o "jsonpath=$2" 2>/dev/null)" == "$3" ]]
}

stop_all() {
    local pid
    for pid in "${OPERATOR_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${OPERATOR_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    "$CP_DIR/stop.sh" "$STATE" >/dev/null 2>&1 || true
}

main() {
    local started=$SECONDS t0
    STATE="${1:-}"
    OWN_STATE=false
    OPERATOR_PIDS=()
    if [[ -z $STATE ]]; then
        STATE="$(mktemp -d /tmp/dolphin-operator-e2e.XXXXXX)"
        OWN_STATE=true
    fi
    CRDS=""
    trap 'rc=$?
          stop_all
          [[ -z $CRDS ]] || rm -rf "$CRDS"
          if ((rc == 0)) && [[ $OWN_STATE == true ]]; then rm -rf "$STATE"; fi
          if ((rc != 0)); then cp_log "operator e2e failed; logs are in $STATE/logs"; fi' EXIT

    t0=$SECONDS
    "$CP_DIR/build.sh" >/dev/null
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

    # The CRDs go in before the controller manager starts, so that its garbage collector
    # knows their kinds from the beginning.
    t0=$SECONDS
    CRDS="$(mktemp -d /tmp/dolphin-operator-crds.XXXXXX)"
    cp "$ROOT/crds/imcluster.yaml" "$CP_DIR/../operator/podmonitor-crd.yaml" "$CRDS/"
    DOLPHIN_CP_CRDS="$CRDS" "$CP_DIR/start.sh" "$STATE" 3
    rm -rf "$CRDS"
    cp_log "control plane start: $((SECONDS - t0))s"
    set -a
    # shellcheck source=/dev/null
    source "$STATE/env"
    set +a
    kube create namespace "$NS" >/dev/null
    install_operator_identity

    t0=$SECONDS
    check_crd
    check_invalid_input_is_refused
    start_operator a
    cp_wait 30 "operator a to take the Lease" "its election (logs/operator-a.log)" \
        lease_held_by a
    log_has a "pod_monitors=true" || cp_die "operator a did not find the PodMonitor kind"
    check_missing_secret_degrades
    check_children
    check_status
    check_steady_state_writes_nothing
    check_edge_scale_leaves_shards_alone
    check_image_change_rolls_shards_one_replica_at_a_time
    check_unsupported_changes_are_refused
    check_deleted_child_is_recreated
    check_failover_and_restart_write_nothing
    check_crashed_leader_is_replaced_after_the_lease_expires
    check_more_shards_are_refused
    check_more_replicas_grow_the_shards
    check_delete_removes_children_keeps_claims
    cp_log "checks: $((SECONDS - t0))s; total: $((SECONDS - started))s"
    echo "operator e2e: $PASSED passed, 0 failed"
}

main "$@"
