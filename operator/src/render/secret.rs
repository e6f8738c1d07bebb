//! The cluster's internal Secret: credentials the operator generates once and never rotates
//! by itself (a new value would cut off every pod still holding the old one).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::{Component, RenderError, labels, meta, names};
use crate::crd::ImCluster;

/// The key of the managed Redis's password.
pub const REDIS_PASSWORD_KEY: &str = "redis-password";

/// The key of the generated HS256 secret, used when the spec names none.
pub const JWT_SECRET_KEY: &str = "jwt-secret";

/// The Secret to create when none exists yet; `None` when one exists, so that its values,
/// once generated, are never replaced.
pub fn internal_secret(
    cluster: &ImCluster,
    existing: Option<&Secret>,
    random_hex: impl Fn() -> String,
) -> Result<Option<Secret>, RenderError> {
    if existing.is_some() {
        return Ok(None);
    }
    let data = BTreeMap::from([
        (REDIS_PASSWORD_KEY.to_owned(), random_hex()),
        (JWT_SECRET_KEY.to_owned(), random_hex()),
    ]);
    Ok(Some(Secret {
        metadata: meta(
            cluster,
            names::internal_secret(cluster),
            labels(cluster, Component::Secrets),
        )?,
        string_data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }))
}

/// 32 random bytes as hex.
pub fn random_hex() -> String {
    (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn a_new_cluster_gets_both_credentials() {
        let cluster = fixtures::standard();
        let secret = internal_secret(&cluster, None, random_hex).unwrap().unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("chat-internal"));
        let data = secret.string_data.unwrap();
        assert_eq!(data[REDIS_PASSWORD_KEY].len(), 64);
        assert_ne!(data[REDIS_PASSWORD_KEY], data[JWT_SECRET_KEY]);
    }

    #[test]
    fn an_existing_secret_is_never_replaced() {
        let cluster = fixtures::standard();
        let existing = Secret::default();
        assert!(internal_secret(&cluster, Some(&existing), random_hex).unwrap().is_none());
    }
}
