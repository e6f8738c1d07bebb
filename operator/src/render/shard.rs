//! One sequencer shard: a StatefulSet of its replicas, the headless Service that gives each
//! replica a stable DNS name, and a PodDisruptionBudget that keeps a majority up.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;

use super::{
    Component, RenderError, SEQUENCER_PORT, SHARD_LABEL, TOPOLOGY_DIR, TOPOLOGY_KEY, labels, meta,
    names, selector, typed,
};
use crate::crd::ImCluster;

/// Where a replica keeps its Raft log, state and snapshots.
pub const DATA_DIR: &str = "/data";

fn shard_selector(cluster: &ImCluster, shard: u32) -> serde_json::Value {
    json!(pod_selector(cluster, shard))
}

/// The labels of one shard's pods, as a label selector of a list request.
pub fn pod_selector(cluster: &ImCluster, shard: u32) -> std::collections::BTreeMap<String, String> {
    let mut labels = selector(cluster, Component::Sequencer);
    labels.insert(SHARD_LABEL.to_owned(), shard.to_string());
    labels
}

fn shard_labels(cluster: &ImCluster, shard: u32) -> std::collections::BTreeMap<String, String> {
    let mut labels = labels(cluster, Component::Sequencer);
    labels.insert(SHARD_LABEL.to_owned(), shard.to_string());
    labels
}

/// The majority of `replicas`: how many must stay up for the shard to order messages.
pub fn quorum(replicas: u32) -> u32 {
    replicas / 2 + 1
}

/// The StatefulSet of one shard's replicas.
///
/// Pods are numbered from 1 (`ordinals.start`), so the pod index Kubernetes puts in the
/// `apps.kubernetes.io/pod-index` label is the replica's Raft id, read through the downward
/// API without a shell in the image. Pods start in parallel: a replica is ready only once its
/// shard has a leader, which needs a majority running, so one-by-one start would never finish.
pub fn stateful_set(
    cluster: &ImCluster,
    shard: u32,
    replicas: u32,
) -> Result<StatefulSet, RenderError> {
    let name = names::shard(cluster, shard);
    let spec = &cluster.spec.sequencer;
    let retention = if spec.storage.delete_with_cluster { "Delete" } else { "Retain" };
    let mut env = vec![
        json!({"name": "DOLPHIN_SHARD", "value": shard.to_string()}),
        json!({"name": "DOLPHIN_REPLICA", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}}),
        json!({"name": "DOLPHIN_LOG_FORMAT", "value": "json"}),
    ];
    env.extend(super::redis::queue_env(cluster)?);
    let mut claim = json!({
        "metadata": {"name": "data", "labels": shard_labels(cluster, shard)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.storage.size}},
        },
    });
    if let Some(class) = &spec.storage.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }
    let mut container = json!({
        "name": "sequencer",
        "image": cluster.spec.image,
        "command": ["dolphin", "sequencer"],
        "args": [
            "--listen", format!("0.0.0.0:{SEQUENCER_PORT}"),
            "--data", DATA_DIR,
            "--topology", format!("{TOPOLOGY_DIR}/{TOPOLOGY_KEY}"),
        ],
        "env": env,
        "ports": [{"name": "http", "containerPort": SEQUENCER_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": true},
        ],
    });
    if let Some(resources) = &spec.resources {
        container["resources"] = json!(resources);
    }
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(cluster, name.clone(), shard_labels(cluster, shard))?,
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "ordinals": {"start": 1},
            "podManagementPolicy": "Parallel",
            // The operator restarts the pods itself, in the order of crate::roll.
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": shard_selector(cluster, shard)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": retention,
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": {"labels": shard_labels(cluster, shard)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "affinity": {"podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": shard_selector(cluster, shard)},
                            },
                        }],
                    }},
                    "containers": [container],
                    "volumes": [{
                        "name": "topology",
                        "configMap": {"name": names::topology(cluster)},
                    }],
                },
            },
            "volumeClaimTemplates": [claim],
        },
    });
    typed("a shard StatefulSet", value)
}

/// The headless Service that names each replica `POD.SERVICE.NAMESPACE.svc`. Unready pods are
/// published too: replicas must find each other to elect the leader that makes them ready.
pub fn headless_service(cluster: &ImCluster, shard: u32) -> Result<Service, RenderError> {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(cluster, names::shard(cluster, shard), shard_labels(cluster, shard))?,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": shard_selector(cluster, shard),
            "ports": [{"name": "http", "port": SEQUENCER_PORT, "targetPort": "http"}],
        },
    });
    typed("a shard Service", value)
}

