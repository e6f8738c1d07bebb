//! The `ImCluster` custom resource: what a user asks for, and the status the operator reports.
//!
//! The schema carries the validation: OpenAPI types and ranges, and CEL rules whose messages
//! say what is wrong in the user's terms, so that the API server refuses bad input before the
//! operator ever sees it.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// A DNS-1123 subdomain, the form of most object names (Secrets, StorageClasses).
const DNS_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The longest `ImCluster` name: `NAME-shard-255` must leave room in a StatefulSet name for
/// the pod ordinal and the controller's revision hash (63 characters in all).
pub const MAX_NAME: usize = 40;

/// The CRD with its printer columns: `kubectl get imc` shows Ready, Shards, Edge and Age.
pub fn crd() -> CustomResourceDefinition {
    let column = |name: &str, type_: &str, json_path: &str| CustomResourceColumnDefinition {
        name: name.to_owned(),
        type_: type_.to_owned(),
        json_path: json_path.to_owned(),
        ..CustomResourceColumnDefinition::default()
    };
    let mut crd = ImCluster::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("Ready", "string", r#".status.conditions[?(@.type=="Ready")].status"#),
            column("Shards", "integer", ".spec.sequencer.shards"),
            column("Edge", "integer", ".status.edge.readyReplicas"),
            column("Age", "date", ".metadata.creationTimestamp"),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            drop_unsigned_formats(schema);
        }
    }
    crd
}

/// Removes the `uint32` and `uint64` formats that the schema generator writes for unsigned
/// fields: the API server knows only `int32` and `int64` and warns about any other on every
/// apply of the CRD. The fields keep their `minimum: 0`.
fn drop_unsigned_formats(schema: &mut JSONSchemaProps) {
    if schema.format.as_deref().is_some_and(|f| f.starts_with("uint")) {
        schema.format = None;
    }
    let mut children: Vec<&mut JSONSchemaProps> = Vec::new();
    if let Some(properties) = schema.properties.as_mut() {
        children.extend(properties.values_mut());
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => children.push(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => children.extend(items.iter_mut()),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        children.push(values);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        children.extend(list.iter_mut().flatten());
    }
    for child in children {
        drop_unsigned_formats(child);
    }
}

/// A Dolphin cluster: sequencer shards of Raft replicas, a Redis queue and WebSocket edges.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "im.dolphin.dev",
    version = "v1alpha1",
    kind = "ImCluster",
    namespaced,
    status = "ImClusterStatus",
    shortname = "imc",
    category = "dolphin",
    validation = Rule::new("size(self.metadata.name) <= 40").message(
        "the name of an ImCluster must be at most 40 characters, so that the names of its \
         StatefulSets and pods stay valid"
    ),
)]
#[serde(rename_all = "camelCase")]
pub struct ImClusterSpec {
    /// The `dolphin` image every sequencer replica and edge runs.
    #[x_kube(validation = Rule::new("size(self) > 0 && !self.contains(' ')").message(
        "image must be an image reference such as registry.example.com/dolphin:0.1.0, \
         without spaces"
    ))]
    pub image: String,
    pub sequencer: SequencerSpec,
    pub queue: QueueSpec,
    #[serde(default)]
    pub edge: EdgeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSpec>,
}

/// The sequencer: `shards` Raft groups of `replicas` replicas each.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.shards >= oldSelf.shards").message(
    "sequencer.shards cannot shrink: the conversations of a removed shard would be lost"
))]
pub struct SequencerSpec {
    /// Raft groups; each orders the conversations of its slots. 1 to 256.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 256")
        .message("sequencer.shards must be between 1 and 256"))]
    pub shards: u32,
    /// Replicas per shard: 1, 3 or 5 (a Raft group of an odd size keeps a majority).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self in [1, 3, 5]")
        .message("sequencer.replicas must be 1, 3 or 5"))]
    pub replicas: u32,
    pub storage: StorageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_replicas() -> u32 {
    3
}

/// A persistent volume per pod.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The size of each volume, a quantity such as `10Gi`.
    #[x_kube(validation = Rule::new(
        "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))"
    )
        .message("storage.size must be a positive quantity such as 10Gi"))]
    pub size: String,
    /// The StorageClass of the volumes; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("size(self) <= 253 && self.matches('{DNS_SUBDOMAIN}')"))
        .message(
            "storage.storageClassName must be a valid object name \
             (lower-case letters, digits, '-' and '.')"
        ))]
    pub storage_class_name: Option<String>,
    /// Delete the volumes when the ImCluster is deleted. By default they are kept, so that
    /// deleting the resource by mistake loses no message.
    #[serde(default)]
    pub delete_with_cluster: bool,
}

/// Where sends wait for their shard.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    pub redis: RedisSpec,
}

/// A Redis the operator runs, or one that already exists.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message(
    "queue.redis must set exactly one of managed (the operator runs Redis) and external \
     (a Redis that already exists)"
))]
pub struct RedisSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
}

/// A Redis the operator runs as a one-pod StatefulSet with append-only persistence.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    pub storage: StorageSpec,
    /// When Redis fsyncs its append-only file: `always` loses nothing accepted when Redis
    /// dies; `everysec` may lose the last second.
    #[serde(default)]
    pub appendfsync: Appendfsync,
    /// The Redis image.
    #[serde(default = "default_redis_image")]
    #[x_kube(validation = Rule::new("size(self) > 0 && !self.contains(' ')")
        .message("queue.redis.managed.image must be an image reference without spaces"))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The Redis image when the spec names none.
