//! Pure functions from an `ImCluster` (and what already runs) to the objects that make it up.
//! Nothing here talks to the API server, so every object is unit-tested as it will be applied.

pub mod edge;
pub mod monitoring;
pub mod network;
pub mod redis;
pub mod secret;
pub mod shard;
pub mod topology;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::crd::ImCluster;

/// The value of `app.kubernetes.io/managed-by`, and the field manager of every apply.
pub const MANAGER: &str = "dolphin-operator";

/// The label that tells a shard's pods from another shard's.
pub const SHARD_LABEL: &str = "im.dolphin.dev/shard";

/// The port a sequencer replica serves Raft, reads, admin and metrics on.
pub const SEQUENCER_PORT: i32 = 7000;

/// The port an edge serves WebSocket clients, health and metrics on.
pub const EDGE_PORT: i32 = 8080;

/// The port of the managed Redis.
pub const REDIS_PORT: i32 = 6379;

/// Where the topology ConfigMap is mounted in every pod.
pub const TOPOLOGY_DIR: &str = "/etc/dolphin";

/// The file name of the topology in its ConfigMap and in the pods.
pub const TOPOLOGY_KEY: &str = "topology.yaml";

/// Why an object could not be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    #[error("failed to render {kind}: the ImCluster has no {missing}")]
    Missing { kind: &'static str, missing: &'static str },
    #[error("failed to render {kind}")]
    Build { kind: &'static str, source: serde_json::Error },
}

/// The parts of a Dolphin cluster, as `app.kubernetes.io/component`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Sequencer,
    Edge,
    Redis,
    Topology,
    Secrets,
    Monitoring,
    Network,
}

impl Component {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sequencer => "sequencer",
            Component::Edge => "edge",
            Component::Redis => "redis",
            Component::Topology => "topology",
            Component::Secrets => "secrets",
            Component::Monitoring => "monitoring",
            Component::Network => "network",
        }
    }
}

/// The labels that select one component's pods of one cluster. Never changes for a cluster's
/// life: selectors of StatefulSets and Deployments are immutable.
pub fn selector(cluster: &ImCluster, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "dolphin".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), cluster.name_any()),
        ("app.kubernetes.io/component".to_owned(), component.as_str().to_owned()),
    ])
}

/// The standard labels of every object of a cluster: the selector labels and who manages it.
pub fn labels(cluster: &ImCluster, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector(cluster, component);
    labels.insert("app.kubernetes.io/part-of".to_owned(), "dolphin".to_owned());
    labels.insert("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned());
    labels
}

/// Makes the ImCluster the controlling owner, so that the garbage collector removes the
/// object with it.
pub fn owner(cluster: &ImCluster) -> Result<OwnerReference, RenderError> {
    cluster
        .controller_owner_ref(&())
        .ok_or(RenderError::Missing { kind: "an owner reference", missing: "uid" })
}

/// The namespace of the cluster (a namespaced resource always has one once stored).
pub fn namespace(cluster: &ImCluster) -> Result<String, RenderError> {
    cluster.namespace().ok_or(RenderError::Missing { kind: "an object", missing: "namespace" })
}

/// Metadata of a child object: its name, the cluster's namespace, labels and owner.
pub fn meta(
    cluster: &ImCluster,
    name: String,
    labels: BTreeMap<String, String>,
) -> Result<ObjectMeta, RenderError> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(cluster)?),
        labels: Some(labels),
        owner_references: Some(vec![owner(cluster)?]),
        ..ObjectMeta::default()
    })
}

/// Builds a typed object from JSON written in the shape of its YAML, which reads far closer
/// to what a person checks than nested struct literals.
pub fn typed<T: DeserializeOwned>(
    kind: &'static str,
    value: serde_json::Value,
) -> Result<T, RenderError> {
    serde_json::from_value(value).map_err(|source| RenderError::Build { kind, source })
}

/// Names of the objects of a cluster, in one place.
pub mod names {
    use kube::ResourceExt;

    use crate::crd::ImCluster;

    pub fn topology(cluster: &ImCluster) -> String {
        format!("{}-topology", cluster.name_any())
    }

    pub fn internal_secret(cluster: &ImCluster) -> String {
        format!("{}-internal", cluster.name_any())
    }

    /// The StatefulSet, its headless Service and its PDB share this name.
    pub fn shard(cluster: &ImCluster, shard: u32) -> String {
        format!("{}-shard-{shard}", cluster.name_any())
    }

    pub fn redis(cluster: &ImCluster) -> String {
        format!("{}-redis", cluster.name_any())
    }

    pub fn edge(cluster: &ImCluster) -> String {
        format!("{}-edge", cluster.name_any())
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::ImCluster;

    /// A cluster as the API server would hand it to the operator.
    pub fn cluster(spec: &str) -> ImCluster {
        let yaml = format!(
            "apiVersion: im.dolphin.dev/v1alpha1\nkind: ImCluster\nmetadata:\n  name: chat\n  \
             namespace: team\n  uid: 0b3c5d7e-1111-2222-3333-444455556666\n  generation: 4\n\
             spec:\n{spec}"
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    /// Three shards of three replicas, a managed Redis, two edges.
    pub fn standard() -> ImCluster {
        cluster(
            "  image: registry.example.com/dolphin:0.1.0\n  sequencer:\n    shards: 3\n    \
             replicas: 3\n    storage: {size: 10Gi, storageClassName: fast}\n  queue:\n    \
             redis: {managed: {storage: {size: 5Gi}, appendfsync: everysec}}\n  edge:\n    \
             replicas: 2\n    service: {type: LoadBalancer, port: 443}\n",
        )
    }

    /// One shard of one replica, an external Redis with a password, a JWT secret of its own.
    pub fn external() -> ImCluster {
        cluster(
            "  image: dolphin:dev\n  sequencer:\n    shards: 1\n    replicas: 1\n    \
             storage: {size: 1Gi, deleteWithCluster: true}\n  queue:\n    redis:\n      \
             external:\n        url: 'redis://redis.shared:6379'\n        \
             passwordSecretRef: {name: r, key: pw}\n  \
             auth: {jwtSecretRef: {name: chat-jwt, key: secret}}\n  \
             policy: {sendRate: 5, sendBurst: 10}\n",
        )
    }
}
