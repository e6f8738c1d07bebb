//! The WebSocket edges: a Deployment (they keep no state), the Service clients connect to,
//! and a PodDisruptionBudget that drains them one at a time.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;

use super::secret::JWT_SECRET_KEY;
use super::{
    Component, EDGE_PORT, RenderError, TOPOLOGY_DIR, TOPOLOGY_KEY, labels, meta, names, selector,
    typed,
};
use crate::crd::ImCluster;

/// The environment variable `dolphin edge` reads its HS256 secret from.
pub const JWT_SECRET_ENV: &str = "DOLPHIN_JWT_SECRET";

/// The edge Deployment.
pub fn deployment(cluster: &ImCluster) -> Result<Deployment, RenderError> {
    let spec = &cluster.spec.edge;
    let jwt = match cluster.spec.auth.as_ref().and_then(|a| a.jwt_secret_ref.as_ref()) {
        Some(secret) => json!({"name": secret.name, "key": secret.key}),
        None => json!({"name": names::internal_secret(cluster), "key": JWT_SECRET_KEY}),
    };
    let mut env = vec![
        json!({"name": JWT_SECRET_ENV, "valueFrom": {"secretKeyRef": jwt}}),
        json!({"name": "DOLPHIN_LOG_FORMAT", "value": "json"}),
    ];
    if let Some(policy) = &cluster.spec.policy {
        if let Some(rate) = policy.send_rate {
            env.push(json!({"name": "DOLPHIN_SEND_RATE", "value": rate.to_string()}));
        }
        if let Some(burst) = policy.send_burst {
            env.push(json!({"name": "DOLPHIN_SEND_BURST", "value": burst.to_string()}));
        }
    }
    env.extend(calls_env(cluster));
    env.extend(super::redis::queue_env(cluster)?);
    env.extend(files_env(cluster));
    let mut container = json!({
        "name": "edge",
        "image": cluster.spec.image,
        "command": ["dolphin", "edge"],
        "args": [
            "--listen", format!("0.0.0.0:{EDGE_PORT}"),
            "--topology", format!("{TOPOLOGY_DIR}/{TOPOLOGY_KEY}"),
        ],
        "env": env,
        "ports": [{"name": "http", "containerPort": EDGE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": true}],
    });
    if let Some(resources) = &spec.resources {
        container["resources"] = json!(resources);
    }
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(cluster, names::edge(cluster), labels(cluster, Component::Edge))?,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector(cluster, Component::Edge)},
            "template": {
                "metadata": {"labels": labels(cluster, Component::Edge)},
                "spec": {
                    "containers": [container],
                    "volumes": [{
                        "name": "topology",
                        "configMap": {"name": names::topology(cluster)},
                    }],
                },
            },
        },
    });
    typed("the edge Deployment", value)
}

/// The keys of the Secret named by `files.s3.credentialsSecret`, which are also the variables
/// the edge reads the S3 credentials from.
pub const S3_CREDENTIAL_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// Where the edges keep uploaded files, and the size limit. Without a bucket nothing is set
/// and the edges answer file requests with 503: a folder of each pod would split the files
/// among the edges and lose them with the pod.
fn files_env(cluster: &ImCluster) -> Vec<serde_json::Value> {
    let Some(files) = &cluster.spec.files else { return Vec::new() };
    let mut env = Vec::new();
    if let Some(max) = files.max_bytes {
        env.push(json!({"name": "DOLPHIN_MAX_FILE_BYTES", "value": max.to_string()}));
    }
    let Some(s3) = &files.s3 else { return env };
    env.push(json!({"name": "DOLPHIN_FILES_URL", "value": format!("s3://{}", s3.bucket)}));
    if let Some(endpoint) = &s3.endpoint {
        env.push(json!({"name": "DOLPHIN_FILES_ENDPOINT", "value": endpoint}));
    }
    if let Some(region) = &s3.region {
        env.push(json!({"name": "DOLPHIN_FILES_REGION", "value": region}));
    }
    if let Some(secret) = &s3.credentials_secret {
        for key in S3_CREDENTIAL_KEYS {
            let source = json!({"secretKeyRef": {"name": secret, "key": key}});
            env.push(json!({"name": key, "valueFrom": source}));
        }
    }
    env
}

