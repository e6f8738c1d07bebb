//! The queue: the managed Redis (a one-pod StatefulSet with an append-only file, and its
//! Service), and how sequencer replicas and edges are told to reach whichever Redis is used.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::secret::REDIS_PASSWORD_KEY;
use super::{Component, REDIS_PORT, RenderError, labels, meta, names, selector, typed};
use crate::crd::{ImCluster, ManagedRedis};

/// The environment that points a `dolphin` process at the queue: `DOLPHIN_QUEUE_URL` and,
/// when there is one, `DOLPHIN_QUEUE_PASSWORD` from a Secret (never written into the spec).
pub fn queue_env(cluster: &ImCluster) -> Result<Vec<serde_json::Value>, RenderError> {
    let redis = &cluster.spec.queue.redis;
    if let Some(external) = &redis.external {
        let mut env = vec![json!({"name": "DOLPHIN_QUEUE_URL", "value": external.url})];
        if let Some(secret) = &external.password_secret_ref {
            env.push(json!({"name": "DOLPHIN_QUEUE_PASSWORD", "valueFrom": {"secretKeyRef": {
                "name": secret.name, "key": secret.key}}}));
        }
        return Ok(env);
    }
    let ns = super::namespace(cluster)?;
    Ok(vec![
        json!({"name": "DOLPHIN_QUEUE_URL",
               "value": format!("redis://{}.{ns}.svc:{REDIS_PORT}", names::redis(cluster))}),
        json!({"name": "DOLPHIN_QUEUE_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": names::internal_secret(cluster), "key": REDIS_PASSWORD_KEY}}}),
    ])
}

/// The managed Redis, when the spec asks for one.
pub fn managed(cluster: &ImCluster) -> Option<&ManagedRedis> {
    cluster.spec.queue.redis.managed.as_ref()
}

/// One Redis with an append-only file fsynced as the spec says, and a password from the
/// internal Secret (expanded by Kubernetes in the arguments, so no shell is needed).
pub fn stateful_set(cluster: &ImCluster, redis: &ManagedRedis) -> Result<StatefulSet, RenderError> {
    let name = names::redis(cluster);
    let retention = if redis.storage.delete_with_cluster { "Delete" } else { "Retain" };
    let mut claim = json!({
        "metadata": {"name": "data", "labels": labels(cluster, Component::Redis)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": redis.storage.size}},
        },
    });
    if let Some(class) = &redis.storage.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }
    let mut container = json!({
        "name": "redis",
        "image": redis.image,
        "command": ["redis-server"],
        "args": [
            "--appendonly", "yes",
            "--appendfsync", redis.appendfsync.as_str(),
            "--dir", "/data",
            "--requirepass", "$(REDIS_PASSWORD)",
        ],
        "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": names::internal_secret(cluster), "key": REDIS_PASSWORD_KEY}}}],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    });
    if let Some(resources) = &redis.resources {
        container["resources"] = json!(resources);
    }
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(cluster, name.clone(), labels(cluster, Component::Redis))?,
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector(cluster, Component::Redis)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": retention,
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": {"labels": labels(cluster, Component::Redis)},
                "spec": {"containers": [container]},
            },
            "volumeClaimTemplates": [claim],
        },
    });
    typed("the Redis StatefulSet", value)
}

/// The Service in front of the managed Redis.
pub fn service(cluster: &ImCluster) -> Result<Service, RenderError> {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(cluster, names::redis(cluster), labels(cluster, Component::Redis))?,
        "spec": {
            "selector": selector(cluster, Component::Redis),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
        },
    });
    typed("the Redis Service", value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn the_managed_redis_persists_with_the_requested_fsync() {
        let cluster = fixtures::standard();
        let set = stateful_set(&cluster, managed(&cluster).unwrap()).unwrap();
        assert_eq!(set.metadata.name.as_deref(), Some("chat-redis"));
        let spec = set.spec;
        assert_eq!(spec.replicas, Some(1));
        let container = &spec.template.spec.unwrap().containers[0];
        let args = container.args.as_ref().unwrap().join(" ");
        assert!(args.contains("--appendonly yes --appendfsync everysec"), "{args}");
        assert!(args.contains("--requirepass $(REDIS_PASSWORD)"), "{args}");
        let env = &container.env.as_ref().unwrap()[0];
        let from = env.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((from.name.as_str(), from.key.as_str()), ("chat-internal", "redis-password"));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        let size = &claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests;
        assert_eq!(size.as_ref().unwrap()["storage"].0, "5Gi");
    }

    #[test]
    fn the_service_selects_only_the_redis_pod() {
        let svc = service(&fixtures::standard()).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.selector.unwrap()["app.kubernetes.io/component"], "redis");
        assert_eq!(spec.ports.unwrap()[0].port, 6379);
    }

    #[test]
    fn an_external_redis_runs_nothing() {
        assert!(managed(&fixtures::external()).is_none());
    }
}
