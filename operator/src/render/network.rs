//! NetworkPolicies: only the cluster's own pods reach the replicas' Raft port and Redis. The
//! operator (for the admin API) and Prometheus (for `/metrics`) may reach the replicas too.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::{
    Component, REDIS_PORT, RenderError, SEQUENCER_PORT, labels, meta, names, selector, typed,
};
use crate::crd::ImCluster;

/// The label the operator's own pods carry, so that replicas let them ask for status.
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "dolphin-operator");

/// The label of Prometheus pods allowed to scrape the replicas.
pub const PROMETHEUS_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "prometheus");

fn cluster_pods(cluster: &ImCluster) -> serde_json::Value {
    let mut labels = selector(cluster, Component::Sequencer);
    labels.remove("app.kubernetes.io/component");
    json!({"podSelector": {"matchLabels": labels}})
}

fn any_namespace(label: (&str, &str)) -> serde_json::Value {
    json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {label.0: label.1}}})
}

/// Who may reach the sequencer replicas: the cluster's pods, the operator, Prometheus.
pub fn sequencer(cluster: &ImCluster) -> Result<NetworkPolicy, RenderError> {
    let name = format!("{}-sequencer", cluster_name(cluster));
    let value = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(cluster, name, labels(cluster, Component::Network))?,
        "spec": {
            "podSelector": {"matchLabels": selector(cluster, Component::Sequencer)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    cluster_pods(cluster),
                    any_namespace(OPERATOR_POD_LABEL),
                    any_namespace(PROMETHEUS_POD_LABEL),
                ],
                "ports": [{"protocol": "TCP", "port": SEQUENCER_PORT}],
            }],
        },
    });
    typed("the sequencer NetworkPolicy", value)
}

/// Who may reach the managed Redis: the cluster's pods only.
pub fn redis(cluster: &ImCluster) -> Result<NetworkPolicy, RenderError> {
    let value = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(cluster, names::redis(cluster), labels(cluster, Component::Network))?,
        "spec": {
            "podSelector": {"matchLabels": selector(cluster, Component::Redis)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [cluster_pods(cluster)],
                "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
            }],
        },
    });
    typed("the Redis NetworkPolicy", value)
}

fn cluster_name(cluster: &ImCluster) -> String {
    kube::ResourceExt::name_any(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn replicas_admit_the_clusters_pods_the_operator_and_prometheus_on_one_port() {
        let policy = sequencer(&fixtures::standard()).unwrap();
        assert_eq!(policy.metadata.name.as_deref(), Some("chat-sequencer"));
        let spec = json!(policy.spec.unwrap());
        assert_eq!(spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "sequencer");
        let rule = &spec["ingress"][0];
        assert_eq!(rule["ports"], json!([{"protocol": "TCP", "port": 7000}]));
        let from = rule["from"].as_array().unwrap();
        assert_eq!(from.len(), 3);
        assert_eq!(
            from[0]["podSelector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "dolphin", "app.kubernetes.io/instance": "chat"})
        );
        assert!(from[0].get("namespaceSelector").is_none(), "own namespace only");
        assert_eq!(
            from[1]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
            "dolphin-operator"
        );
    }

    #[test]
    fn redis_admits_only_the_clusters_pods() {
        let spec = json!(redis(&fixtures::standard()).unwrap().spec.unwrap());
        assert_eq!(spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "redis");
        let rule = &spec["ingress"][0];
        assert_eq!(rule["from"].as_array().unwrap().len(), 1);
        assert_eq!(rule["ports"], json!([{"protocol": "TCP", "port": 6379}]));
    }
}
