//! A Prometheus Operator PodMonitor for the replicas and edges, rendered only where the
//! monitoring.coreos.com CRDs are installed (the operator checks with discovery).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Component, RenderError, labels, meta, selector, typed};
use crate::crd::ImCluster;

/// The PodMonitor kind of the Prometheus Operator.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"))
}

/// Scrapes `/metrics` of every replica and edge of the cluster, on their `http` port.
pub fn pod_monitor(cluster: &ImCluster) -> Result<DynamicObject, RenderError> {
    let mut match_labels = selector(cluster, Component::Sequencer);
    match_labels.remove("app.kubernetes.io/component");
    let name = kube::ResourceExt::name_any(cluster);
    let value = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta(cluster, name, labels(cluster, Component::Monitoring))?,
        "spec": {
            "selector": {
                "matchLabels": match_labels,
                "matchExpressions": [{
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": ["sequencer", "edge"],
                }],
            },
            // Dashboards and alerts select on `cluster`: the ImCluster's name, from the pods'
            // instance label.
            "podMetricsEndpoints": [{
                "port": "http",
                "path": "/metrics",
                "relabelings": [{
                    "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                    "targetLabel": "cluster",
                }],
            }],
        },
    });
    typed("the PodMonitor", value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn the_pod_monitor_scrapes_replicas_and_edges() {
        let monitor = pod_monitor(&fixtures::standard()).unwrap();
        assert_eq!(monitor.types.as_ref().unwrap().kind, "PodMonitor");
        let spec = &monitor.data["spec"];
        assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/instance"], "chat");
        assert_eq!(spec["selector"]["matchExpressions"][0]["values"], json!(["sequencer", "edge"]));
        let endpoint = &spec["podMetricsEndpoints"][0];
        assert_eq!((&endpoint["port"], &endpoint["path"]), (&json!("http"), &json!("/metrics")));
        let relabel = &endpoint["relabelings"][0];
        assert_eq!(
            relabel["sourceLabels"],
            json!(["__meta_kubernetes_pod_label_app_kubernetes_io_instance"])
        );
        assert_eq!(relabel["targetLabel"], "cluster");
    }
}