/// The Service clients connect to, of the type and port the spec asks for.
pub fn service(cluster: &ImCluster) -> Result<Service, RenderError> {
    let service = &cluster.spec.edge.service;
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(cluster, names::edge(cluster), labels(cluster, Component::Edge))?,
        "spec": {
            "type": service.type_.as_str(),
            "selector": selector(cluster, Component::Edge),
            "ports": [{"name": "http", "port": service.port, "targetPort": "http"}],
        },
    });
    typed("the edge Service", value)
}

/// The ICE servers the edges hand out, and the TURN secret from the user's Secret. The URL
/// lists travel comma-separated: a URL holds no comma.
fn calls_env(cluster: &ImCluster) -> Vec<serde_json::Value> {
    let Some(calls) = &cluster.spec.calls else { return Vec::new() };
    let mut env = Vec::new();
    if !calls.stun_urls.is_empty() {
        env.push(json!({"name": "DOLPHIN_STUN_URLS", "value": calls.stun_urls.join(",")}));
    }
    if !calls.turn_urls.is_empty() {
        env.push(json!({"name": "DOLPHIN_TURN_URLS", "value": calls.turn_urls.join(",")}));
    }
    if let Some(secret) = &calls.turn_secret {
        let source = json!({"secretKeyRef": {"name": secret.name, "key": secret.key}});
        env.push(json!({"name": "DOLPHIN_TURN_SECRET", "valueFrom": source}));
    }
    if let Some(ttl) = calls.ttl_seconds {
        env.push(json!({"name": "DOLPHIN_TURN_TTL", "value": format!("{ttl}s")}));
    }
    env
}