pub fn default_redis_image() -> String {
    "redis:7.4".to_owned()
}

/// Redis's `appendfsync` setting.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Appendfsync {
    #[default]
    Always,
    Everysec,
    No,
}

impl Appendfsync {
    /// The value Redis takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Appendfsync::Always => "always",
            Appendfsync::Everysec => "everysec",
            Appendfsync::No => "no",
        }
    }
}

/// A Redis that already exists.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// `redis://host:port` or `rediss://host:port`.
    #[x_kube(validation = Rule::new(
        "(self.startsWith('redis://') || self.startsWith('rediss://')) && isURL(self)"
    ).message(
        "queue.redis.external.url must be a URL such as redis://host:6379 or rediss://host:6380"
    ))]
    pub url: String,
    /// The Secret key holding the Redis password, when the URL carries none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// One key of a Secret in the ImCluster's namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[x_kube(validation = Rule::new(format!("size(self) <= 253 && self.matches('{DNS_SUBDOMAIN}')"))
        .message(
            "a Secret name must be a valid object name (lower-case letters, digits, '-' and '.')"
        ))]
    pub name: String,
    #[x_kube(validation = Rule::new("size(self) <= 253 && self.matches('^[-._a-zA-Z0-9]+$')")
        .message("a Secret key may hold only letters, digits, '-', '_' and '.'"))]
    pub key: String,
}

/// The WebSocket edges.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeSpec {
    #[serde(default = "default_edge_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000")
        .message("edge.replicas must be between 1 and 1000"))]
    pub replicas: u32,
    #[serde(default)]
    pub service: EdgeServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for EdgeSpec {
    fn default() -> Self {
        EdgeSpec { replicas: default_edge_replicas(), service: Default::default(), resources: None }
    }
}

fn default_edge_replicas() -> u32 {
    2
}

/// How clients reach the edges.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default = "default_edge_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535")
        .message("edge.service.port must be a TCP port, 1 to 65535"))]
    pub port: u32,
}

impl Default for EdgeServiceSpec {
    fn default() -> Self {
        EdgeServiceSpec { type_: ServiceType::default(), port: default_edge_port() }
    }
}

fn default_edge_port() -> u32 {
    443
}

/// The kind of the edge Service.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// How clients authenticate.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The HS256 secret that signs client tokens. Without it the operator generates one into
    /// the cluster's internal Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,
}

/// Calls: the ICE servers `GET /v1/ice` hands to clients. With a TURN secret, TURN URLs come
/// with credentials in the TURN REST form that expire after `ttlSeconds`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallsSpec {
    /// `stun:` URLs, such as `stun:stun.example.org:3478`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stun_urls: Vec<String>,
    /// `turn:` and `turns:` URLs, such as `turn:turn.example.org:3478?transport=udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN servers (coturn's `static-auth-secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_secret: Option<SecretKeyRef>,
    /// How long TURN credentials stay valid, in seconds (default a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 60").message("calls.ttlSeconds must be at least 60"))]
    pub ttl_seconds: Option<u32>,
}

/// Limits the edges apply to every user.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Sends per second each user may sustain on one edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("policy.sendRate must be at least 1"))]
    pub send_rate: Option<u32>,
    /// Sends a user may make at once above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("policy.sendBurst must be at least 1"))]
    pub send_burst: Option<u32>,
}

/// Uploaded files (`POST /v1/files`). Every edge must see every file, so files live in an
/// S3-compatible bucket; without `s3`, uploads and downloads answer 503 `unavailable`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilesSpec {
    /// The largest file accepted, in bytes (default 100 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("files.maxBytes must be at least 1"))]
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// The server's URL, for a store other than AWS (`https://minio.example:9000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "(self.startsWith('http://') || self.startsWith('https://')) && isURL(self)"
    ).message("files.s3.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')")
        .message("files.s3.bucket must be a bucket name: 3 to 63 of a-z 0-9 . -"))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A Secret in the ImCluster's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`. Without it the edges use what their environment provides
    /// (a workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("size(self) <= 253 && self.matches('{DNS_SUBDOMAIN}')"))
        .message("files.s3.credentialsSecret must be the name of a Secret"))]
    pub credentials_secret: Option<String>,
}

/// What the operator last saw of the cluster.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, one each.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub shards: Vec<ShardStatus>,
    #[serde(default)]
    pub edge: EdgeStatus,
    /// Where clients connect: the edge Service's address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// One shard as it runs.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    pub id: u32,
    pub replicas: u32,
    pub ready_replicas: u32,
    /// The replica id that leads, when a replica's admin API could be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
}

/// The edges as they run.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeStatus {
    pub replicas: u32,
    pub ready_replicas: u32,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_crd_names_no_format_the_api_server_does_not_know() {
        let yaml = crate::crd_yaml().unwrap();
        assert!(yaml.contains("format: int64"), "formats of signed fields stay");
        assert!(!yaml.contains("format: uint"), "an unsigned format is left in the CRD");
    }

    #[test]
    fn the_checked_in_crd_is_the_one_the_types_generate() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/imcluster.yaml");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == crate::crd_yaml().unwrap(),
            "crds/imcluster.yaml is stale: run `cargo run -p dolphin-operator -- crd > \
             crds/imcluster.yaml`"
        );
    }
}