/// Keeps a majority of the shard's replicas through voluntary disruptions (node drains).
///
/// NOTE: a one-replica shard gets `minAvailable: 1`, which blocks every eviction of its pod:
/// evicting it stops the shard, so a drain waits until someone deletes the pod on purpose.
pub fn disruption_budget(
    cluster: &ImCluster,
    shard: u32,
    replicas: u32,
) -> Result<PodDisruptionBudget, RenderError> {
    let value = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(cluster, names::shard(cluster, shard), shard_labels(cluster, shard))?,
        "spec": {
            "minAvailable": quorum(replicas),
            "selector": {"matchLabels": shard_selector(cluster, shard)},
        },
    });
    typed("a shard PodDisruptionBudget", value)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::render::fixtures;

    fn env(set: &StatefulSet) -> serde_json::Value {
        json!(set.spec.template.spec.as_ref().unwrap().containers[0].env)
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!([1, 3, 5].map(quorum), [1, 2, 3]);
    }

    #[test]
    fn the_stateful_set_runs_one_replica_per_pod_from_ordinal_one() {
        let cluster = fixtures::standard();
        let set = stateful_set(&cluster, 2, 3).unwrap();
        assert_eq!(set.metadata.name.as_deref(), Some("chat-shard-2"));
        let spec = &set.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.ordinals.as_ref().unwrap().start, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("chat-shard-2"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("OnDelete"), "the operator rolls the pods");
        let selector = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(selector[SHARD_LABEL], "2");
        assert_eq!(selector["app.kubernetes.io/component"], "sequencer");
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("registry.example.com/dolphin:0.1.0"));
        assert_eq!(
            container.args.as_ref().unwrap().join(" "),
            "--listen 0.0.0.0:7000 --data /data --topology /etc/dolphin/topology.yaml"
        );
        let env = env(&set);
        assert_eq!(env[0], json!({"name": "DOLPHIN_SHARD", "value": "2"}));
        assert_eq!(
            env[1]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
    }

    #[test]
    fn volumes_follow_the_storage_spec_and_are_kept_by_default() {
        let set = stateful_set(&fixtures::standard(), 0, 3).unwrap();
        let spec = set.spec;
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        let size = &claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"];
        assert_eq!(size.0, "10Gi");
        let retention = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));

        let set = stateful_set(&fixtures::external(), 0, 1).unwrap();
        let retention = set.spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    }

    #[test]
    fn a_managed_queue_is_reached_with_the_generated_password() {
        let env = env(&stateful_set(&fixtures::standard(), 0, 3).unwrap());
        let env = env.as_array().unwrap();
        let url = env.iter().find(|e| e["name"] == "DOLPHIN_QUEUE_URL").unwrap();
        assert_eq!(url["value"], "redis://chat-redis.team.svc:6379");
        let password = env.iter().find(|e| e["name"] == "DOLPHIN_QUEUE_PASSWORD").unwrap();
        assert_eq!(
            password["valueFrom"]["secretKeyRef"],
            json!({"name": "chat-internal", "key": "redis-password"})
        );
    }

    #[test]
    fn an_external_queue_is_reached_with_the_users_secret() {
        let env = env(&stateful_set(&fixtures::external(), 0, 1).unwrap());
        let env = env.as_array().unwrap();
        let url = env.iter().find(|e| e["name"] == "DOLPHIN_QUEUE_URL").unwrap();
        assert_eq!(url["value"], "redis://redis.shared:6379");
        let password = env.iter().find(|e| e["name"] == "DOLPHIN_QUEUE_PASSWORD").unwrap();
        assert_eq!(password["valueFrom"]["secretKeyRef"], json!({"name": "r", "key": "pw"}));
    }

    #[test]
    fn the_headless_service_publishes_unready_replicas() {
        let svc = headless_service(&fixtures::standard(), 1).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.unwrap()[SHARD_LABEL], "1");
        assert_eq!(spec.ports.unwrap()[0].port, 7000);
    }

    #[test]
    fn the_budget_keeps_a_majority() {
        for (replicas, min) in [(1, 1), (3, 2), (5, 3)] {
            let pdb = disruption_budget(&fixtures::standard(), 0, replicas).unwrap();
            assert_eq!(pdb.spec.unwrap().min_available, Some(IntOrString::Int(min)));
        }
    }
}