/// At most one edge down at a time in a drain: its clients reconnect to the others.
pub fn disruption_budget(cluster: &ImCluster) -> Result<PodDisruptionBudget, RenderError> {
    let value = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(cluster, names::edge(cluster), labels(cluster, Component::Edge))?,
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(cluster, Component::Edge)},
        },
    });
    typed("the edge PodDisruptionBudget", value)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::render::fixtures;

    fn env_of(deployment: &Deployment) -> Vec<serde_json::Value> {
        let pod = deployment.spec.template.spec.as_ref().unwrap();
        pod.containers[0].env.iter().flatten().map(|e| json!(e)).collect()
    }

    #[test]
    fn the_deployment_runs_the_requested_edges() {
        let deployment = deployment(&fixtures::standard()).unwrap();
        assert_eq!(deployment.metadata.name.as_deref(), Some("chat-edge"));
        let spec = &deployment.spec;
        assert_eq!(spec.replicas, Some(2));
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.command.as_ref().unwrap().join(" "), "dolphin edge");
        assert_eq!(
            container.args.as_ref().unwrap().join(" "),
            "--listen 0.0.0.0:8080 --topology /etc/dolphin/topology.yaml"
        );
    }

    #[test]
    fn without_a_secret_of_its_own_the_edge_uses_the_generated_one() {
        let env = env_of(&deployment(&fixtures::standard()).unwrap());
        let jwt = env.iter().find(|e| e["name"] == JWT_SECRET_ENV).unwrap();
        assert_eq!(
            jwt["valueFrom"]["secretKeyRef"],
            json!({"name": "chat-internal", "key": "jwt-secret"})
        );
    }

    #[test]
    fn the_users_secret_and_policy_reach_the_edge() {
        let env = env_of(&deployment(&fixtures::external()).unwrap());
        let jwt = env.iter().find(|e| e["name"] == JWT_SECRET_ENV).unwrap();
        assert_eq!(jwt["valueFrom"]["secretKeyRef"], json!({"name": "chat-jwt", "key": "secret"}));
        assert!(env.contains(&json!({"name": "DOLPHIN_SEND_RATE", "value": "5"})));
        assert!(env.contains(&json!({"name": "DOLPHIN_SEND_BURST", "value": "10"})));
    }

    #[test]
    fn the_bucket_limit_and_credentials_reach_the_edge() {
        let mut cluster = fixtures::external();
        cluster.spec.files = Some(crate::crd::FilesSpec {
            max_bytes: Some(1_000_000),
            s3: Some(crate::crd::S3Spec {
                endpoint: Some("http://minio.storage:9000".into()),
                bucket: "chat-files".into(),
                region: Some("eu-west-1".into()),
                credentials_secret: Some("chat-s3".into()),
            }),
        });
        let env = env_of(&deployment(&cluster).unwrap());
        for (name, value) in [
            ("DOLPHIN_MAX_FILE_BYTES", "1000000"),
            ("DOLPHIN_FILES_URL", "s3://chat-files"),
            ("DOLPHIN_FILES_ENDPOINT", "http://minio.storage:9000"),
            ("DOLPHIN_FILES_REGION", "eu-west-1"),
        ] {
            assert!(env.contains(&json!({"name": name, "value": value})), "{name}");
        }
        for key in S3_CREDENTIAL_KEYS {
            let source = json!({"secretKeyRef": {"name": "chat-s3", "key": key}});
            assert!(env.contains(&json!({"name": key, "valueFrom": source})), "{key}");
        }
    }

    #[test]
    fn without_a_bucket_the_edge_gets_no_file_storage() {
        let env = env_of(&deployment(&fixtures::standard()).unwrap());
        assert!(!env.iter().any(|e| e["name"].as_str().unwrap().contains("FILES")));
        let mut cluster = fixtures::standard();
        cluster.spec.files = Some(crate::crd::FilesSpec { max_bytes: Some(5), s3: None });
        let env = env_of(&deployment(&cluster).unwrap());
        assert!(!env.iter().any(|e| e["name"] == "DOLPHIN_FILES_URL"));
    }

    #[test]
    fn the_ice_servers_and_the_turn_secret_reach_the_edge() {
        let mut cluster = fixtures::standard();
        cluster.spec.calls = Some(crate::crd::CallsSpec {
            stun_urls: vec!["stun:stun.example.org:3478".into()],
            turn_urls: vec!["turn:a.example.org:3478".into(), "turns:b.example.org:5349".into()],
            turn_secret: Some(crate::crd::SecretKeyRef { name: "turn".into(), key: "s".into() }),
            ttl_seconds: Some(600),
        });
        let env = env_of(&deployment(&cluster).unwrap());
        for (name, value) in [
            ("DOLPHIN_STUN_URLS", "stun:stun.example.org:3478"),
            ("DOLPHIN_TURN_URLS", "turn:a.example.org:3478,turns:b.example.org:5349"),
            ("DOLPHIN_TURN_TTL", "600s"),
        ] {
            assert!(env.contains(&json!({"name": name, "value": value})), "{name}");
        }
        let source = json!({"secretKeyRef": {"name": "turn", "key": "s"}});
        assert!(env.contains(&json!({"name": "DOLPHIN_TURN_SECRET", "valueFrom": source})));
        let plain = env_of(&deployment(&fixtures::standard()).unwrap());
        assert!(!plain.iter().any(|e| e["name"].as_str().unwrap().contains("TURN")));
    }

    #[test]
    fn the_service_has_the_requested_type_and_port() {
        let spec = service(&fixtures::standard()).unwrap().spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 443);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }

    #[test]
    fn the_budget_drains_one_edge_at_a_time() {
        let spec = disruption_budget(&fixtures::standard()).unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    }
}
